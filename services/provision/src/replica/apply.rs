//! Applying queued registration lists to the replica DB (the work of the nightly batch, and of
//! immediate processing).
//!
//! Per tenant, uploads are applied in the order they arrived, under a session advisory lock so
//! two workers never interleave one tenant's changes. Each upload is read back from its sealed
//! chunks and applied in chunks of entries. A chunk's transaction writes its replicas, its
//! rejections, its progress row (the range of entries it settled, its counts and quota use) and
//! its outbox events, and nothing any other chunk writes: so two chunks commit in parallel on
//! two connections without ever waiting for each other, and a crash (even `kill -9`) loses
//! exactly the chunks that had not committed — the next run skips the settled ranges and every
//! entry is applied once. The producer keeps chunks in flight disjoint (no key or record id in
//! two of them); where a file repeats one, the later chunk waits until everything before it
//! has committed.
//!
//! Parsing, validation and sealing run on a thread of their own ahead of the database work. A
//! chunk's registrations go in by binary COPY through a staging table (see
//! `store::stage_replicas`), after a look-up of the keys and record ids already registered —
//! left out, when the tenant had no replica as the run began, for those the list has not
//! brought before (see `replica::seen`).

use std::{collections::HashMap, collections::HashSet, hash::BuildHasher as _, sync::Arc};

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use chukan_core::{
    Clock,
    ids::{AddresseeNo, InfoCode},
};
use chukan_crypto::{TenantKeys, Vault};
use chukan_layout::{Catalogue, RecordKind, Validated};
use chukan_mq::{OutgoingMessage, outbox::OutboxHandle};
use chukan_proto::{BatchProgress, Message, ReplicaCountChanged};
use chukan_replica_list::{Entry, Limits, ListReader, Operation};
use chukan_runtime::lease::SessionLock;
use futures_util::{StreamExt, stream::FuturesUnordered};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    SCHEMA,
    replica::quota::{DailyQuota, OrgKind, Remaining},
    replica::seen::SeenBefore,
    seal::{self, SealedReplicaRef},
    store::{self, Applied, Rejection},
};

/// Routing keys this module publishes on.
pub const REPLICA_COUNT: &str = chukan_proto::STATS_REPLICA_COUNT;
pub const BATCH_PROGRESS: &str = "batch.progress";

/// The published message for a duplicate record id (DOMAIN §6).
pub const DUPLICATE_RECORD_ID: &str = "「レコード識別番号」が既に存在しています。";

/// What applying needs; cheap to clone.
#[derive(Clone)]
pub struct Applier {
    pub db: chukan_db::Pool,
    pub vault: Vault,
    pub catalogue: Arc<Catalogue>,
    pub clock: Arc<dyn Clock>,
    pub outbox: OutboxHandle,
    pub chunk_entries: usize,
    pub limits: Limits,
}

/// Which run is applying (for batch status).
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub id: Uuid,
    pub job: &'static str,
    pub started_at: DateTime<Utc>,
}

impl RunInfo {
    pub fn new(job: &'static str, now: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::now_v7(),
            job,
            started_at: now,
        }
    }
}

/// How one upload ended in this run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UploadOutcome {
    pub upload_id: Uuid,
    pub state: store::UploadState,
    pub registered: i64,
    pub overwritten: i64,
    pub deleted: i64,
    pub rejected: i64,
    pub carried: i64,
}

/// The Japan date a run counts its quota on.
pub fn quota_day(at: DateTime<Utc>) -> NaiveDate {
    chukan_core::calendar::japan_date(at)
}

/// One entry ready for the database.
struct Item {
    ordinal: i64,
    operation: Operation,
    record_id: String,
    kind: RecordKind,
    key_bidx: Vec<u8>,
    addressee_bidx: Vec<u8>,
    public_start: Option<NaiveDate>,
    public_end: Option<NaiveDate>,
    sealed: Vec<u8>,
    bytes: i64,
    /// No row can have this key or record id yet (see [`SeenBefore`]): no look-up needed.
    fresh: bool,
}

/// How a chunk ends the upload, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkEnd {
    /// More entries follow.
    More,
    /// The file is applied to its end.
    Done,
    /// Tonight's quota is used up: the rest waits.
    Carried,
}

