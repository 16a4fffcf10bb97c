//! The staging path of a chunk's registrations: binary COPY into a temporary table of the
//! session, then one INSERT … SELECT (and one UPDATE … FROM for overwrites) into
//! `provision.replicas`.
//!
//! The application role may not COPY into `provision.replicas` (COPY FROM refuses a table
//! whose row-level security applies to the caller), and COPY is the cheapest way to hand the
//! server thousands of rows. From the staging table the rows go in by ordinary statements, so
//! the `tenant_wall` policy checks every one of them (WITH CHECK) as it would any insert.
//!
//! A temporary table belongs to its session: chunks committing on two connections never see
//! each other's rows. `ON COMMIT DELETE ROWS` (and a rollback) leaves it empty for the next
//! transaction on the same pooled connection.

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use futures_util::SinkExt;
use tokio_postgres::Error;
use uuid::Uuid;

use chukan_layout::RecordKind;

/// One registration of a chunk, as it is staged (every column that varies by row).
#[derive(Debug, Clone, Copy)]
pub struct StagedReplica<'a> {
    pub key_bidx: &'a [u8],
    pub kind: &'a RecordKind,
    pub record_id: &'a str,
    pub addressee_bidx: &'a [u8],
    pub public_start: Option<NaiveDate>,
    pub public_end: Option<NaiveDate>,
    pub sealed: &'a [u8],
    pub bytes: i32,
    /// The key is registered already: the row is overwritten (上書き), not inserted.
    pub overwrite: bool,
}

const STAGE_TABLE: &str = "pg_temp.provision_replica_stage";

/// Collation "C" as in `provision.replicas`, so that comparisons are the ones its indexes
/// answer.
const CREATE_STAGE: &str = "CREATE TEMP TABLE provision_replica_stage (
        key_bidx       bytea            NOT NULL,
        info_code      text COLLATE \"C\" NOT NULL,
        major_version  text COLLATE \"C\" NOT NULL,
        dataset        text COLLATE \"C\" NOT NULL,
        record_id      text COLLATE \"C\" NOT NULL,
        addressee_bidx bytea            NOT NULL,
        public_start   date             NULL,
        public_end     date             NULL,
        sealed         bytea            NOT NULL,
        bytes          integer          NOT NULL,
        overwrite      boolean          NOT NULL
    ) ON COMMIT DELETE ROWS";

/// The staging table's columns, in the order [`CopyRows`] writes them.
const STAGE_COLUMNS: &str = "key_bidx, info_code, major_version, dataset, record_id, \
     addressee_bidx, public_start, public_end, sealed, bytes, overwrite";
const STAGE_FIELDS: i16 = 11;

/// Creates the session's staging table unless this connection made it before. Checked in the
/// caller's transaction rather than remembered: a table created in a transaction that then
/// rolled back is gone again.
async fn ensure_stage(tx: &impl GenericClient) -> Result<(), Error> {
    let stmt = tx
        .prepare_cached("SELECT to_regclass('pg_temp.provision_replica_stage') IS NOT NULL")
        .await?;
    if !tx.query_one(&stmt, &[]).await?.get::<_, bool>(0) {
        // MAIN keeps a large blob inside its row (out of line only when the row would not
        // fit a page): moved to the staging table's TOAST table, it would be read back out of
        // it only to be written into the replicas' own.
        tx.batch_execute(&format!(
            "{CREATE_STAGE};
             ALTER TABLE {STAGE_TABLE} ALTER COLUMN sealed SET STORAGE MAIN"
        ))
        .await?;
    }
    Ok(())
}

