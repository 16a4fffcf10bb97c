//! Work done once per cell (ADR 0005): the nightly batch, the tree-head signer, the relay
//! releaser, sweeps. Each such worker runs in the one process that holds its **lease**, a
//! PostgreSQL session advisory lock on `hashtextextended('chukan.cell.<work>', 0)` held on a
//! connection of its own; the other replicas of the target wait and take the lease over
//! when the holder is gone. With one replica, that replica takes every lease at start and
//! nothing changes; with `--target=all` each work has its own key and it just works.
//!
//! Why this is safe. The work under a lease is already correct if it ran twice at once:
//! every piece of it is a transaction that locks its rows (or takes an advisory lock of its
//! own) and re-checks before acting. What the lease prevents is the waste and the wrong
//! *pace* of doubling — two nightly batches fighting over the same tenants, two releasers
//! each sending `relay.release_per_second` — not corruption. So the rare moment of overlap
//! a lease cannot exclude (a holder whose session the server has just dropped, still working
//! until its next check) costs at most one `check_secs` of doubled work, never wrong data.
//!
//! How long each side takes when the holder is cut off from the database: the holder notices
//! within two checks (the next one, timed out after `check_secs`) and stops its work at once;
//! the server drops the holder's session, freeing the lease, only after `abandon_secs`
//! without an answer to its TCP keepalives (set on the lease's session); the settings insist
//! on `2 × check_secs < abandon_secs`, so the holder has stopped before anyone can take over.
//! A holder that exits or crashes closes its socket and the server frees the lease at once.
//!
//! [`SessionLock`] is the same lock on a pooled connection, for short sections that must
//! not overlap (one tenant's upload being applied, one night's batch).

use std::{sync::LazyLock, time::Duration};

use anyhow::Context as _;
use chukan_config::LeaseSettings;
use futures_util::FutureExt as _;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use tokio::sync::watch;

use crate::{Context, StopStage, Worker};

/// Session advisory locks held on a dedicated pooled connection. Dropped without `release`
/// (an error, a cancelled task), the connection is detached from the pool and closed, which
/// frees the lock: a pooled connection never carries a lock to its next borrower.
pub struct SessionLock {
    conn: Option<deadpool_postgres::Object>,
    key: String,
}

impl SessionLock {
    /// Waits for the lock.
    pub async fn acquire(db: &chukan_db::Pool, key: &str) -> anyhow::Result<SessionLock> {
        let conn = db.get().await.context("pool")?;
        conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &[&key])
            .await
            .context("advisory lock")?;
        Ok(SessionLock {
            conn: Some(conn),
            key: key.to_string(),
        })
    }

    /// Takes the lock if it is free.
    pub async fn try_acquire(
        db: &chukan_db::Pool,
        key: &str,
    ) -> anyhow::Result<Option<SessionLock>> {
        let conn = db.get().await.context("pool")?;
        let got: bool = conn
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&key],
            )
            .await
            .context("advisory lock")?
            .get(0);
        Ok(got.then(|| SessionLock {
            conn: Some(conn),
            key: key.to_string(),
        }))
    }

    /// The locked connection, for statements that belong with the lock.
    pub fn client(&self) -> Option<&deadpool_postgres::Object> {
        self.conn.as_ref()
    }

    pub async fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            let unlocked = conn
                .execute(
                    "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                    &[&self.key],
                )
                .await;
            if unlocked.is_err() {
                drop(deadpool_postgres::Object::take(conn));
            }
        }
    }
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(deadpool_postgres::Object::take(conn));
        }
    }
}

/// The advisory lock key text of once-per-cell `work`.
pub fn lease_key(work: &str) -> String {
    format!("chukan.cell.{work}")
}

/// A held lease: the session advisory lock of `work` on a connection taken out of the pool
/// (so it neither counts against `database.pool_max_size` for the whole time it is held nor
/// is ever lent to anyone else). Dropping it closes that connection, which frees the lock.
pub struct Lease {
    conn: deadpool_postgres::ClientWrapper,
    key: String,
}