struct Chunk {
    items: Vec<Item>,
    rejections: Vec<Rejection>,
    /// The range of entries this chunk settles (applied or rejected), both ends included;
    /// empty (`last < first`) for a chunk that only ends the upload.
    first_ordinal: i64,
    last_ordinal: i64,
    end: ChunkEnd,
    /// Start only once every earlier chunk has committed (it repeats a key or record id).
    after_barrier: bool,
}

impl Chunk {
    fn new(first_ordinal: i64, after_barrier: bool) -> Self {
        Chunk {
            items: Vec::new(),
            rejections: Vec::new(),
            first_ordinal,
            last_ordinal: first_ordinal - 1,
            end: ChunkEnd::More,
            after_barrier,
        }
    }

    /// A chunk that settles no entry (it only says how the upload ends).
    fn ending(end: ChunkEnd) -> Self {
        Chunk {
            end,
            ..Chunk::new(0, false)
        }
    }

    fn len(&self) -> usize {
        self.items.len() + self.rejections.len()
    }

    fn is_empty(&self) -> bool {
        self.last_ordinal < self.first_ordinal
    }
}

fn rejection(entry: &Entry, code: &str, detail: impl Into<String>, action: &str) -> Rejection {
    Rejection {
        ordinal: entry.ordinal as i64,
        record_id: entry.record_id.clone(),
        code: code.to_string(),
        detail: detail.into(),
        action: action.to_string(),
    }
}

/// An entry no night could ever take: carrying it would hold it (and every later upload)
/// back for ever.
fn larger_than_a_day(entry: &Entry, quota: DailyQuota) -> Rejection {
    rejection(
        entry,
        "exceeds-daily-quota",
        format!(
            "レコードの大きさ（{} バイト）が1日の登録容量の上限（{} バイト）を超えているため、登録できません。",
            entry.byte_len, quota.bytes
        ),
        "副本データを分割するか、団体の人口・区分の設定が正しいか運用窓口に確認してください。",
    )
}

const FIX_AND_RESEND: &str = "登録リストの該当レコードを修正し、再度登録してください。";

/// Checks one entry against the identifiers' rules and, for a registration, the layout.
/// Returns the history dates the layout found (none for a deletion).
pub(crate) fn check(
    catalogue: &Catalogue,
    day: NaiveDate,
    entry: &Entry,
) -> Result<Option<Validated>, Rejection> {
    check_kind(catalogue, day, entry, &record_kind(entry))
}

fn record_kind(entry: &Entry) -> RecordKind {
    RecordKind {
        info_code: entry.info_code.clone(),
        major_version: entry.major_version.clone(),
        dataset: entry.dataset.clone(),
    }
}

fn check_kind(
    catalogue: &Catalogue,
    day: NaiveDate,
    entry: &Entry,
    kind: &RecordKind,
) -> Result<Option<Validated>, Rejection> {
    if let Some(d) = entry.defects.first() {
        return Err(rejection(entry, d.code, d.detail.clone(), FIX_AND_RESEND));
    }
    if InfoCode::parse(&entry.info_code).is_err() {
        return Err(rejection(
            entry,
            "invalid-info-code",
            "特定個人情報名コードは「TM」と14桁の数字で指定してください。",
            FIX_AND_RESEND,
        ));
    }
    if AddresseeNo::parse(&entry.addressee).is_err() {
        return Err(rejection(
            entry,
            "invalid-addressee",
            "団体内統合宛名番号は15桁以内の数字で指定してください。",
            FIX_AND_RESEND,
        ));
    }
    if matches!((entry.public_start, entry.public_end), (Some(s), Some(e)) if e < s) {
        return Err(rejection(
            entry,
            "public-period-order",
            "公開終了日が公開開始日より前です。",
            FIX_AND_RESEND,
        ));
    }
    if entry.operation == Operation::Delete {
        return Ok(None);
    }
    catalogue
        .validate(kind, &entry.payload, day)
        .map(Some)
        .map_err(|r| match r.violations.first() {
            Some(v) => rejection(entry, v.code, v.detail.clone(), &v.action),
            None => rejection(
                entry,
                "invalid-record",
                "レコードが不正です。",
                FIX_AND_RESEND,
            ),
        })
}

