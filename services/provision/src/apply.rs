//! Applying queued registration lists to the replica DB (the work of the nightly batch, and of
//! immediate processing).
//!
//! Per tenant, uploads are applied in the order they arrived, under a session advisory lock so
//! two workers never interleave one tenant's changes. Each upload is read back from its sealed
//! chunks and applied in chunks of entries; every chunk commits its rows, its rejections, the
//! upload's counters, its resume point (`next_ordinal`), the day's quota use and the outbox
//! events in one transaction — so a crash (even `kill -9`) redoes at most the chunk in flight and
//! every entry is applied exactly once.
//!
//! Parsing, validation and sealing run in a separate task ahead of the database work (one chunk
//! of look-ahead), so the two cores work at once.

use std::{collections::HashMap, collections::HashSet, sync::Arc};

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Asia::Tokyo;
use chukan_core::{
    Clock,
    ids::{AddresseeNo, InfoCode},
};
use chukan_crypto::{TenantKeys, Vault};
use chukan_layout::{Catalogue, RecordKind, Validated};
use chukan_mq::{OutgoingMessage, outbox::OutboxHandle};
use chukan_proto::{BatchProgress, Message, ReplicaCountChanged};
use chukan_replica_list::{Entry, Limits, ListReader, Operation};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    SCHEMA,
    quota::{DailyQuota, OrgKind, Remaining},
    seal::{self, SealedReplica},
    session_lock::SessionLock,
    store::{self, Applied, Rejection},
};

/// Routing keys this module publishes on.
pub const REPLICA_COUNT: &str = "stats.replica-count";
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
    pub state: &'static str,
    pub registered: i64,
    pub overwritten: i64,
    pub deleted: i64,
    pub rejected: i64,
    pub carried: i64,
}

/// The Japan date a run counts its quota on.
pub fn quota_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&Tokyo).date_naive()
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
    /// Ordinal of the last entry this chunk settles (applied or rejected).
    last_ordinal: i64,
    end: ChunkEnd,
}

impl Chunk {
    fn new(last_ordinal: i64) -> Self {
        Chunk {
            items: Vec::new(),
            rejections: Vec::new(),
            last_ordinal,
            end: ChunkEnd::More,
        }
    }

