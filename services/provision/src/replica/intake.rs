//! Receiving a registration list (副本登録リスト): the file is streamed, sealed in 1 MiB chunks
//! into the upload's rows and checked (事前確認) by a parser running alongside, all in one
//! transaction. A file that is not a well-formed registration list, or that carries a heavy item
//! outside the organisation's slot, is refused whole and leaves nothing behind; a file whose
//! entries are merely invalid is accepted and those entries are reported by the batch.

use std::{pin::Pin, sync::Arc};

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, NaiveDate, Utc};
use chukan_crypto::TenantKeys;
use chukan_layout::Catalogue;
use chukan_replica_list::{Limits, ListError, ListReader};
use futures_util::{Stream, StreamExt};
use tokio::{io::AsyncBufRead, sync::mpsc};
use tokio_util::io::StreamReader;
use uuid::Uuid;

use crate::{
    replica::apply,
    replica::slots::{UploadRefusal, UploadSchedule},
    seal, store,
};

/// Size of one sealed chunk of a stored file.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Why a file was refused whole.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("registration list: {0}")]
    List(#[from] ListError),
    #[error("upload refused by the slot schedule")]
    Refused(UploadRefusal),
    #[error("empty registration list")]
    Empty,
    #[error("the request body could not be read: {0}")]
    Body(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What the upload-time check learned.
#[derive(Debug, Clone, Default)]
pub struct Precheck {
    pub entries: i64,
    pub rejected: i64,
    pub bytes: i64,
}

/// Everything a check needs about who uploads and when.
#[derive(Clone)]
pub struct CheckContext {
    pub catalogue: Arc<Catalogue>,
    pub keys: Arc<TenantKeys>,
    pub tenant: String,
    pub schedule: Arc<UploadSchedule>,
    pub group: Option<char>,
    pub now: DateTime<Utc>,
    pub day: NaiveDate,
    pub limits: Limits,
}

/// Parses the whole list, counting entries and the ones that would be refused; stops at the
/// first heavy item outside the slot.
async fn precheck(
    ctx: CheckContext,
    reader: impl AsyncBufRead + Unpin,
) -> Result<Precheck, IntakeError> {
    let mut list = ListReader::new(reader, ctx.limits);
    let mut pre = Precheck::default();
    while let Some(entry) = list.next_entry().await? {
        pre.entries += 1;
        ctx.schedule
            .check_item(&entry.info_code, ctx.group, ctx.now)
            .map_err(IntakeError::Refused)?;
        if apply::check(&ctx.catalogue, ctx.day, &entry).is_err() {
            pre.rejected += 1;
        }
    }
    pre.bytes = list.position() as i64;
    Ok(pre)
}

/// Streams `body` into the upload's sealed chunks inside `tx`, checking it on the way.
pub async fn receive<S, E>(
    tx: &deadpool_postgres::Transaction<'_>,
    ctx: CheckContext,
    upload: Uuid,
    mut body: Pin<Box<S>>,
) -> Result<Precheck, IntakeError>
where
    S: Stream<Item = Result<Bytes, E>> + ?Sized,
    E: std::fmt::Display,
{
    let keys = ctx.keys.clone();
    let tenant = ctx.tenant.clone();
    let (feed, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
    let mut checker = tokio::spawn(precheck(ctx, StreamReader::new(receiver_stream(rx))));
    let mut buf = BytesMut::with_capacity(CHUNK_BYTES);
    let mut seq = 0i32;
    // Set once the checker has stopped before the body ended.
    let mut early: Option<Precheck> = None;
    let mut trailing_data = false;
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| IntakeError::Body(e.to_string()))?;
        if early.is_some() {
            // After the end of the document only white space may follow.
            trailing_data |= piece.iter().any(|b| !b.is_ascii_whitespace());
        } else if feed.send(Ok(piece.clone())).await.is_err() {
            // The checker stopped: a refusal or a broken file ends the upload now (nothing is
            // committed); a finished document lets the rest be read and checked.
            early = Some(join(&mut checker).await?);
            trailing_data |= piece.iter().any(|b| !b.is_ascii_whitespace());
        }
        buf.extend_from_slice(&piece);
        while buf.len() >= CHUNK_BYTES {
            let chunk = buf.split_to(CHUNK_BYTES);
            store_chunk(tx, &keys, &tenant, upload, seq, &chunk).await?;
            seq += 1;
        }
    }
    drop(feed);
    let pre = match early {
        Some(pre) => pre,
        None => join(&mut checker).await?,
    };
    if trailing_data {
        return Err(IntakeError::List(ListError::Malformed {
            line: 0,
            detail: "文書の終わりの後にデータがあります。".into(),
        }));
    }
    if pre.entries == 0 {
        return Err(IntakeError::Empty);
    }
    if !buf.is_empty() {
        store_chunk(tx, &keys, &tenant, upload, seq, &buf).await?;
    }
    Ok(pre)
}

async fn store_chunk(
    tx: &deadpool_postgres::Transaction<'_>,
    keys: &TenantKeys,
    tenant: &str,
    upload: Uuid,
    seq: i32,
    plain: &[u8],
) -> Result<(), IntakeError> {
    let sealed = keys.encrypt(plain, &seal::chunk_aad("upload", &upload, seq));
    store::insert_chunk(tx, tenant, upload, seq, &sealed)
        .await
        .map_err(|e| IntakeError::Internal(anyhow::Error::new(e).context("store chunk")))?;
    Ok(())
}

async fn join(
    task: &mut tokio::task::JoinHandle<Result<Precheck, IntakeError>>,
) -> Result<Precheck, IntakeError> {
    task.await
        .map_err(|e| IntakeError::Internal(anyhow::anyhow!("checker task: {e}")))?
}

fn receiver_stream(
    mut rx: mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Reads a stored upload back, chunk by chunk, as one byte stream (memory: one chunk).
pub fn stored_file_reader(
    db: chukan_db::Pool,
    keys: Arc<TenantKeys>,
    tenant: String,
    upload: Uuid,
) -> impl AsyncBufRead + Unpin + Send {
    let chunks = futures_util::stream::try_unfold(0i32, move |seq| {
        let db = db.clone();
        let keys = keys.clone();
        let tenant = tenant.clone();
        async move {
            let mut client = db.get().await.map_err(std::io::Error::other)?;
            let tx = chukan_db::tenant_tx(&mut client, &tenant)
                .await
                .map_err(std::io::Error::other)?;
            let sealed = store::upload_chunk(&tx, upload, seq)
                .await
                .map_err(std::io::Error::other)?;
            tx.commit().await.map_err(std::io::Error::other)?;
            match sealed {
                None => Ok::<_, std::io::Error>(None),
                Some(sealed) => {
                    let plain = keys
                        .decrypt(&sealed, &seal::chunk_aad("upload", &upload, seq))
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    Ok(Some((Bytes::from(plain), seq + 1)))
                }
            }
        }
    });
    StreamReader::new(Box::pin(chunks))
}