/// Stages a chunk's registrations (binary COPY into the session's staging table, which the
/// caller's transaction starts empty); returns the rows staged.
pub async fn stage_replicas(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &[StagedReplica<'_>],
) -> anyhow::Result<u64> {
    ensure_stage(tx).await?;
    let stmt = tx
        .prepare_cached(&format!(
            "COPY {STAGE_TABLE} ({STAGE_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let sink = tx.copy_in::<_, Bytes>(&stmt).await?;
    let mut sink = std::pin::pin!(sink);
    let mut out = CopyRows::new();
    for row in rows {
        out.row(row)?;
        if let Some(piece) = out.full_piece() {
            sink.send(piece).await?;
        }
    }
    sink.send(out.finish()).await?;
    Ok(sink.as_mut().finish().await?)
}

/// Rows in PostgreSQL's binary COPY format, handed over in pieces of about [`PIECE_BYTES`].
/// Each piece is a message to the connection's task: in the 4 KiB pieces tokio-postgres's
/// `BinaryCopyInWriter` sends, a chunk would wake that task hundreds of times.
struct CopyRows {
    buf: BytesMut,
}

const PIECE_BYTES: usize = 512 * 1024;

/// Day 0 of PostgreSQL's `date`.
const PG_EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

impl CopyRows {
    fn new() -> Self {
        let mut buf = BytesMut::with_capacity(PIECE_BYTES + 64 * 1024);
        // Signature, flags, length of the header extension.
        buf.put_slice(b"PGCOPY\n\xff\r\n\0");
        buf.put_i32(0);
        buf.put_i32(0);
        CopyRows { buf }
    }

    fn row(&mut self, r: &StagedReplica<'_>) -> anyhow::Result<()> {
        self.buf.put_i16(STAGE_FIELDS);
        self.bytes(r.key_bidx)?;
        self.bytes(r.kind.info_code.as_bytes())?;
        self.bytes(r.kind.major_version.as_bytes())?;
        self.bytes(r.kind.dataset.as_bytes())?;
        self.bytes(r.record_id.as_bytes())?;
        self.bytes(r.addressee_bidx)?;
        self.date(r.public_start)?;
        self.date(r.public_end)?;
        self.bytes(r.sealed)?;
        self.buf.put_i32(4);
        self.buf.put_i32(r.bytes);
        self.buf.put_i32(1);
        self.buf.put_u8(u8::from(r.overwrite));
        Ok(())
    }

    /// A value of `bytea` or `text` (whose binary form is its UTF-8 bytes).
    fn bytes(&mut self, value: &[u8]) -> anyhow::Result<()> {
        self.buf.put_i32(i32::try_from(value.len())?);
        self.buf.put_slice(value);
        Ok(())
    }

    fn date(&mut self, value: Option<NaiveDate>) -> anyhow::Result<()> {
        match value {
            None => self.buf.put_i32(-1),
            Some(d) => {
                self.buf.put_i32(4);
                self.buf
                    .put_i32(i32::try_from(d.signed_duration_since(PG_EPOCH).num_days())?);
            }
        }
        Ok(())
    }

    fn full_piece(&mut self) -> Option<Bytes> {
        (self.buf.len() >= PIECE_BYTES).then(|| self.buf.split().freeze())
    }

    /// The rest, with the trailer.
    fn finish(mut self) -> Bytes {
        self.buf.put_i16(-1);
        self.buf.freeze()
    }
}

/// Registers the staged rows that are new (keys known not to exist: the caller holds the
/// tenant's apply lock). The policy's WITH CHECK sees the transaction's tenant.
pub async fn insert_staged(
    tx: &impl GenericClient,
    tenant: &str,
    upload: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, Error> {
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO provision.replicas (tenant_id, key_bidx, info_code, major_version, dataset,
                 record_id, addressee_bidx, public_start, public_end, sealed, bytes, upload_id,
                 registered_at)
             SELECT $1, key_bidx, info_code, major_version, dataset, record_id, addressee_bidx,
                    public_start, public_end, sealed, bytes, $2, $3
             FROM {STAGE_TABLE} WHERE NOT overwrite"
        ))
        .await?;
    tx.execute(&stmt, &[&tenant, &upload, &now]).await
}

/// Overwrites (上書き) existing rows by key with the staged rows marked so; `keys` are their
/// keys. The replicas are reached through the keys' index whatever the planner thinks of the
/// staging table, which has no statistics.
pub async fn update_staged(
    tx: &impl GenericClient,
    tenant: &str,
    upload: Uuid,
    now: DateTime<Utc>,
    keys: &[&[u8]],
) -> Result<u64, Error> {
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE provision.replicas r SET record_id = s.record_id,
                 addressee_bidx = s.addressee_bidx, public_start = s.public_start,
                 public_end = s.public_end, sealed = s.sealed, bytes = s.bytes,
                 upload_id = $2, registered_at = $3
             FROM {STAGE_TABLE} s
             WHERE r.tenant_id = $1 AND r.key_bidx = ANY($4) AND s.overwrite
               AND r.key_bidx = s.key_bidx"
        ))
        .await?;
    tx.execute(&stmt, &[&tenant, &upload, &now, &keys]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_written_in_the_binary_copy_format() {
        let kind = RecordKind {
            info_code: "TM1".into(),
            major_version: "02".into(),
            dataset: "D".into(),
        };
        let mut out = CopyRows::new();
        out.row(&StagedReplica {
            key_bidx: b"k",
            kind: &kind,
            record_id: "R",
            addressee_bidx: b"a",
            public_start: NaiveDate::from_ymd_opt(2000, 1, 2),
            public_end: None,
            sealed: b"s",
            bytes: 7,
            overwrite: true,
        })
        .unwrap();
        assert!(
            out.full_piece().is_none(),
            "a small chunk goes in one piece"
        );
        let mut expected: Vec<u8> = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 11]);
        for field in [&b"k"[..], b"TM1", b"02", b"D", b"R", b"a"] {
            expected.extend((field.len() as i32).to_be_bytes());
            expected.extend(field);
        }
        expected.extend([0, 0, 0, 4, 0, 0, 0, 1]); // 2000-01-02: day 1
        expected.extend((-1i32).to_be_bytes()); // NULL
        expected.extend([0, 0, 0, 1, b's']);
        expected.extend([0, 0, 0, 4, 0, 0, 0, 7]);
        expected.extend([0, 0, 0, 1, 1]);
        expected.extend((-1i16).to_be_bytes()); // trailer
        assert_eq!(out.finish().as_ref(), expected.as_slice());
    }
}