impl Lease {
    /// Takes `work`'s lease if no other session holds it.
    pub async fn try_take(
        db: &chukan_db::Pool,
        work: &str,
        settings: &LeaseSettings,
    ) -> anyhow::Result<Option<Lease>> {
        let key = lease_key(work);
        // Tried on a pooled connection: a refusal leaves nothing on the session, so the
        // connection goes back to the pool and waiting replicas open no new ones per try.
        let pooled = db.get().await.context("pool")?;
        let got: bool = pooled
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&key],
            )
            .await
            .context("advisory lock")?
            .get(0);
        if !got {
            return Ok(None);
        }
        // Taken: the connection leaves the pool for good before anything else is set on it,
        // so neither the lock nor the keepalives ever reach another borrower.
        let conn = deadpool_postgres::Object::take(pooled);
        // Best effort: a server that refuses these (or a Unix socket, where they mean
        // nothing) still grants the lease; only a lost node would then hold it longer.
        if let Err(e) = conn.batch_execute(&keepalives(settings.abandon)).await {
            tracing::warn!(error = %e, "could not set TCP keepalives on the lease session");
        }
        Ok(Some(Lease { conn, key }))
    }

    /// Whether this session still holds the lock: the server answers and lists it as this
    /// backend's. (A session that answers holds its session locks, but asking pg_locks also
    /// catches a connection pooler in between that would have moved the statement to another
    /// server connection, which makes session locks meaningless.)
    pub async fn still_held(&self) -> anyhow::Result<bool> {
        Ok(self
            .conn
            .query_one(
                "SELECT EXISTS (
                     SELECT 1 FROM pg_locks
                     WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
                       AND objsubid = 1
                       AND classid::bigint = (hashtextextended($1, 0) >> 32) & 4294967295
                       AND objid::bigint = hashtextextended($1, 0) & 4294967295)",
                &[&self.key],
            )
            .await
            .context("lease check")?
            .get(0))
    }

    /// Gives the lease up (closing its connection frees it too, should the unlock fail).
    pub async fn release(self) {
        let _ = self
            .conn
            .execute(
                "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                &[&self.key],
            )
            .await;
    }
}

/// Session settings after which the server gives up on a client that stopped answering
/// within about `abandon`: keepalives start after half of it, then three probes spaced so
/// that they end at `abandon`; unacknowledged data is given up on at `abandon` as well.
fn keepalives(abandon: Duration) -> String {
    let total = abandon.as_secs().max(2);
    let idle = total / 2;
    let interval = ((total - idle) / 3).max(1);
    format!(
        "SET tcp_keepalives_idle = {idle}; SET tcp_keepalives_interval = {interval}; \
         SET tcp_keepalives_count = 3; SET tcp_user_timeout = {}",
        total.saturating_mul(1000)
    )
}

static HELD: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    // A constant name and labels: this cannot fail.
    #[allow(clippy::expect_used)]
    let gauge = IntGaugeVec::new(
        Opts::new(
            "chukan_lease_held",
            "1 while this process holds the lease of once-per-cell work and does it, else 0; \
             summed over a cell's processes it is 1 for each work",
        ),
        &["work"],
    )
    .expect("valid metric definition");
    // Registering twice (another copy of the crate in a test binary) is harmless.
    let _ = prometheus::default_registry().register(Box::new(gauge.clone()));
    gauge
});

static TAKEN: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "chukan_lease_takeovers_total",
        "Times this process took the lease of once-per-cell work (at start, or over from a holder that was gone)",
    )
});

static LOST: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "chukan_lease_lost_total",
        "Times this process lost a lease it held (its check failed or hung) and stopped the work",
    )
});

fn counter(name: &str, help: &str) -> IntCounterVec {
    // Constant names and labels: this cannot fail.
    #[allow(clippy::expect_used)]
    let vec =
        IntCounterVec::new(Opts::new(name, help), &["work"]).expect("valid metric definition");
    let _ = prometheus::default_registry().register(Box::new(vec.clone()));
    vec
}

