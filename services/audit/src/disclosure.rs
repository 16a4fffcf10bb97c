//! Disclosure (開示・不開示) of provision records. A record's non-disclosure setting is never
//! updated in place (enhancement #9): a change is a new leaf, event `disclosure.changed`, that
//! names the record it changes (`target_record_id`) and carries the new setting and the
//! reason 「不開示設定変更」. The latest change wins. What the resident may see (self-information,
//! the portal) is computed from that.

use std::collections::HashMap;

use chrono::TimeZone as _;
use chukan_crypto::{TenantKeys, Vault};
use chukan_proto::AuditRecord;
use uuid::Uuid;

use crate::append::{self, Incoming, Outcome};
use crate::{AuditState, searchable, store};

/// The event of a change record.
pub const CHANGED: &str = "disclosure.changed";
/// The change reason the law's guidance prescribes (enhancement #9).
pub const REASON: &str = "不開示設定変更";

/// Why a change was not made.
#[derive(Debug)]
pub enum ChangeError {
    NotFound,
    /// The target is itself a change record.
    NotAnExchange,
    /// The record already has that setting.
    Unchanged,
    /// The stored record (or its latest change) does not match its sealed leaf: tampered
    /// behind the service. Nothing is appended on top of it.
    Untrusted,
    Internal(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for ChangeError {
    fn from(e: E) -> Self {
        ChangeError::Internal(e.into())
    }
}

/// A change that was appended.
#[derive(Debug, Clone)]
pub struct Changed {
    pub change_record_id: Uuid,
    pub seq: i64,
    pub non_disclosure: bool,
}

/// Appends a change of `target`'s non-disclosure setting to `tenant`'s log.
pub async fn change(
    state: &AuditState,
    tenant: &str,
    target: Uuid,
    non_disclosure: bool,
    actor: &str,
) -> Result<Changed, ChangeError> {
    let original = {
        let (mut client, keys) =
            chukan_runtime::client_with_keys(&state.db, &state.vault, tenant).await?;
        let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
        let found = store::record(&tx, target).await?;
        tx.commit().await?;
        let found = found.ok_or(ChangeError::NotFound)?;
        let (record, now_hidden) = setting_now(&keys, tenant, &found, "disclosure-change")?;
        if record.event == CHANGED {
            return Err(ChangeError::NotAnExchange);
        }
        if now_hidden == non_disclosure {
            return Err(ChangeError::Unchanged);
        }
        record
    };
    let now = state.clock.now();
    let record_id = Uuid::now_v7();
    // The change carries the exchange's own fields (who, what, when), so a search by
    // resident, counterpart or procedure finds the change beside the record it changes.
    let record = AuditRecord {
        record_id: record_id.to_string(),
        event: CHANGED.into(),
        non_disclosure,
        outcome: if non_disclosure {
            "non-disclosed"
        } else {
            "disclosed"
        }
        .into(),
        at_ms: now.timestamp_millis(),
        target_record_id: target.to_string(),
        reason: REASON.into(),
        actor: actor.to_owned(),
        ..original
    };
    let item = Incoming {
        message_id: None,
        record_id,
        at: chrono::Utc
            .timestamp_millis_opt(record.at_ms)
            .single()
            .ok_or_else(|| anyhow::anyhow!("clock out of range"))?,
        record,
    };
    // Two staff changing the same record at once: the second change is still appended (and
    // wins); each is recorded, which is what the log is for.
    match append::append(state, tenant, std::slice::from_ref(&item)).await?[..] {
        [Outcome::Appended { seq }] => Ok(Changed {
            change_record_id: record_id,
            seq,
            non_disclosure,
        }),
        _ => Err(anyhow::anyhow!("change record not appended").into()),
    }
}

/// A record's leaf and its non-disclosure setting now (its latest change wins), both read
/// from opened leaves: a row that does not open, or whose columns differ from its leaf, is
/// reported and refused rather than trusted.
fn setting_now(
    keys: &TenantKeys,
    tenant: &str,
    found: &store::Found,
    reader: &str,
) -> Result<(AuditRecord, bool), ChangeError> {
    let open = |row: &store::RecordRow| {
        row.open(keys, tenant)
            .and_then(|o| o.trusted().map(|()| o.record))
            .map_err(|why| {
                searchable::report_untrusted(tenant, row.seq, &row.record_id, why, reader);
                ChangeError::Untrusted
            })
    };
    let record = open(&found.row)?;
    let now = match &found.latest_change {
        Some(change) => open(change)?.non_disclosure,
        None => record.non_disclosure,
    };
    Ok((record, now))
}

/// Events that are not exchanges: the portal shows neither them nor change records.
fn is_exchange(record: &AuditRecord) -> bool {
    record.target_record_id.is_empty()
        && !record.event.starts_with("selfinfo.")
        && !record.event.starts_with("notice.")
}

/// A resident's records that may be shown to them (self-information, the portal): their
/// exchanges whose current setting is "disclosed", oldest first, without the addressee.
///
/// Decided from the sealed leaves alone (情報提供等記録 as recorded), never from the searchable
/// columns: each row is opened and checked as verify checks it. A row whose leaf does not
/// open is left out; a row whose columns were edited behind the service is shown as its leaf
/// says. Both are reported (log and `chukan_audit_untrusted_rows_total`).
pub async fn disclosable_records(
    tx: &deadpool_postgres::Transaction<'_>,
    vault: &Vault,
    tenant: &str,
    addressee: &str,
) -> anyhow::Result<Vec<AuditRecord>> {
    let keys = vault.keys(&**tx, tenant).await?;
    let rows = store::rows_of_resident(tx, &keys.blind_index(addressee)).await?;
    let mut exchanges = Vec::new();
    // Latest change per record id (rows come oldest first, so later ones overwrite).
    let mut changed: HashMap<String, bool> = HashMap::new();
    for row in rows {
        let report =
            |why| searchable::report_untrusted(tenant, row.seq, &row.record_id, why, "disclosable");
        let opened = match row.open(&keys, tenant) {
            Ok(opened) => opened,
            Err(why) => {
                report(why);
                continue;
            }
        };
        if let Err(why) = opened.trusted() {
            report(why);
        }
        let record = opened.record;
        // Filed under this resident's index, but the leaf names someone else: not theirs.
        if record.addressee != addressee {
            continue;
        }
        if record.event == CHANGED {
            changed.insert(record.target_record_id.clone(), record.non_disclosure);
        } else if is_exchange(&record) {
            exchanges.push(record);
        }
    }
    Ok(exchanges
        .into_iter()
        .filter(|r| {
            !changed
                .get(&r.record_id)
                .copied()
                .unwrap_or(r.non_disclosure)
        })
        .map(|r| AuditRecord {
            addressee: String::new(),
            non_disclosure: false,
            target_record_id: String::new(),
            reason: String::new(),
            actor: String::new(),
            ..r
        })
        .collect())
}
