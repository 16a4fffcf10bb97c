//! Disclosure (開示・不開示) of provision records. A record's non-disclosure setting is never
//! updated in place (enhancement #9): a change is a new leaf, event `disclosure.changed`, that
//! names the record it changes (`target_record_id`) and carries the new setting and the
//! reason 「不開示設定変更」. The latest change wins. What the resident may see (self-information,
//! the portal) is computed from that.

use chrono::TimeZone as _;
use chukan_crypto::Vault;
use chukan_proto::AuditRecord;
use uuid::Uuid;

use crate::append::{self, Incoming, Outcome};
use crate::{AuditState, leaf, store};

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
        let mut client = state.db.get().await?;
        let keys = state.vault.keys(&**client, tenant).await?;
        let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
        let found = store::target(&tx, target).await?;
        tx.commit().await?;
        let found = found.ok_or(ChangeError::NotFound)?;
        if found.event == CHANGED {
            return Err(ChangeError::NotAnExchange);
        }
        if found.non_disclosure_now == non_disclosure {
            return Err(ChangeError::Unchanged);
        }
        let bytes = keys.decrypt(&found.leaf_enc, &leaf::leaf_aad(tenant, &target))?;
        leaf::decode_leaf(&bytes).ok_or_else(|| anyhow::anyhow!("stored leaf undecodable"))?
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

/// A resident's records that may be shown to them (self-information, the portal): their
/// exchanges whose current setting is "disclosed", oldest first, without the addressee.
pub async fn disclosable_records(
    tx: &deadpool_postgres::Transaction<'_>,
    vault: &Vault,
    tenant: &str,
    addressee: &str,
) -> anyhow::Result<Vec<AuditRecord>> {
    let keys = vault.keys(&**tx, tenant).await?;
    let found = store::disclosable(tx, &keys.blind_index(addressee)).await?;
    Ok(found
        .into_iter()
        .map(|f| AuditRecord {
            record_id: f.record_id.to_string(),
            tenant: tenant.to_owned(),
            event: f.event,
            inquirer_org: f.inquirer_org,
            provider_org: f.provider_org,
            affair_code: f.affair_code,
            procedure_code: f.procedure_code,
            info_code: f.info_code,
            serial_no: f.serial_no,
            branch_no: f.branch_no,
            permit_id: f.permit_id,
            addressee: String::new(),
            requested_at_ms: f.requested_at.map_or(0, |t| t.timestamp_millis()),
            provided_at_ms: f.provided_at.map_or(0, |t| t.timestamp_millis()),
            non_disclosure: false,
            outcome: f.outcome,
            at_ms: f.at.timestamp_millis(),
            ..Default::default()
        })
        .collect())
}
