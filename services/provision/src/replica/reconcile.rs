//! 突合用ファイル (reconciliation files, enhancement #13): what is registered for an item /
//! version / dataset, so a business system can check its counts and contents against ours.
//! Up to `provision.reconciliation_immediate_max` records the file is made at once; larger
//! ones by the nightly batch. Files are CSV (UTF-8), kept sealed in 1 MiB chunks.

use chukan_layout::RecordKind;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    ProvisionState,
    replica::intake::CHUNK_BYTES,
    seal,
    store::{self, Reconciliation},
};

/// Column headings of the file (Japanese, as business systems label them).
pub const HEADER: &str = "レコード識別番号,団体内統合宛名番号,特定個人情報名コード,データセット識別項目コード,\
メジャーバージョン,データセットレコードキー,親データセットレコードキー,公開開始日,公開終了日,登録日時,副本ハッシュ\n";

/// Requests a file; makes it now when it is small enough.
pub async fn request(
    state: &ProvisionState,
    tenant: &str,
    info_code: &str,
    major_version: Option<&str>,
    dataset: Option<&str>,
) -> anyhow::Result<Reconciliation> {
    let now = state.clock.now();
    let mut r = Reconciliation {
        id: Uuid::now_v7(),
        info_code: info_code.to_string(),
        major_version: major_version.map(str::to_string),
        dataset: dataset.map(str::to_string),
        state: store::ReconciliationState::Queued,
        records: 0,
        created_at: now,
        ready_at: None,
    };
    let count = {
        let mut client = state.db.get().await?;
        let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
        store::insert_reconciliation(&tx, tenant, &r).await?;
        let count = store::count_replicas(&tx, tenant, info_code, major_version, dataset).await?;
        tx.commit().await?;
        count
    };
    if count <= state.settings.provision.reconciliation_immediate_max as i64 {
        r.records = make(state, tenant, &r).await?;
        r.state = store::ReconciliationState::Ready;
        r.ready_at = Some(state.clock.now());
    }
    Ok(r)
}

/// Makes every queued file of the tenant (nightly batch); returns how many.
pub async fn make_queued(state: &ProvisionState, tenant: &str) -> anyhow::Result<i64> {
    let queued = {
        let mut client = state.db.get().await?;
        let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
        let q = store::queued_reconciliations(&tx, tenant).await?;
        tx.commit().await?;
        q
    };
    for r in &queued {
        make(state, tenant, r).await?;
    }
    Ok(queued.len() as i64)
}

fn csv_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// Writes the file from one consistent snapshot and marks it ready; returns its records.
async fn make(state: &ProvisionState, tenant: &str, r: &Reconciliation) -> anyhow::Result<i64> {
    let (mut client, keys) =
        chukan_runtime::client_with_keys(&state.db, &state.vault, tenant).await?;
    // One snapshot for every page, so the file is what was registered at one instant.
    let tx = chukan_db::tenant_snapshot_tx(&mut client, tenant, chukan_db::Snapshot::ReadThenWrite)
        .await?;
    let mut buf = String::from(HEADER);
    let mut seq = 0i32;
    let mut records = 0i64;
    let mut bytes = 0i64;
    let mut after = String::new();
    loop {
        let page = store::replicas_page(
            &tx,
            tenant,
            &r.info_code,
            r.major_version.as_deref(),
            r.dataset.as_deref(),
            &after,
            1000,
        )
        .await?;
        let Some(last) = page.last() else { break };
        after = last.record_id.clone();
        for row in &page {
            let kind: &RecordKind = &row.kind;
            let sealed = seal::open_replica(&keys, tenant, kind, &row.key_bidx, &row.sealed)?;
            let digest = hex::encode(Sha256::digest(serde_json::to_vec(&sealed.payload)?));
            let fields = [
                row.record_id.as_str(),
                sealed.addressee.as_str(),
                kind.info_code.as_str(),
                kind.dataset.as_str(),
                kind.major_version.as_str(),
                sealed.record_key.as_str(),
                sealed.parent_record_key.as_deref().unwrap_or(""),
            ];
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    buf.push(',');
                }
                csv_field(&mut buf, f);
            }
            let date = |d: Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
            buf.push_str(&format!(
                ",{},{},{},{}\n",
                date(row.public_start),
                date(row.public_end),
                row.registered_at.to_rfc3339(),
                digest
            ));
            records += 1;
        }
        while buf.len() >= CHUNK_BYTES {
            // Cut at a character boundary at or below the chunk size.
            let mut at = CHUNK_BYTES;
            while !buf.is_char_boundary(at) {
                at -= 1;
            }
            let rest = buf.split_off(at);
            bytes += buf.len() as i64;
            let sealed = keys.encrypt(
                buf.as_bytes(),
                &seal::chunk_aad("reconciliation", &r.id, seq),
            );
            store::insert_reconciliation_chunk(&tx, tenant, r.id, seq, &sealed).await?;
            seq += 1;
            buf = rest;
        }
    }
    if !buf.is_empty() {
        bytes += buf.len() as i64;
        let sealed = keys.encrypt(
            buf.as_bytes(),
            &seal::chunk_aad("reconciliation", &r.id, seq),
        );
        store::insert_reconciliation_chunk(&tx, tenant, r.id, seq, &sealed).await?;
    }
    store::reconciliation_ready(&tx, r.id, records, bytes, state.clock.now()).await?;
    tx.commit().await?;
    Ok(records)
}
