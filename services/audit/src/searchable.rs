//! The searchable copy (検索用の写し) of a record: the columns of `audit.records` beside the
//! sealed leaf that staff search, the resident's disclosable view and self-information read.
//! Every one of them is also inside the leaf, and only the leaf is covered by the Merkle tree,
//! so an edit of a column behind the service is invisible to the tree. Hence: append writes the
//! copy from the leaf with [`SearchableCopy::of`], and every reader (verify, search, the
//! disclosable view) opens the leaf and compares with [`SearchableCopy::first_difference`].

use chrono::{DateTime, Utc};
use chukan_crypto::TenantKeys;
use chukan_proto::AuditRecord;
use uuid::Uuid;

use crate::{append::time, leaf};

/// The searchable columns of one record (the addressee only as its blind index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchableCopy {
    pub event: String,
    pub inquirer_org: String,
    pub provider_org: String,
    pub affair_code: String,
    pub procedure_code: String,
    pub info_code: String,
    pub serial_no: String,
    pub branch_no: i32,
    pub permit_id: String,
    pub addressee_bidx: Option<Vec<u8>>,
    pub requested_at: Option<DateTime<Utc>>,
    pub provided_at: Option<DateTime<Utc>>,
    pub non_disclosure: bool,
    pub outcome: String,
    pub at: DateTime<Utc>,
    pub target_record_id: Option<Uuid>,
    pub reason: String,
    pub actor: String,
}

/// Column names in table order; what [`SearchableCopy::first_difference`] can name.
pub const COLUMNS: [&str; 18] = [
    "event",
    "inquirer_org",
    "provider_org",
    "affair_code",
    "procedure_code",
    "info_code",
    "serial_no",
    "branch_no",
    "permit_id",
    "addressee_bidx",
    "requested_at",
    "provided_at",
    "non_disclosure",
    "outcome",
    "at",
    "target_record_id",
    "reason",
    "actor",
];

/// The columns of [`COLUMNS`] as a SELECT list, of the table aliased `alias`.
pub fn select_list(alias: &str) -> String {
    COLUMNS
        .iter()
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A whole stored row as [`StoredRecord::from_row`] reads it, of the table aliased `alias`.
pub fn stored_list(alias: &str) -> String {
    format!(
        "{alias}.seq, {alias}.record_id, {alias}.leaf_enc, {alias}.leaf_hash, {}",
        select_list(alias)
    )
}

impl SearchableCopy {
    /// What the columns must hold for `record` (None when its `at_ms` is not a time, which
    /// append refuses before it gets here).
    pub fn of(keys: &TenantKeys, record: &AuditRecord) -> Option<SearchableCopy> {
        Some(SearchableCopy {
            event: record.event.clone(),
            inquirer_org: record.inquirer_org.clone(),
            provider_org: record.provider_org.clone(),
            affair_code: record.affair_code.clone(),
            procedure_code: record.procedure_code.clone(),
            info_code: record.info_code.clone(),
            serial_no: record.serial_no.clone(),
            branch_no: record.branch_no,
            permit_id: record.permit_id.clone(),
            addressee_bidx: (!record.addressee.is_empty())
                .then(|| keys.blind_index(&record.addressee)),
            requested_at: time(record.requested_at_ms),
            provided_at: time(record.provided_at_ms),
            non_disclosure: record.non_disclosure,
            outcome: record.outcome.clone(),
            at: time(record.at_ms)?,
            target_record_id: Uuid::parse_str(&record.target_record_id).ok(),
            reason: record.reason.clone(),
            actor: record.actor.clone(),
        })
    }

    /// The first column (table order) whose stored value is not what the leaf says.
    pub fn first_difference(&self, keys: &TenantKeys, leaf: &AuditRecord) -> Option<&'static str> {
        let Some(want) = SearchableCopy::of(keys, leaf) else {
            return Some("at");
        };
        let same = [
            self.event == want.event,
            self.inquirer_org == want.inquirer_org,
            self.provider_org == want.provider_org,
            self.affair_code == want.affair_code,
            self.procedure_code == want.procedure_code,
            self.info_code == want.info_code,
            self.serial_no == want.serial_no,
            self.branch_no == want.branch_no,
            self.permit_id == want.permit_id,
            self.addressee_bidx == want.addressee_bidx,
            self.requested_at == want.requested_at,
            self.provided_at == want.provided_at,
            self.non_disclosure == want.non_disclosure,
            self.outcome == want.outcome,
            self.at == want.at,
            self.target_record_id == want.target_record_id,
            self.reason == want.reason,
            self.actor == want.actor,
        ];
        same.iter().position(|same| !same).map(|i| COLUMNS[i])
    }

    /// Reads the columns of [`select_list`] starting at column `from` of `row`.
    pub fn from_row(row: &tokio_postgres::Row, from: usize) -> Result<Self, tokio_postgres::Error> {
        Ok(SearchableCopy {
            event: row.try_get(from)?,
            inquirer_org: row.try_get(from + 1)?,
            provider_org: row.try_get(from + 2)?,
            affair_code: row.try_get(from + 3)?,
            procedure_code: row.try_get(from + 4)?,
            info_code: row.try_get(from + 5)?,
            serial_no: row.try_get(from + 6)?,
            branch_no: row.try_get(from + 7)?,
            permit_id: row.try_get(from + 8)?,
            addressee_bidx: row.try_get(from + 9)?,
            requested_at: row.try_get(from + 10)?,
            provided_at: row.try_get(from + 11)?,
            non_disclosure: row.try_get(from + 12)?,
            outcome: row.try_get(from + 13)?,
            at: row.try_get(from + 14)?,
            target_record_id: row.try_get(from + 15)?,
            reason: row.try_get(from + 16)?,
            actor: row.try_get(from + 17)?,
        })
    }
}

