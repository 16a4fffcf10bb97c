//! The audit service's metrics. Labels are outcomes, never tenants' or residents' values.

use std::sync::{
    Arc, LazyLock, Mutex,
    atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
};

use chrono::{DateTime, Utc};
use chukan_core::Clock;
use prometheus::{
    Gauge, Histogram, IntCounter, IntCounterVec,
    core::{Collector, Desc},
    proto::MetricFamily,
    register_histogram, register_int_counter, register_int_counter_vec,
};

static APPENDED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_audit_appended_total",
        "Audit events consumed, by outcome: appended, duplicate-message, duplicate-record",
        &["outcome"]
    )
    .expect("metric registers once")
});

static TREE_HEADS: LazyLock<IntCounter> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter!("chukan_audit_tree_heads_total", "Signed tree heads written")
        .expect("metric registers once")
});

static BATCH: LazyLock<Histogram> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_histogram!(
        "chukan_audit_append_batch_records",
        "Records per append transaction (one tenant's share of a consumer batch)",
        vec![
            1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0
        ]
    )
    .expect("metric registers once")
});

static PURGED: LazyLock<IntCounter> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter!(
        "chukan_audit_purged_records_total",
        "Records removed by the retention purge (a checkpoint keeps the log verifiable)"
    )
    .expect("metric registers once")
});

static UNTRUSTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_audit_untrusted_rows_total",
        "Rows whose searchable copy or leaf failed its check when read (tampering behind the \
         service), by reader: search, disclosable",
        &["reader"]
    )
    .expect("metric registers once")
});

/// A row that failed its check when read; alert on any increase.
pub fn untrusted_row(reader: &str) {
    UNTRUSTED.with_label_values(&[reader]).inc();
}

pub fn batch_size(records: usize) {
    BATCH.observe(records as f64);
}

pub fn purged(records: u64) {
    PURGED.inc_by(records);
}

pub fn appended(outcome: &str) {
    APPENDED.with_label_values(&[outcome]).inc();
}

pub fn tree_head() {
    TREE_HEADS.inc();
}

/// For tests: how many events ended with `outcome`.
pub fn appended_counted(outcome: &str) -> u64 {
    APPENDED.with_label_values(&[outcome]).get()
}

/// For tests: (append transactions, records in them).
pub fn batches_observed() -> (u64, f64) {
    (BATCH.get_sample_count(), BATCH.get_sample_sum())
}

/// What `chukan_audit_tree_head_age_seconds` is computed from, at each scrape: now − the
/// newest signed tree head while some log has records no head covers yet, else 0. Computed
/// when scraped, so the age keeps growing even if the signer itself hangs.
///
/// "Uncovered" is known without reading every log per scrape: an append that committed
/// records marks it, a signing round that began after the mark and signed every tenant clears
/// it, a round where a tenant failed keeps it. At start the database says (see
/// [`crate::heads::restore_coverage`]).
struct HeadCoverage {
    /// The signer's clock; `None` until a signer runs in this process (nothing is exported).
    clock: Mutex<Option<Arc<dyn Clock>>>,
    /// Unix ms of the newest signed head; `NO_HEAD` while there is none.
    newest_head_ms: AtomicI64,
    /// Unix ms the signer started: the reference while no head exists at all.
    started_ms: AtomicI64,
    /// Bumped by every append that committed records.
    appended: AtomicU64,
    /// The `appended` value the last fully successful round began at.
    covered: AtomicU64,
    /// The last round left a tenant unsigned (it failed).
    failing: AtomicBool,
    age: Gauge,
}

const NO_HEAD: i64 = i64::MIN;

impl HeadCoverage {
    fn age_seconds(&self) -> Option<f64> {
        let clock = self
            .clock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let uncovered = self.failing.load(Ordering::Acquire)
            || self.appended.load(Ordering::Acquire) > self.covered.load(Ordering::Acquire);
        if !uncovered {
            return Some(0.0);
        }
        let since = match self.newest_head_ms.load(Ordering::Acquire) {
            NO_HEAD => self.started_ms.load(Ordering::Acquire),
            head => head,
        };
        let age_ms = clock.now().timestamp_millis().saturating_sub(since).max(0);
        Some(age_ms as f64 / 1000.0)
    }
}

struct HeadAgeCollector(Arc<HeadCoverage>);

impl Collector for HeadAgeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.0.age.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        match self.0.age_seconds() {
            Some(age) => {
                self.0.age.set(age);
                self.0.age.collect()
            }
            None => Vec::new(),
        }
    }
}

static COVERAGE: LazyLock<Arc<HeadCoverage>> = LazyLock::new(|| {
    // A constant name and help text: this cannot fail.
    #[allow(clippy::expect_used)]
    let age = Gauge::new(
        "chukan_audit_tree_head_age_seconds",
        "Now minus the newest signed tree head while some log has records no signed head \
         covers yet; 0 when every record is covered",
    )
    .expect("valid metric definition");
    let coverage = Arc::new(HeadCoverage {
        clock: Mutex::new(None),
        newest_head_ms: AtomicI64::new(NO_HEAD),
        started_ms: AtomicI64::new(0),
        appended: AtomicU64::new(0),
        covered: AtomicU64::new(0),
        failing: AtomicBool::new(false),
        age,
    });
    if let Err(error) = prometheus::register(Box::new(HeadAgeCollector(coverage.clone()))) {
        tracing::error!(%error, "the tree head age could not be registered");
    }
    coverage
});

/// A signer runs in this process from now on, on `clock`: the age is exported.
pub fn signer_started(clock: Arc<dyn Clock>) {
    let c = &*COVERAGE;
    c.started_ms
        .store(clock.now().timestamp_millis(), Ordering::Release);
    *c.clock.lock().unwrap_or_else(|e| e.into_inner()) = Some(clock);
}

/// No signer runs in this process any more (it stopped, or lost its lease): nothing is
/// exported until one starts again.
pub fn signer_stopped() {
    *COVERAGE.clock.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// What the database says: the newest signed head of all tenants, and whether some log has
/// records after its tenant's newest head.
/// `mark` is [`signing_round_began`]'s, taken before reading: an append racing the read
/// still counts.
pub fn coverage_restored(mark: u64, newest_head: Option<DateTime<Utc>>, uncovered: bool) {
    if let Some(at) = newest_head {
        head_signed(at);
    }
    let c = &*COVERAGE;
    if uncovered {
        c.appended.fetch_add(1, Ordering::AcqRel);
    } else {
        c.covered.fetch_max(mark, Ordering::AcqRel);
    }
}

/// An append committed records: they wait for the next head.
pub fn records_appended() {
    COVERAGE.appended.fetch_add(1, Ordering::AcqRel);
}

/// A head signed at `at`.
pub fn head_signed(at: DateTime<Utc>) {
    COVERAGE
        .newest_head_ms
        .fetch_max(at.timestamp_millis(), Ordering::AcqRel);
}

/// A signing round begins; hand the mark to [`signing_round_ended`].
pub fn signing_round_began() -> u64 {
    COVERAGE.appended.load(Ordering::Acquire)
}

/// A signing round that began at `mark` ended; `every_tenant_signed` when no tenant failed.
pub fn signing_round_ended(mark: u64, every_tenant_signed: bool) {
    let c = &*COVERAGE;
    if every_tenant_signed {
        c.covered.fetch_max(mark, Ordering::AcqRel);
    }
    c.failing.store(!every_tenant_signed, Ordering::Release);
}

/// The value `chukan_audit_tree_head_age_seconds` has now; `None` without a signer (tests).
pub fn tree_head_age_seconds() -> Option<f64> {
    COVERAGE.age_seconds()
}