/// The current value of `chukan_lease_held{work}` (tests, diagnostics).
pub fn held(work: &str) -> bool {
    HELD.get_metric_with_label_values(&[work])
        .is_ok_and(|g| g.get() == 1)
}

/// [`once_per_cell_on`] with the process's pool and `[lease]` settings.
pub fn once_per_cell<F>(ctx: &Context, work: &str, stage: StopStage, start: F) -> Worker
where
    F: FnMut() -> Worker + Send + 'static,
{
    once_per_cell_on(
        ctx.db.clone(),
        ctx.settings.lease.clone(),
        work,
        stage,
        start,
    )
}

/// A worker named `work` that runs the worker `start` makes only while this process holds
/// `work`'s lease: it tries to take the lease at once and then every `lease.retry_secs`;
/// holding it, it starts the inner worker and checks the lease every `lease.check_secs`. A
/// failed or hung check is a lost lease: the inner worker is stopped at once and the lease
/// sought again (`start` is called anew for each holding). Stopping the worker stops the
/// inner one, then releases the lease. The inner worker dying (`Err`) is this worker dying.
pub fn once_per_cell_on<F>(
    db: chukan_db::Pool,
    settings: LeaseSettings,
    work: &str,
    stage: StopStage,
    start: F,
) -> Worker
where
    F: FnMut() -> Worker + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    // Set by the task itself when it ends, so `stop` never depends on `finished` being
    // polled (the binary takes `finished` away before it stops the workers).
    let (done_tx, mut done_rx) = watch::channel(false);
    let label = work.to_owned();
    let task = tokio::spawn(async move {
        let end = hold(db, settings, label, start, stop_rx).await;
        let _ = done_tx.send(true);
        end
    });
    let label = work.to_owned();
    Worker {
        name: work.to_owned(),
        stage,
        finished: async move {
            match task.await {
                Ok(end) => end,
                Err(e) if e.is_cancelled() => Ok(()),
                Err(e) => Err(anyhow::anyhow!("{label}: {e}")),
            }
        }
        .boxed(),
        stop: Box::new(move || {
            async move {
                let _ = stop_tx.send(true);
                // Err only when the task is gone already (it panicked): stopped either way.
                let _ = done_rx.wait_for(|done| *done).await;
            }
            .boxed()
        }),
    }
}

/// How one holding of the lease ended.
enum Holding {
    /// Asked to stop: the inner worker has been stopped.
    Stopped,
    /// The lease is no longer (known to be) held: the inner worker has been stopped.
    Lost,
    /// The inner worker ended by itself.
    Ended(anyhow::Result<()>),
}