/// A stored row as readers get it: the sealed leaf, its stored hash and the searchable copy.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub seq: i64,
    pub record_id: Uuid,
    pub leaf_enc: Vec<u8>,
    pub leaf_hash: Vec<u8>,
    pub copy: SearchableCopy,
}

/// Why a stored row cannot be trusted as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrusted {
    /// The sealed leaf does not open with the tenant's key for this row's record id.
    LeafDoesNotOpen,
    /// It opens, but is not a leaf of a known version.
    LeafUndecodable,
    /// The leaf names another record or tenant.
    RecordIdDiffers,
    /// The stored leaf hash is not the hash of the leaf.
    LeafHashDiffers,
    /// A searchable column differs from the leaf (named).
    ColumnDiffers(&'static str),
}

impl Untrusted {
    /// The stable reason code verify reports.
    pub fn reason(self) -> &'static str {
        match self {
            Untrusted::LeafDoesNotOpen => "leaf-does-not-open",
            Untrusted::LeafUndecodable => "leaf-undecodable",
            Untrusted::RecordIdDiffers => "record-id-differs",
            Untrusted::LeafHashDiffers => "leaf-hash-differs",
            Untrusted::ColumnDiffers(_) => "column-differs",
        }
    }

    /// The column named, for [`Untrusted::ColumnDiffers`].
    pub fn column(self) -> Option<&'static str> {
        match self {
            Untrusted::ColumnDiffers(c) => Some(c),
            _ => None,
        }
    }
}

/// A row's leaf, opened and checked: the record, its hash, and the first searchable column
/// that does not say what the leaf says (if any).
#[derive(Debug, Clone)]
pub struct Opened {
    pub record: AuditRecord,
    pub hash: chukan_merkle::Hash,
    pub column_differs: Option<&'static str>,
}

impl Opened {
    /// The row is trustworthy as stored only when no column differs.
    pub fn trusted(&self) -> Result<(), Untrusted> {
        match self.column_differs {
            Some(column) => Err(Untrusted::ColumnDiffers(column)),
            None => Ok(()),
        }
    }
}

/// Opens a row's leaf and checks it the way verify does, short of the tree: the leaf opens,
/// names this record and tenant, and hashes to the stored hash (else the leaf itself cannot
/// be used); then compares every searchable column with it.
pub fn open(
    keys: &TenantKeys,
    tenant: &str,
    record_id: &Uuid,
    leaf_enc: &[u8],
    leaf_hash: &[u8],
    copy: &SearchableCopy,
) -> Result<Opened, Untrusted> {
    let bytes = keys
        .decrypt(leaf_enc, &leaf::leaf_aad(tenant, record_id))
        .map_err(|_| Untrusted::LeafDoesNotOpen)?;
    let record = leaf::decode_leaf(&bytes).ok_or(Untrusted::LeafUndecodable)?;
    if Uuid::parse_str(&record.record_id).ok().as_ref() != Some(record_id)
        || record.tenant != tenant
    {
        return Err(Untrusted::RecordIdDiffers);
    }
    let hash = chukan_merkle::leaf_hash(&bytes);
    if leaf_hash != hash.as_slice() {
        return Err(Untrusted::LeafHashDiffers);
    }
    let column_differs = copy.first_difference(keys, &record);
    Ok(Opened {
        record,
        hash,
        column_differs,
    })
}

impl StoredRecord {
    /// Reads `seq, record_id, leaf_enc, leaf_hash` and then [`select_list`] from column
    /// `from` of `row`.
    pub fn from_row(row: &tokio_postgres::Row, from: usize) -> Result<Self, tokio_postgres::Error> {
        Ok(StoredRecord {
            seq: row.try_get(from)?,
            record_id: row.try_get(from + 1)?,
            leaf_enc: row.try_get(from + 2)?,
            leaf_hash: row.try_get(from + 3)?,
            copy: SearchableCopy::from_row(row, from + 4)?,
        })
    }

    /// [`open`] for this row.
    pub fn open(&self, keys: &TenantKeys, tenant: &str) -> Result<Opened, Untrusted> {
        open(
            keys,
            tenant,
            &self.record_id,
            &self.leaf_enc,
            &self.leaf_hash,
            &self.copy,
        )
    }
}