    fn len(&self) -> usize {
        self.items.len() + self.rejections.len()
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

const FIX_AND_RESEND: &str = "登録リストの該当レコードを修正し、再度登録してください。";

/// Checks one entry against the identifiers' rules and, for a registration, the layout.
/// Returns the history dates the layout found (none for a deletion).
pub(crate) fn check(
    catalogue: &Catalogue,
    day: NaiveDate,
    entry: &Entry,
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
    let kind = RecordKind {
        info_code: entry.info_code.clone(),
        major_version: entry.major_version.clone(),
        dataset: entry.dataset.clone(),
    };
    catalogue
        .validate(&kind, &entry.payload, day)
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
    let validated = check(catalogue, day, entry)?;
    let kind = RecordKind {
        info_code: entry.info_code.clone(),
        major_version: entry.major_version.clone(),
        dataset: entry.dataset.clone(),
    };
    let key_bidx = seal::record_key_index(keys, &entry.record_key);
    let addressee_bidx = seal::addressee_index(keys, &entry.addressee);
    let sealed = match validated {
        None => Vec::new(),
        Some(validated) => {
            let replica = SealedReplica {
                addressee: entry.addressee.clone(),
                record_key: entry.record_key.clone(),
                parent_record_key: entry.parent_record_key.clone(),
                valid_from: validated.valid_from,
                valid_to: validated.valid_to,
                payload: entry.payload.clone(),
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
            let outcome = if carrying || remaining.is_exhausted() {
                self.carry(tenant, &upload).await?
            } else {
                self.apply_upload(run, tenant, &keys, day, &upload, &mut remaining)
                    .await?
            };
            carrying |= outcome.state == "carried";
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn carry(
        &self,
        tenant: &str,
        upload: &store::PendingUpload,
    ) -> anyhow::Result<UploadOutcome> {
        let mut client = self.db.get().await.context("pool")?;
        let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
        store::carry_upload(&tx, upload.id).await?;
        tx.commit().await?;
        Ok(UploadOutcome {
            upload_id: upload.id,
            state: "carried",
            registered: 0,
            overwritten: 0,
            deleted: 0,
            rejected: 0,
            carried: upload.entries - upload.next_ordinal + 1,
        })
    }

    async fn apply_upload(
        &self,
        run: &RunInfo,
        tenant: &str,
        keys: &Arc<TenantKeys>,
        day: NaiveDate,
        upload: &store::PendingUpload,
        remaining: &mut Remaining,
    ) -> anyhow::Result<UploadOutcome> {
        {
            let mut client = self.db.get().await.context("pool")?;
            let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
            store::mark_processing(&tx, upload.id, self.clock.now()).await?;
            tx.commit().await?;
        }
        let (chunks_tx, mut chunks_rx) = mpsc::channel::<Chunk>(1);
        let producer = tokio::spawn(produce(
            Producer {
                db: self.db.clone(),
                catalogue: self.catalogue.clone(),
                keys: keys.clone(),
                tenant: tenant.to_string(),
                upload: upload.id,
                start: upload.next_ordinal,
                day,
                remaining: *remaining,
                chunk_entries: self.chunk_entries,
                limits: self.limits,
            },
            chunks_tx,
        ));
        let mut totals = Applied::default();
        let mut end = ChunkEnd::More;
        let mut next_ordinal = upload.next_ordinal;
        while let Some(chunk) = chunks_rx.recv().await {
            let consumed: Vec<i64> = chunk.items.iter().map(|i| i.bytes).collect();
            end = chunk.end;
            let applied = self
                .commit_chunk(run, tenant, day, upload, chunk, &mut next_ordinal)
                .await?;
            // The producer planned with its own copy of the quota; mirror what it took.
            for b in consumed {
                remaining.take(b);
            }
            totals.registered += applied.registered;
            totals.overwritten += applied.overwritten;
            totals.deleted += applied.deleted;
            totals.rejected += applied.rejected;
        }
        producer.await.context("producer task")??;
        self.outbox.wake();
        let (state, carried) = match end {
            ChunkEnd::Done => ("done", 0),
            ChunkEnd::Carried => ("carried", upload.entries - next_ordinal + 1),
            ChunkEnd::More => anyhow::bail!("registration list ended without an end chunk"),
        };
        Ok(UploadOutcome {
            upload_id: upload.id,
            state,
            registered: totals.registered,
            overwritten: totals.overwritten,
            deleted: totals.deleted,
            rejected: totals.rejected,
            carried,
        })
    }

    /// One transaction: rows, rejections, counters, resume point, quota use and events.
    async fn commit_chunk(
        &self,
        run: &RunInfo,
        tenant: &str,
        day: NaiveDate,
        upload: &store::PendingUpload,
        chunk: Chunk,
        next_ordinal: &mut i64,
    ) -> anyhow::Result<Applied> {
        let now = self.clock.now();
        let mut client = self.db.get().await.context("pool")?;
        let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
        let Chunk {
            items,
            mut rejections,
            last_ordinal,
            end,
        } = chunk;

        let (registers, deletes): (Vec<&Item>, Vec<&Item>) = items
            .iter()
            .partition(|i| i.operation == Operation::Register);
        let ids: Vec<&str> = registers.iter().map(|i| i.record_id.as_str()).collect();
        let duplicates = store::existing_record_ids(&tx, tenant, &ids).await?;
        let mut rows = store::ReplicaRows::default();
        let mut applied_bytes = 0i64;
        for item in &registers {
            if duplicates.contains(&item.record_id) {
                rejections.push(Rejection {
                    ordinal: item.ordinal,
                    record_id: item.record_id.clone(),
                    code: "duplicate-record-id".into(),
                    detail: DUPLICATE_RECORD_ID.into(),
                    action: "別のレコード識別番号を採番して登録してください。同じレコードを更新する場合は、同じデータセットレコードキーで登録してください（上書き）。".into(),
                });
                continue;
            }
            applied_bytes += item.bytes;
            rows.info_code.push(&item.kind.info_code);
            rows.major_version.push(&item.kind.major_version);
            rows.dataset.push(&item.kind.dataset);
            rows.key_bidx.push(&item.key_bidx);
            rows.record_id.push(&item.record_id);
            rows.addressee_bidx.push(&item.addressee_bidx);
            rows.public_start.push(item.public_start);
            rows.public_end.push(item.public_end);
            rows.sealed.push(&item.sealed);
            rows.bytes
                .push(i32::try_from(item.bytes).unwrap_or(i32::MAX));
        }
        let mut applied = Applied::default();
        let mut deltas: HashMap<RecordKind, i64> = HashMap::new();
        if !rows.record_id.is_empty() {
            for kc in store::upsert_replicas(&tx, tenant, upload.id, now, &rows).await? {
                applied.registered += kc.inserted;
                applied.overwritten += kc.updated;
                *deltas.entry(kc.kind).or_default() += kc.inserted;
            }
        }
        if !deletes.is_empty() {
            let info: Vec<&str> = deletes.iter().map(|i| i.kind.info_code.as_str()).collect();
            let major: Vec<&str> = deletes
                .iter()
                .map(|i| i.kind.major_version.as_str())
                .collect();
            let ds: Vec<&str> = deletes.iter().map(|i| i.kind.dataset.as_str()).collect();
            let keys: Vec<&[u8]> = deletes.iter().map(|i| i.key_bidx.as_slice()).collect();
            let ords: Vec<i64> = deletes.iter().map(|i| i.ordinal).collect();
            let gone =
                store::delete_replicas(&tx, tenant, &info, &major, &ds, &keys, &ords).await?;
            let gone_ords: HashSet<i64> = gone.iter().map(|(o, _)| *o).collect();
            for (_, kind) in gone {
                applied.deleted += 1;
                *deltas.entry(kind).or_default() -= 1;
            }
            for item in &deletes {
                if gone_ords.contains(&item.ordinal) {
                    applied_bytes += item.bytes;
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
        store::insert_rejections(&tx, tenant, upload.id, &rejections).await?;

        let deltas: Vec<(RecordKind, i64)> = deltas.into_iter().filter(|(_, d)| *d != 0).collect();
        for (kind, count, delta) in store::bump_counts(&tx, tenant, &deltas).await? {
            let event = ReplicaCountChanged {
                tenant: tenant.to_string(),
                info_code: kind.info_code,
                major_version: kind.major_version,
                dataset: kind.dataset,
                count,
                delta,
                at_ms: now.timestamp_millis(),
            };
            chukan_mq::outbox::enqueue(
                &tx,
                SCHEMA,
                &OutgoingMessage::new(tenant, REPLICA_COUNT, event.encode_to_vec()),
            )
            .await?;
        }
        let applied_records = applied.registered + applied.overwritten + applied.deleted;
        if applied_records > 0 {
            store::add_usage(&tx, tenant, day, applied_records, applied_bytes).await?;
        }
        store::advance_upload(&tx, upload.id, applied, last_ordinal + 1).await?;
        match end {
            ChunkEnd::Done => store::finish_upload(&tx, upload.id, now).await?,
            ChunkEnd::Carried => store::carry_upload(&tx, upload.id).await?,
            ChunkEnd::More => {}
        }
        let state = match end {
            ChunkEnd::More => "running",
            ChunkEnd::Done | ChunkEnd::Carried => "done",
        };
        let progress = BatchProgress {
            run_id: run.id.to_string(),
            job: run.job.to_string(),
            tenant: tenant.to_string(),
            state: state.to_string(),
            processed: last_ordinal,
            total: upload.entries,
            carried: if end == ChunkEnd::Carried {
                upload.entries - last_ordinal
            } else {
                0
            },
            rejected: applied.rejected,
            started_at_ms: run.started_at.timestamp_millis(),
            updated_at_ms: now.timestamp_millis(),
            summary: format!(
                "副本登録 {upload_id}: {last_ordinal}/{total} 件処理",
                upload_id = upload.id,
                total = upload.entries
            ),
        };
        chukan_mq::outbox::enqueue(
            &tx,
            SCHEMA,
            &OutgoingMessage::new(tenant, BATCH_PROGRESS, progress.encode_to_vec()),
        )
        .await?;
        tx.commit().await?;
        *next_ordinal = last_ordinal + 1;
        crate::metrics::record_applied(&applied);
        Ok(applied)
    }
}

struct Producer {
    db: chukan_db::Pool,
    catalogue: Arc<Catalogue>,
    keys: Arc<TenantKeys>,
    tenant: String,
    upload: Uuid,
    start: i64,
    day: NaiveDate,
    remaining: Remaining,
    chunk_entries: usize,
    limits: Limits,
}

/// Reads the stored file back, chunk by chunk, and turns its entries into database-ready
/// chunks, stopping where tonight's quota ends.
async fn produce(mut p: Producer, out: mpsc::Sender<Chunk>) -> anyhow::Result<()> {
    let reader =
        crate::intake::stored_file_reader(p.db.clone(), p.vault_keys(), p.tenant.clone(), p.upload);
    let mut list = ListReader::new(reader, p.limits);
    let mut chunk = Chunk::new(p.start - 1);
    let mut keys_in_chunk: HashSet<(RecordKind, Vec<u8>)> = HashSet::new();
    let mut ids_in_chunk: HashSet<String> = HashSet::new();
    while let Some(entry) = list
        .next_entry()
        .await
        .map_err(|e| anyhow::anyhow!("stored registration list: {} ({})", e, e.code()))?
    {
        let ordinal = entry.ordinal as i64;
        if ordinal < p.start {
            continue;
        }
        match prepare(&p.catalogue, &p.keys, &p.tenant, p.day, &entry) {
            Err(rejection) => {
                chunk.rejections.push(rejection);
                chunk.last_ordinal = ordinal;
            }
            Ok(prepared) => {
                let bytes = entry.byte_len as i64;
                if !p.remaining.take(bytes) {
                    chunk.end = ChunkEnd::Carried;
                    let _ = out.send(chunk).await;
                    return Ok(());
                }
                // A key or record id seen earlier in this chunk must see that entry applied
                // first: close the chunk before it.
                let key = (prepared.kind.clone(), prepared.key_bidx.clone());
                if keys_in_chunk.contains(&key) || ids_in_chunk.contains(&entry.record_id) {
                    let next = Chunk::new(chunk.last_ordinal);
                    if out.send(std::mem::replace(&mut chunk, next)).await.is_err() {
                        return Ok(());
                    }
                    keys_in_chunk.clear();
                    ids_in_chunk.clear();
                }
                keys_in_chunk.insert(key);
                ids_in_chunk.insert(entry.record_id.clone());
                chunk.items.push(Item {
                    ordinal,
                    operation: entry.operation,
                    record_id: entry.record_id,
                    kind: prepared.kind,
                    key_bidx: prepared.key_bidx,
                    addressee_bidx: prepared.addressee_bidx,
                    public_start: entry.public_start,
                    public_end: entry.public_end,
                    sealed: prepared.sealed,
                    bytes,
                });
                chunk.last_ordinal = ordinal;
            }
        }
        if chunk.len() >= p.chunk_entries {
            let next = Chunk::new(chunk.last_ordinal);
            if out.send(std::mem::replace(&mut chunk, next)).await.is_err() {
                return Ok(());
            }
            keys_in_chunk.clear();
            ids_in_chunk.clear();
        }
    }
    chunk.end = ChunkEnd::Done;
    let _ = out.send(chunk).await;
    Ok(())
}

impl Producer {
    fn vault_keys(&self) -> Arc<TenantKeys> {
        self.keys.clone()
    }
}
