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
//! Parsing, validation and sealing run in their own task ahead of the database work.

use std::{collections::HashMap, collections::HashSet, sync::Arc};

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
        let settled = {
            let mut client = self.db.get().await.context("pool")?;
            let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
            if !carrying {
                store::mark_processing(&tx, upload.id, self.clock.now()).await?;
            }
            let settled = store::settled_ranges(&tx, upload.id).await?;
            tx.commit().await?;
            settled
        };
        let mut totals = Applied::default();
        let mut end = ChunkEnd::Carried;
        if !carrying && !remaining.is_exhausted() {
            let (chunks_tx, chunks_rx) = mpsc::channel::<Chunk>(1);
            let producer = tokio::spawn(produce(
                Producer {
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
                    limits: self.limits,
                },
                chunks_tx,
            ));
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
        let reg_keys: Vec<&[u8]> = registers.iter().map(|i| i.key_bidx.as_slice()).collect();
        let reg_ids: Vec<&str> = registers.iter().map(|i| i.record_id.as_str()).collect();
        let (existing_keys, existing_ids) = if registers.is_empty() {
            Default::default()
        } else {
            store::existing(&tx, tenant, &reg_keys, &reg_ids).await?
        };
        let mut new_rows = store::ReplicaRows::default();
        let mut old_rows = store::ReplicaRows::default();
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
            let rows = if existing_keys.contains(&item.key_bidx) {
                applied.overwritten += 1;
                &mut old_rows
            } else {
                applied.registered += 1;
                *deltas.entry(item.kind.clone()).or_default() += 1;
                &mut new_rows
            };
            rows.key_bidx.push(&item.key_bidx);
            rows.info_code.push(&item.kind.info_code);
            rows.major_version.push(&item.kind.major_version);
            rows.dataset.push(&item.kind.dataset);
            rows.record_id.push(&item.record_id);
            rows.addressee_bidx.push(&item.addressee_bidx);
            rows.public_start.push(item.public_start);
            rows.public_end.push(item.public_end);
            rows.sealed.push(&item.sealed);
            rows.bytes
                .push(i32::try_from(item.bytes).unwrap_or(i32::MAX));
        }
        if !new_rows.is_empty() {
            store::insert_replicas(&tx, tenant, upload.id, now, &new_rows).await?;
        }
        if !old_rows.is_empty() {
            store::update_replicas(&tx, tenant, upload.id, now, &old_rows).await?;
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
}

/// Keys and record ids of the chunks that may still be uncommitted, so that chunks in flight
/// never touch the same row (they would wait for each other).
#[derive(Default)]
struct Window {
    /// The chunk being built, then the ones sent after it, newest first.
    recent: std::collections::VecDeque<(HashSet<Vec<u8>>, HashSet<String>)>,
}

/// Chunks that can be uncommitted besides the one being built: one in the channel, one received
/// and waiting for a free slot, and [`PARALLEL_CHUNKS`] in flight.
const PIPELINE_DEPTH: usize = PARALLEL_CHUNKS + 2;

impl Window {
    fn seen(&self, key: &[u8], id: &str) -> bool {
        self.recent
            .iter()
            .any(|(keys, ids)| keys.contains(key) || ids.contains(id))
    }

    fn add(&mut self, key: Vec<u8>, id: String) {
        if self.recent.is_empty() {
            self.recent.push_front(Default::default());
        }
        if let Some((keys, ids)) = self.recent.front_mut() {
            keys.insert(key);
            ids.insert(id);
        }
    }

    /// The current chunk was sent: start a new one and forget what has surely committed.
    fn next_chunk(&mut self) {
        self.recent.push_front(Default::default());
        self.recent.truncate(PIPELINE_DEPTH + 1);
    }

    /// Everything before has committed (a barrier chunk waits for it).
    fn clear(&mut self) {
        self.recent.clear();
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
            if window.seen(&prep.key_bidx, &entry.record_id) {
                if !send(&mut chunk, &mut window, &out).await {
                    return Ok(());
                }
                window.clear();
                barrier = true;
            }
            window.add(prep.key_bidx.clone(), entry.record_id.clone());
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