/// Reports a row that failed its check outside verify (search, the disclosable view): an
/// error in the log naming the row and the column, never a value, and the tamper metric.
pub fn report_untrusted(tenant: &str, seq: i64, record_id: &Uuid, why: Untrusted, reader: &str) {
    tracing::error!(
        tenant = %tenant,
        seq,
        record_id = %record_id,
        reason = why.reason(),
        column = why.column().unwrap_or(""),
        reader,
        "audit record does not match its sealed leaf: run `chukan audit verify`"
    );
    crate::metrics::untrusted_row(reader);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keys() -> TenantKeys {
        TenantKeys::generate()
    }

    fn record() -> AuditRecord {
        AuditRecord {
            record_id: Uuid::now_v7().to_string(),
            tenant: "1310010000000001".into(),
            event: "provision.made".into(),
            inquirer_org: "2710000000000002".into(),
            provider_org: "1310010000000001".into(),
            affair_code: "JM00000000000002".into(),
            procedure_code: "JT00000000000201".into(),
            info_code: "TM00000000000031".into(),
            serial_no: "00000000000000000001".into(),
            branch_no: 1,
            permit_id: "p-1".into(),
            addressee: "000000000012345".into(),
            requested_at_ms: 1_700_000_000_000,
            provided_at_ms: 1_700_000_000_500,
            non_disclosure: false,
            outcome: "provided".into(),
            at_ms: 1_700_000_000_600,
            ..Default::default()
        }
    }

    #[test]
    fn every_column_that_differs_from_the_leaf_is_named() {
        let keys = keys();
        let r = record();
        let good = SearchableCopy::of(&keys, &r).unwrap();
        assert_eq!(good.first_difference(&keys, &r), None);
        let t = |s: i64| time(s);
        type Edit = Box<dyn Fn(&mut SearchableCopy)>;
        let edits: Vec<(&str, Edit)> = vec![
            ("event", Box::new(|c| c.event = "notice.sent".into())),
            ("inquirer_org", Box::new(|c| c.inquirer_org.push('9'))),
            ("provider_org", Box::new(|c| c.provider_org.clear())),
            ("affair_code", Box::new(|c| c.affair_code.push('x'))),
            (
                "procedure_code",
                Box::new(|c| c.procedure_code.pop().map(drop).unwrap_or(())),
            ),
            (
                "info_code",
                Box::new(|c| c.info_code = "TM00000000000002".into()),
            ),
            ("serial_no", Box::new(|c| c.serial_no.push('1'))),
            ("branch_no", Box::new(|c| c.branch_no += 1)),
            ("permit_id", Box::new(|c| c.permit_id.push('x'))),
            ("addressee_bidx", Box::new(|c| c.addressee_bidx = None)),
            ("requested_at", Box::new(move |c| c.requested_at = t(1))),
            ("provided_at", Box::new(|c| c.provided_at = None)),
            ("non_disclosure", Box::new(|c| c.non_disclosure = true)),
            ("outcome", Box::new(|c| c.outcome = "refused".into())),
            ("at", Box::new(move |c| c.at = t(2).unwrap())),
            (
                "target_record_id",
                Box::new(|c| c.target_record_id = Some(Uuid::nil())),
            ),
            ("reason", Box::new(|c| c.reason = "x".into())),
            ("actor", Box::new(|c| c.actor = "someone".into())),
        ];
        assert_eq!(edits.len(), COLUMNS.len(), "every column is tried");
        for (column, edit) in edits {
            let mut c = good.clone();
            edit(&mut c);
            assert_eq!(c.first_difference(&keys, &r), Some(column));
        }
    }

    #[test]
    fn a_row_opens_only_with_its_own_leaf_hash_and_columns() {
        let keys = keys();
        let r = record();
        let id = Uuid::parse_str(&r.record_id).unwrap();
        let bytes = leaf::leaf_bytes(&r);
        let sealed = keys.encrypt(&bytes, &leaf::leaf_aad(&r.tenant, &id));
        let hash = chukan_merkle::leaf_hash(&bytes);
        let copy = SearchableCopy::of(&keys, &r).unwrap();
        let opened = open(&keys, &r.tenant, &id, &sealed, &hash, &copy).unwrap();
        assert_eq!((&opened.record, opened.hash), (&r, hash));
        assert_eq!(opened.trusted(), Ok(()));
        let other = Uuid::now_v7();
        assert_eq!(
            open(&keys, &r.tenant, &other, &sealed, &hash, &copy).unwrap_err(),
            Untrusted::LeafDoesNotOpen
        );
        assert_eq!(
            open(&keys, &r.tenant, &id, &sealed, &[0u8; 32], &copy).unwrap_err(),
            Untrusted::LeafHashDiffers
        );
        let mut hidden = copy.clone();
        hidden.non_disclosure = true;
        let opened = open(&keys, &r.tenant, &id, &sealed, &hash, &hidden).unwrap();
        assert_eq!(opened.record, r, "the leaf still says what was recorded");
        assert_eq!(
            opened.trusted(),
            Err(Untrusted::ColumnDiffers("non_disclosure"))
        );
    }
}