/// Checks one entry and seals it for the database.
pub(crate) fn prepare(
    catalogue: &Catalogue,
    keys: &TenantKeys,
    tenant: &str,
    day: NaiveDate,
    entry: &Entry,
) -> Result<PreparedEntry, Rejection> {
    let kind = record_kind(entry);
    let validated = check_kind(catalogue, day, entry, &kind)?;
    let key_bidx = seal::record_key_index(keys, &kind, &entry.record_key);
    let addressee_bidx = seal::addressee_index(keys, &entry.addressee);
    let sealed = match validated {
        None => Vec::new(),
        Some(validated) => {
            let replica = SealedReplicaRef {
                addressee: &entry.addressee,
                record_key: &entry.record_key,
                parent_record_key: entry.parent_record_key.as_deref(),
                valid_from: validated.valid_from,
                valid_to: validated.valid_to,
                payload: &entry.payload,
            };
            seal::seal_replica(keys, tenant, &kind, &key_bidx, &replica).map_err(|_| {
                rejection(
                    entry,
                    "invalid-record",
                    "レコードを保存できませんでした。",
                    FIX_AND_RESEND,
                )
            })?
        }
    };
    Ok(PreparedEntry {
        kind,
        key_bidx,
        addressee_bidx,
        sealed,
    })
}

pub(crate) struct PreparedEntry {
    kind: RecordKind,
    key_bidx: Vec<u8>,
    addressee_bidx: Vec<u8>,
    sealed: Vec<u8>,
}

/// Chunks in flight on their own connections at once.
const PARALLEL_CHUNKS: usize = 2;

impl Applier {
    /// Applies the tenant's pending uploads (or only `only`) as far as today's quota allows.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, run = %run.id))]
    pub async fn run_tenant(
        &self,
        run: &RunInfo,
        tenant: &str,
        only: Option<Uuid>,
    ) -> anyhow::Result<Vec<UploadOutcome>> {
        let lock = SessionLock::acquire(&self.db, &format!("provision.apply:{tenant}")).await?;
        let result = self.run_locked(run, tenant, only).await;
        lock.release().await;
        result
    }