async fn hold<F>(
    db: chukan_db::Pool,
    settings: LeaseSettings,
    work: String,
    mut start: F,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()>
where
    F: FnMut() -> Worker + Send + 'static,
{
    // The series exists (0) from the start, so every replica reports each of its works.
    let held = HELD.with_label_values(&[work.as_str()]);
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        match Lease::try_take(&db, &work, &settings).await {
            Ok(Some(lease)) => {
                held.set(1);
                TAKEN.with_label_values(&[work.as_str()]).inc();
                tracing::info!(work = %work, "lease taken: this process does the work");
                let holding = work_while_held(&lease, &settings, start(), &mut stop).await;
                held.set(0);
                match holding {
                    Holding::Stopped => {
                        lease.release().await;
                        return Ok(());
                    }
                    Holding::Ended(end) => {
                        lease.release().await;
                        return end;
                    }
                    Holding::Lost => {
                        LOST.with_label_values(&[work.as_str()]).inc();
                        tracing::warn!(work = %work, "lease lost: work stopped; trying to take it again");
                        // Dropped, not released: the connection is suspect; closing it frees
                        // the lock on the server if the session is still there.
                        drop(lease);
                    }
                }
            }
            Ok(None) => {}
            // The database is away: the holder (if any) is as cut off; try again later.
            Err(e) => {
                tracing::warn!(work = %work, error = %format!("{e:#}"), "could not try the lease")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(settings.retry) => {}
            // A dropped sender (the worker itself dropped) ends the loop as a stop does.
            _ = stop.changed() => {}
        }
        if stop.has_changed().is_err() {
            return Ok(());
        }
    }
}

async fn work_while_held(
    lease: &Lease,
    settings: &LeaseSettings,
    mut inner: Worker,
    stop: &mut watch::Receiver<bool>,
) -> Holding {
    let first = tokio::time::Instant::now() + settings.check;
    let mut checks = tokio::time::interval_at(first, settings.check);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let holding = loop {
        tokio::select! {
            end = &mut inner.finished => return Holding::Ended(end),
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break Holding::Stopped;
                }
            }
            _ = checks.tick() => {
                // A check that does not answer within a period counts as failed: a holder
                // cut off from the database must stop well before the server frees the lease.
                match tokio::time::timeout(settings.check, lease.still_held()).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => break Holding::Lost,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %format!("{e:#}"), "lease check failed");
                        break Holding::Lost;
                    }
                    Err(_) => {
                        tracing::warn!("lease check did not answer in time");
                        break Holding::Lost;
                    }
                }
            }
        }
    };
    (inner.stop)().await;
    holding
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    fn pool() -> chukan_db::Pool {
        let server = std::env::var("CHUKAN_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        chukan_db::pool_from_url(&format!("{server}/postgres"), 4).expect("pool")
    }

    fn settings() -> LeaseSettings {
        LeaseSettings {
            retry: Duration::from_millis(50),
            check: Duration::from_millis(50),
            abandon: Duration::from_secs(30),
        }
    }

    /// A work name no other test (or process) uses.
    fn work() -> String {
        format!("test.{}", uuid::Uuid::new_v4().simple())
    }

    /// Counts down when dropped: when its task ends, however (a stop aborts it).
    struct Running(Arc<AtomicUsize>);

    impl Drop for Running {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// An inner worker that counts its starts and its runs, running until stopped.
    fn counting(starts: Arc<AtomicUsize>, running: Arc<AtomicUsize>) -> impl FnMut() -> Worker {
        move || {
            starts.fetch_add(1, Ordering::SeqCst);
            running.fetch_add(1, Ordering::SeqCst);
            let guard = Running(running.clone());
            let (stop_tx, mut stop_rx) = watch::channel(false);
            let task = tokio::spawn(async move {
                let _guard = guard;
                let _ = stop_rx.wait_for(|s| *s).await;
            });
            crate::periodic_worker("inner", StopStage::Intake, task, stop_tx)
        }
    }

    async fn until(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn keepalives_end_at_the_abandon_time() {
        assert_eq!(
            keepalives(Duration::from_secs(30)),
            "SET tcp_keepalives_idle = 15; SET tcp_keepalives_interval = 5; \
             SET tcp_keepalives_count = 3; SET tcp_user_timeout = 30000"
        );
        // Tiny values still give the server something to work with.
        assert!(keepalives(Duration::from_secs(1)).contains("tcp_keepalives_interval = 1"));
    }

    #[tokio::test]
    async fn one_session_holds_a_lease_until_it_lets_go_and_the_check_sees_it() {
        let db = pool();
        let work = work();
        let s = settings();
        let first = Lease::try_take(&db, &work, &s)
            .await
            .unwrap()
            .expect("a free lease is taken");
        assert!(first.still_held().await.unwrap());
        assert!(
            Lease::try_take(&db, &work, &s).await.unwrap().is_none(),
            "a held lease is not taken twice"
        );
        // Another work's lease is another key.
        let other = Lease::try_take(&db, &format!("{work}.other"), &s)
            .await
            .unwrap();
        assert!(other.is_some());
        first.release().await;
        let second = Lease::try_take(&db, &work, &s).await.unwrap();
        assert!(second.is_some(), "a released lease is free");
        drop(second);
        // Dropped: its connection is closed and the server frees the lock.
        let mut third = None;
        for _ in 0..100 {
            third = Lease::try_take(&db, &work, &s).await.unwrap();
            if third.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(third.is_some(), "a dropped lease is freed");
    }

    #[tokio::test]
    async fn a_lease_connection_does_not_count_against_the_pool() {
        let db = chukan_db::pool_from_url(
            &format!(
                "{}/postgres",
                std::env::var("CHUKAN_TEST_PG")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
            ),
            1,
        )
        .unwrap();
        let s = settings();
        let lease = Lease::try_take(&db, &work(), &s).await.unwrap();
        assert!(lease.is_some());
        let lent = tokio::time::timeout(Duration::from_secs(5), db.get()).await;
        assert!(
            matches!(lent, Ok(Ok(_))),
            "the one pooled connection is free"
        );
    }

    #[tokio::test]
    async fn only_one_of_two_workers_runs_and_the_other_takes_over_when_it_stops() {
        let db = pool();
        let work = work();
        let (starts, running) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let a = once_per_cell_on(
            db.clone(),
            settings(),
            &work,
            StopStage::Intake,
            counting(starts.clone(), running.clone()),
        );
        until("the first worker runs", || {
            running.load(Ordering::SeqCst) == 1
        })
        .await;
        assert!(held(&work));
        let b = once_per_cell_on(
            db.clone(),
            settings(),
            &work,
            StopStage::Intake,
            counting(starts.clone(), running.clone()),
        );
        // Several retries of the second worker pass: it never starts its inner worker.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        assert_eq!(running.load(Ordering::SeqCst), 1);

        (a.stop)().await;
        until("the second worker took over", || {
            starts.load(Ordering::SeqCst) == 2 && running.load(Ordering::SeqCst) == 1
        })
        .await;
        (b.stop)().await;
        assert_eq!(running.load(Ordering::SeqCst), 0, "stopped with the lease");
        let end = tokio::time::timeout(Duration::from_secs(5), b.finished).await;
        assert!(matches!(end, Ok(Ok(()))), "a stop is a clean end");
    }

    #[tokio::test]
    async fn a_lost_lease_stops_the_work_at_once_and_it_resumes_once_taken_again() {
        let db = pool();
        let work = work();
        let (starts, running) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let w = once_per_cell_on(
            db.clone(),
            settings(),
            &work,
            StopStage::Intake,
            counting(starts.clone(), running.clone()),
        );
        until("the worker runs", || running.load(Ordering::SeqCst) == 1).await;
        // An operator (or a failover) ends the holder's session from the server side.
        let admin = db.get().await.unwrap();
        let ended: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks
                 WHERE locktype = 'advisory' AND objsubid = 1
                   AND classid::bigint = (hashtextextended($1, 0) >> 32) & 4294967295
                   AND objid::bigint = hashtextextended($1, 0) & 4294967295",
                &[&lease_key(&work)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(ended, 1);
        until(
            "the work stopped and started again under a new lease",
            || starts.load(Ordering::SeqCst) == 2 && running.load(Ordering::SeqCst) == 1,
        )
        .await;
        assert!(held(&work));
        (w.stop)().await;
        assert!(!held(&work));
    }

    #[tokio::test]
    async fn an_inner_worker_that_dies_is_the_lease_worker_dying_and_frees_the_lease() {
        let db = pool();
        let work = work();
        let w = once_per_cell_on(db.clone(), settings(), &work, StopStage::Intake, || {
            let (stop, _) = watch::channel(false);
            let task = tokio::spawn(async { anyhow::Result::<()>::Err(anyhow::anyhow!("broken")) });
            crate::periodic_worker("inner", StopStage::Intake, task, stop)
        });
        let end = tokio::time::timeout(Duration::from_secs(10), w.finished)
            .await
            .expect("the end is seen");
        assert!(end.is_err_and(|e| e.to_string().contains("broken")));
        assert!(
            Lease::try_take(&db, &work, &settings())
                .await
                .unwrap()
                .is_some(),
            "released"
        );
    }
}