    async fn run_locked(
        &self,
        run: &RunInfo,
        tenant: &str,
        only: Option<Uuid>,
    ) -> anyhow::Result<Vec<UploadOutcome>> {
        let now = self.clock.now();
        let day = quota_day(now);
        let mut client = self.db.get().await.context("pool")?;
        let Some(org) = store::org(&client, tenant).await? else {
            anyhow::bail!("organisation is not known to provision");
        };
        let kind = OrgKind::parse(&org.kind).context("organisation kind")?;
        let quota = DailyQuota::for_org(kind, org.population);
        let keys = self.vault.keys(&**client, tenant).await?;
        let (pending, used) = {
            let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
            let pending = store::pending_uploads(&tx, tenant, only).await?;
            let used = store::daily_usage(&tx, tenant, day).await?;
            tx.commit().await?;
            (pending, used)
        };
        drop(client);
        let mut remaining = Remaining::of(quota, used.0, used.1);
        let mut outcomes = Vec::new();
        // Uploads are applied in arrival order: once one waits for the next night, every
        // later one waits too, even if its entries would still fit tonight.
        let mut carrying = false;
        for upload in pending {
            let outcome = self
                .apply_upload(
                    run,
                    tenant,
                    &keys,
                    day,
                    &upload,
                    (quota, &mut remaining),
                    carrying,
                )
                .await?;
            carrying |= outcome.state == store::UploadState::Carried;
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_upload(
        &self,
        run: &RunInfo,
        tenant: &str,
        keys: &Arc<TenantKeys>,
        day: NaiveDate,
        upload: &store::PendingUpload,
        (quota, remaining): (DailyQuota, &mut Remaining),
        carrying: bool,
    ) -> anyhow::Result<UploadOutcome> {
        let (settled, empty) = {
            let mut client = self.db.get().await.context("pool")?;
            let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
            if !carrying {
                store::mark_processing(&tx, upload.id, self.clock.now()).await?;
            }
            let settled = store::settled_ranges(&tx, upload.id).await?;
            let empty = !store::has_replicas(&tx, tenant).await?;
            tx.commit().await?;
            (settled, empty)
        };
        let mut totals = Applied::default();
        let mut end = ChunkEnd::Carried;
        if !carrying && !remaining.is_exhausted() {
            let (chunks_tx, chunks_rx) = mpsc::channel::<Chunk>(1);
            let producer = Producer {
                db: self.db.clone(),
                catalogue: self.catalogue.clone(),
                keys: keys.clone(),
                tenant: tenant.to_string(),
                upload: upload.id,
                settled,
                day,
                quota,
                remaining: *remaining,
                chunk_entries: self.chunk_entries,
                // Nothing but this run writes the tenant's replicas (the apply lock), so into
                // an empty replica DB only what the list itself repeats can exist already.
                seen_before: empty
                    .then(|| SeenBefore::for_entries(usize::try_from(upload.entries).unwrap_or(0))),
                limits: self.limits,
            };
            // Parsing, checking and sealing are CPU work of their own, on a thread of their
            // own: as a task on the async workers it would hold a worker for a whole chunk
            // at a time, and the committing task it wakes when a chunk is ready would wait
            // behind it on the same worker (tokio runs a task woken by the running one on
            // that worker, where no idle worker can take it). Its awaits (reading the stored
            // file, handing chunks over) are served by the runtime it came from.
            let runtime = tokio::runtime::Handle::current();
            let producer =
                tokio::task::spawn_blocking(move || runtime.block_on(produce(producer, chunks_tx)));
            let committed = self
                .commit_chunks(run, tenant, day, upload, chunks_rx)
                .await;
            // The producer stops when the channel closes; its own error explains a failure
            // better than the closed channel does.
            let produced = producer.await.context("producer task")?;
            let (applied, last_end) = committed?;
            produced?;
            totals = applied;
            end = last_end;
            // What the producer took from the quota is what the chunks used at most. (After a
            // carried upload the caller holds every later one back anyway.)
            remaining.records = (remaining.records - totals.records).max(0);
            remaining.bytes = (remaining.bytes - totals.bytes).max(0);
        }
        let carried = self.finish(run, tenant, upload, end).await?;
        Ok(UploadOutcome {
            upload_id: upload.id,
            state: if end == ChunkEnd::Done {
                store::UploadState::Done
            } else {
                store::UploadState::Carried
            },
            registered: totals.registered,
            overwritten: totals.overwritten,
            deleted: totals.deleted,
            rejected: totals.rejected,
            carried,
        })
    }

    /// Commits chunks as they come, up to [`PARALLEL_CHUNKS`] at once; a chunk marked
    /// `after_barrier` starts only when every earlier one has committed.
    async fn commit_chunks(
        &self,
        run: &RunInfo,
        tenant: &str,
        day: NaiveDate,
        upload: &store::PendingUpload,
        mut chunks: mpsc::Receiver<Chunk>,
    ) -> anyhow::Result<(Applied, ChunkEnd)> {
        let mut in_flight = FuturesUnordered::new();
        let mut totals = Applied::default();
        let mut end = ChunkEnd::More;
        let add = |totals: &mut Applied, a: Applied| {
            totals.registered += a.registered;
            totals.overwritten += a.overwritten;
            totals.deleted += a.deleted;
            totals.rejected += a.rejected;
            totals.records += a.records;
            totals.bytes += a.bytes;
        };
        while let Some(chunk) = chunks.recv().await {
            if chunk.end != ChunkEnd::More {
                end = chunk.end;
            }
            let must_drain = chunk.after_barrier || in_flight.len() >= PARALLEL_CHUNKS;
            if must_drain {
                let limit = if chunk.after_barrier {
                    0
                } else {
                    PARALLEL_CHUNKS - 1
                };
                while in_flight.len() > limit {
                    if let Some(r) = in_flight.next().await {
                        add(&mut totals, r?);
                    }
                }
            }
            in_flight.push(self.commit_chunk(run, tenant, day, upload, chunk));
        }
        while let Some(r) = in_flight.next().await {
            add(&mut totals, r?);
        }
        self.outbox.wake();
        Ok((totals, end))
    }

    /// One transaction: rows, rejections, the progress row and events — nothing shared.
    async fn commit_chunk(
        &self,
        run: &RunInfo,
        tenant: &str,
        day: NaiveDate,
        upload: &store::PendingUpload,
        chunk: Chunk,
    ) -> anyhow::Result<Applied> {
        if chunk.is_empty() {
            return Ok(Applied::default());
        }
        let now = self.clock.now();
        let mut client = self.db.get().await.context("pool")?;
        let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
        let Chunk {
            items,
            mut rejections,
            first_ordinal,
            last_ordinal,
            ..
        } = chunk;

        let (registers, deletes): (Vec<&Item>, Vec<&Item>) = items
            .iter()
            .partition(|i| i.operation == Operation::Register);
        // Of the registrations, those whose key or record id may be registered already.
        let (reg_keys, reg_ids): (Vec<&[u8]>, Vec<&str>) = registers
            .iter()
            .filter(|i| !i.fresh)
            .map(|i| (i.key_bidx.as_slice(), i.record_id.as_str()))
            .unzip();
        let (existing_keys, existing_ids) = if reg_keys.is_empty() {
            Default::default()
        } else {
            store::existing(&tx, tenant, &reg_keys, &reg_ids).await?
        };
        let mut staged = Vec::with_capacity(registers.len());
        let mut overwritten_keys: Vec<&[u8]> = Vec::new();
        let mut applied = Applied::default();
        let mut deltas: HashMap<RecordKind, i64> = HashMap::new();
        for item in &registers {
            if existing_ids.contains(&item.record_id) {
                rejections.push(Rejection {
                    ordinal: item.ordinal,
                    record_id: item.record_id.clone(),
                    code: "duplicate-record-id".into(),
                    detail: DUPLICATE_RECORD_ID.into(),
                    action: "別のレコード識別番号を採番して登録してください。同じレコードを更新する場合は、同じデータセットレコードキーで登録してください（上書き）。".into(),
                });
                continue;
            }
            applied.bytes += item.bytes;
            let overwrite = existing_keys.contains(&item.key_bidx);
            if overwrite {
                applied.overwritten += 1;
                overwritten_keys.push(&item.key_bidx);
            } else {
                applied.registered += 1;
                *deltas.entry(item.kind.clone()).or_default() += 1;
            }
            staged.push(store::StagedReplica {
                key_bidx: &item.key_bidx,
                kind: &item.kind,
                record_id: &item.record_id,
                addressee_bidx: &item.addressee_bidx,
                public_start: item.public_start,
                public_end: item.public_end,
                sealed: &item.sealed,
                bytes: i32::try_from(item.bytes).unwrap_or(i32::MAX),
                overwrite,
            });
        }
        if !staged.is_empty() {
            // COPY into the session's staging table, then into the replicas under the
            // tenant's policy (see `store::stage_replicas`).
            store::stage_replicas(&tx, &staged).await?;
            if staged.len() > overwritten_keys.len() {
                store::insert_staged(&tx, tenant, upload.id, now).await?;
            }
            if !overwritten_keys.is_empty() {
                store::update_staged(&tx, tenant, upload.id, now, &overwritten_keys).await?;
            }
        }
        if !deletes.is_empty() {
            let keys: Vec<&[u8]> = deletes.iter().map(|i| i.key_bidx.as_slice()).collect();
            let gone = store::delete_replicas(&tx, tenant, &keys).await?;
            let gone_keys: HashSet<&[u8]> = gone.iter().map(|(k, _)| k.as_slice()).collect();
            for item in &deletes {
                if gone_keys.contains(item.key_bidx.as_slice()) {
                    applied.deleted += 1;
                    applied.bytes += item.bytes;
                    *deltas.entry(item.kind.clone()).or_default() -= 1;
                } else {
                    rejections.push(Rejection {
                        ordinal: item.ordinal,
                        record_id: item.record_id.clone(),
                        code: "not-registered".into(),
                        detail: "削除対象の副本が登録されていません。".into(),
                        action: "特定個人情報名コード、バージョン、データセット及びデータセットレコードキーを確認してください。".into(),
                    });
                }
            }
        }
        applied.rejected = rejections.len() as i64;
        applied.records = applied.registered + applied.overwritten + applied.deleted;
        store::insert_rejections(&tx, tenant, upload.id, &rejections).await?;
        let deltas: Vec<(RecordKind, i64)> = deltas.into_iter().filter(|(_, d)| *d != 0).collect();
        store::insert_count_deltas(&tx, tenant, &deltas).await?;
        store::insert_progress(
            &tx,
            tenant,
            upload.id,
            (first_ordinal, last_ordinal),
            &applied,
            day,
        )
        .await?;
        let progress = BatchProgress {
            run_id: run.id.to_string(),
            job: run.job.to_string(),
            tenant: tenant.to_string(),
            state: "running".to_string(),
            processed: last_ordinal,
            total: upload.entries,
            carried: 0,
            rejected: applied.rejected,
            started_at_ms: run.started_at.timestamp_millis(),
            updated_at_ms: now.timestamp_millis(),
            summary: format!(
                "副本登録 {}: {last_ordinal}/{} 件目まで処理",
                upload.id, upload.entries
            ),
        };
        enqueue(&tx, tenant, BATCH_PROGRESS, progress.encode_to_vec()).await?;
        tx.commit().await?;
        crate::metrics::record_applied(&applied);
        Ok(applied)
    }

    /// After the chunks: the upload's state, and the count changes folded with their events.
    /// Returns the entries left for a later night.
    async fn finish(
        &self,
        run: &RunInfo,
        tenant: &str,
        upload: &store::PendingUpload,
        end: ChunkEnd,
    ) -> anyhow::Result<i64> {
        let now = self.clock.now();
        let mut client = self.db.get().await.context("pool")?;
        let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
        let settled = settled_count(&store::settled_ranges(&tx, upload.id).await?);
        match end {
            ChunkEnd::Done => store::finish_upload(&tx, upload.id, now).await?,
            _ => store::carry_upload(&tx, upload.id, upload.entries - settled).await?,
        }
        publish_counts(&tx, tenant, now).await?;
        let progress = BatchProgress {
            run_id: run.id.to_string(),
            job: run.job.to_string(),
            tenant: tenant.to_string(),
            state: "done".into(),
            processed: settled,
            total: upload.entries,
            carried: upload.entries - settled,
            rejected: 0,
            started_at_ms: run.started_at.timestamp_millis(),
            updated_at_ms: now.timestamp_millis(),
            summary: if end == ChunkEnd::Done {
                format!("副本登録 {}: 完了 ({} 件)", upload.id, upload.entries)
            } else {
                format!(
                    "副本登録 {}: 日次上限のため {} 件を翌日に繰越",
                    upload.id,
                    upload.entries - settled
                )
            },
        };
        enqueue(&tx, tenant, BATCH_PROGRESS, progress.encode_to_vec()).await?;
        tx.commit().await?;
        self.outbox.wake();
        Ok(if end == ChunkEnd::Done {
            0
        } else {
            upload.entries - settled
        })
    }
}

/// Folds pending count changes and announces the new counts (in the caller's transaction).
pub async fn publish_counts(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    for (kind, count, delta) in store::fold_counts(tx, tenant).await? {
        let event = ReplicaCountChanged {
            tenant: tenant.to_string(),
            info_code: kind.info_code,
            major_version: kind.major_version,
            dataset: kind.dataset,
            count,
            delta,
            at_ms: now.timestamp_millis(),
        };
        enqueue(tx, tenant, REPLICA_COUNT, event.encode_to_vec()).await?;
    }
    Ok(())
}

/// One event into provision's outbox, in the caller's transaction.
async fn enqueue(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant: &str,
    routing_key: &str,
    body: Vec<u8>,
) -> Result<(), tokio_postgres::Error> {
    chukan_mq::outbox::enqueue(tx, SCHEMA, &OutgoingMessage::new(tenant, routing_key, body)).await
}

/// Entries covered by settled ranges.
fn settled_count(ranges: &[(i64, i64)]) -> i64 {
    ranges.iter().map(|(a, b)| b - a + 1).sum()
}

struct Producer {
    db: chukan_db::Pool,
    catalogue: Arc<Catalogue>,
    keys: Arc<TenantKeys>,
    tenant: String,
    upload: Uuid,
    /// Ranges of entries committed earlier (sorted): skipped.
    settled: Vec<(i64, i64)>,
    day: NaiveDate,
    /// The whole day's caps: an entry larger than them is refused, never carried.
    quota: DailyQuota,
    remaining: Remaining,
    chunk_entries: usize,
    limits: Limits,
    /// What the list has brought so far, when the tenant had no replica as the run began.
    seen_before: Option<SeenBefore>,
}

/// Keys and record ids of the chunks that may still be uncommitted, so that chunks in flight
/// never touch the same row (they would wait for each other).
///
/// Each key and id is held as a 64-bit hash (a fingerprint) with the last chunk (by number)
/// that took it: one look-up per entry however many chunks the window spans, and nothing
/// copied. Two values sharing a fingerprint only cost a barrier that was not needed, never a
/// missed one.
#[derive(Default)]
struct Window {
    /// Number of the chunk being built.
    current: u64,
    hasher: std::hash::RandomState,
    keys: HashMap<u64, u64>,
    ids: HashMap<u64, u64>,
}

/// An entry's key and record id, as the window holds them.
#[derive(Clone, Copy)]
struct Fingerprints {
    key: u64,
    id: u64,
}

/// Chunks that can be uncommitted besides the one being built: one in the channel, one received
/// and waiting for a free slot, and [`PARALLEL_CHUNKS`] in flight.
const PIPELINE_DEPTH: u64 = PARALLEL_CHUNKS as u64 + 2;

impl Window {
    fn fingerprints(&self, key: &[u8], id: &str) -> Fingerprints {
        Fingerprints {
            key: self.hasher.hash_one(key),
            id: self.hasher.hash_one(id),
        }
    }

    /// The oldest chunk that may still be uncommitted.
    fn oldest(&self) -> u64 {
        self.current.saturating_sub(PIPELINE_DEPTH)
    }

    fn seen(&self, f: Fingerprints) -> bool {
        let oldest = self.oldest();
        self.keys.get(&f.key).is_some_and(|&c| c >= oldest)
            || self.ids.get(&f.id).is_some_and(|&c| c >= oldest)
    }

    fn add(&mut self, f: Fingerprints) {
        self.keys.insert(f.key, self.current);
        self.ids.insert(f.id, self.current);
    }

    /// The current chunk was sent: start a new one and forget what has surely committed.
    fn next_chunk(&mut self) {
        self.current += 1;
        let oldest = self.oldest();
        self.keys.retain(|_, c| *c >= oldest);
        self.ids.retain(|_, c| *c >= oldest);
    }

    /// Everything before has committed (a barrier chunk waits for it).
    fn clear(&mut self) {
        self.keys.clear();
        self.ids.clear();
    }
}

/// Reads the stored file back, chunk by chunk, and turns its entries into database-ready
/// chunks, stopping where tonight's quota ends.
async fn produce(mut p: Producer, out: mpsc::Sender<Chunk>) -> anyhow::Result<()> {
    let reader = crate::replica::intake::stored_file_reader(
        p.db.clone(),
        p.keys.clone(),
        p.tenant.clone(),
        p.upload,
    );
    let mut list = ListReader::new(reader, p.limits);
    let mut settled = p.settled.iter().copied().peekable();
    let mut window = Window::default();
    let mut chunk: Option<Chunk> = None;
    let mut barrier = false;
    // Sends the chunk being built, if any; false when the committing side has gone.
    async fn send(
        chunk: &mut Option<Chunk>,
        window: &mut Window,
        out: &mpsc::Sender<Chunk>,
    ) -> bool {
        match chunk.take() {
            None => true,
            Some(c) => {
                window.next_chunk();
                out.send(c).await.is_ok()
            }
        }
    }
    while let Some(entry) = list
        .next_entry()
        .await
        .map_err(|e| anyhow::anyhow!("stored registration list: {} ({})", e, e.code()))?
    {
        let ordinal = entry.ordinal as i64;
        while settled.peek().is_some_and(|(_, last)| *last < ordinal) {
            settled.next();
        }
        if settled.peek().is_some_and(|(first, _)| *first <= ordinal) {
            // Committed by an earlier run: a chunk never spans a settled range.
            if !send(&mut chunk, &mut window, &out).await {
                return Ok(());
            }
            continue;
        }
        let prepared = prepare(&p.catalogue, &p.keys, &p.tenant, p.day, &entry).and_then(|prep| {
            if p.quota.admits(entry.byte_len as i64) {
                Ok(prep)
            } else {
                Err(larger_than_a_day(&entry, p.quota))
            }
        });
        let mut fresh = false;
        if let Ok(prep) = &prepared {
            if !p.remaining.take(entry.byte_len as i64) {
                let mut c = chunk
                    .take()
                    .unwrap_or_else(|| Chunk::ending(ChunkEnd::Carried));
                c.end = ChunkEnd::Carried;
                let _ = out.send(c).await;
                return Ok(());
            }
            // A key or record id still possibly in flight must see that entry committed first.
            let fingerprints = window.fingerprints(&prep.key_bidx, &entry.record_id);
            if window.seen(fingerprints) {
                if !send(&mut chunk, &mut window, &out).await {
                    return Ok(());
                }
                window.clear();
                barrier = true;
            }
            window.add(fingerprints);
            if let Some(seen) = &mut p.seen_before {
                // Both are added: neither check may be skipped.
                let key_before = seen.check_and_add(fingerprints.key);
                let id_before = seen.check_and_add(fingerprints.id);
                fresh = !(key_before || id_before);
            }
        }
        let c = chunk.get_or_insert_with(|| Chunk::new(ordinal, std::mem::take(&mut barrier)));
        c.last_ordinal = ordinal;
        match prepared {
            Err(rejection) => c.rejections.push(rejection),
            Ok(prep) => c.items.push(Item {
                ordinal,
                operation: entry.operation,
                record_id: entry.record_id,
                kind: prep.kind,
                key_bidx: prep.key_bidx,
                addressee_bidx: prep.addressee_bidx,
                public_start: entry.public_start,
                public_end: entry.public_end,
                sealed: prep.sealed,
                bytes: entry.byte_len as i64,
                fresh,
            }),
        }
        if c.len() >= p.chunk_entries && !send(&mut chunk, &mut window, &out).await {
            return Ok(());
        }
    }
    let mut c = chunk
        .take()
        .unwrap_or_else(|| Chunk::ending(ChunkEnd::Done));
    c.end = ChunkEnd::Done;
    let _ = out.send(c).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_holds_what_may_still_be_uncommitted_and_no_more() {
        let mut w = Window::default();
        let f = |w: &Window, key: u8, id: &str| w.fingerprints(&[key; 32], id);
        let first = f(&w, 1, "R1");
        w.add(first);
        assert!(w.seen(f(&w, 1, "other")), "a key of the chunk being built");
        assert!(
            w.seen(f(&w, 9, "R1")),
            "a record id of the chunk being built"
        );
        assert!(!w.seen(f(&w, 2, "R2")));
        // The chunk with key 1 stays in the window while it may be uncommitted...
        for _ in 0..PIPELINE_DEPTH {
            w.next_chunk();
            assert!(w.seen(f(&w, 1, "R9")));
        }
        w.add(f(&w, 2, "R2"));
        // ... and is forgotten once it has surely committed.
        w.next_chunk();
        assert!(!w.seen(first));
        assert!(w.seen(f(&w, 2, "R0")));
        // The same key again moves it to the newest chunk.
        w.add(f(&w, 2, "R2"));
        for _ in 0..PIPELINE_DEPTH {
            w.next_chunk();
        }
        assert!(w.seen(f(&w, 2, "R2")));
        // After a barrier nothing before is in flight.
        w.clear();
        assert!(!w.seen(f(&w, 2, "R2")));
        w.add(f(&w, 3, "R3"));
        assert!(w.seen(f(&w, 3, "R3")));
    }
}
