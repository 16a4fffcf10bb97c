//! Retention (保存期間): records older than `audit.retention_years` (7 by default, 番号法 §23
//! leaves the period to cabinet order) are purged — their rows and sealed leaves deleted — while
//! the log stays verifiable. The cut is always a prefix of the log: a signed **checkpoint**
//! keeps the tree's right edge at the cut (the hashes of the perfect subtrees of `[0, cut)`),
//! which is all a rebuild of the remaining leaves, every later tree head and every remaining
//! inclusion proof need. Nodes wholly inside the cut go with their records.

use chrono::{DateTime, Months, TimeZone as _, Utc};
use chukan_merkle::{Frontier, Hash, perfect_nodes};
use serde::Serialize;

use crate::{AuditState, heads, leaf, metrics, store};

/// What a purge did for one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeReport {
    pub tenant: String,
    pub purged: u64,
    /// The log's first remaining leaf index (the checkpoint's size), if a cut exists.
    pub checkpoint_size: Option<i64>,
    pub cutoff: DateTime<Utc>,
}

/// The instant before which records are due: `now` minus the retention period.
pub fn cutoff(state: &AuditState) -> anyhow::Result<DateTime<Utc>> {
    state
        .clock
        .now()
        .checked_sub_months(Months::new(
            state.settings.retention_years.saturating_mul(12),
        ))
        .ok_or_else(|| anyhow::anyhow!("retention period out of range"))
}

/// The signed text of a checkpoint (v1):
/// `chukan-audit-checkpoint/v1|{tenant}|{size}|{root hex}|{cutoff ms}|{purged_at ms}`.
pub fn checkpoint_message(
    tenant: &str,
    size: u64,
    root: &Hash,
    cutoff_ms: i64,
    purged_at_ms: i64,
) -> Vec<u8> {
    format!(
        "chukan-audit-checkpoint/v1|{tenant}|{size}|{}|{cutoff_ms}|{purged_at_ms}",
        hex::encode(root)
    )
    .into_bytes()
}

fn millis(t: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(t.timestamp_millis())
        .single()
        .ok_or_else(|| anyhow::anyhow!("time out of range"))
}

/// Purges `tenant`'s records older than `cutoff` in one transaction (checkpoint, records and
/// nodes together), after making sure a signed tree head covers the whole log, so the
/// edge kept at the cut is bound to a head signed before anything was deleted.
pub async fn purge_tenant(
    state: &AuditState,
    tenant: &str,
    cutoff: DateTime<Utc>,
) -> anyhow::Result<PurgeReport> {
    let cutoff = millis(cutoff)?;
    let mut client = state.db.get().await?;
    // Most rounds find nothing due: then they sign nothing either (a head signed for every
    // tenant each round would be the purge's doing, not the signer's). Looked at again under
    // the log's lock below, after signing, since appends may come in between.
    {
        let tx = chukan_db::tenant_snapshot_tx(&mut client, tenant, chukan_db::Snapshot::ReadOnly)
            .await?;
        let previous = store::checkpoint(&tx).await?.map(|c| c.size);
        let start = previous.unwrap_or(0);
        let due = store::purge_cut(&tx, cutoff)
            .await?
            .min(store::log_size(&tx).await?)
            > start;
        tx.commit().await?;
        if !due {
            return Ok(PurgeReport {
                tenant: tenant.to_owned(),
                purged: 0,
                checkpoint_size: previous,
                cutoff,
            });
        }
    }
    heads::sign_tenant(state, tenant).await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
    // Appends wait while the cut is made, so the cut and the log agree.
    let (size, _frontier, _signed) = store::lock_log(&tx, tenant).await?;
    let previous = store::checkpoint(&tx).await?;
    let start = previous.as_ref().map_or(0, |c| c.size);
    let cut = store::purge_cut(&tx, cutoff).await?.min(size);
    let mut report = PurgeReport {
        tenant: tenant.to_owned(),
        purged: 0,
        checkpoint_size: previous.as_ref().map(|c| c.size),
        cutoff,
    };
    if cut <= start {
        tx.commit().await?;
        return Ok(report);
    }
    let cut_u = u64::try_from(cut)?;
    let edge = perfect_nodes(0, cut_u).ok_or_else(|| anyhow::anyhow!("cut out of range"))?;
    let hashes = store::node_hashes(&tx, &edge).await?;
    let pairs: Vec<_> = edge
        .iter()
        .zip(&hashes)
        .map(|(id, h)| h.map(|h| (*id, h)))
        .collect::<Option<_>>()
        .ok_or_else(|| anyhow::anyhow!("a node of the cut's edge is missing"))?;
    let tree = Frontier::from_nodes(cut_u, |id| {
        pairs.iter().find(|(e, _)| *e == id).map(|(_, h)| *h)
    })
    .ok_or_else(|| anyhow::anyhow!("the cut's edge does not rebuild"))?;
    let frontier = leaf::frontier_bytes(cut_u, |id| {
        pairs.iter().find(|(e, _)| *e == id).map(|(_, h)| *h)
    })
    .ok_or_else(|| anyhow::anyhow!("the cut's edge does not serialise"))?;
    let root = tree.root();
    let purged_at = millis(state.clock.now())?;
    let signature = state.signer.sign(&checkpoint_message(
        tenant,
        cut_u,
        &root,
        cutoff.timestamp_millis(),
        purged_at.timestamp_millis(),
    ));
    let checkpoint = store::CheckpointRow {
        size: cut,
        frontier,
        root: root.to_vec(),
        cutoff,
        purged_at,
        kid: state.signer.kid().to_owned(),
        signature: signature.to_vec(),
    };
    let purged = store::purge_before(&tx, tenant, &checkpoint, &edge).await?;
    tx.commit().await?;
    metrics::purged(purged);
    tracing::info!(purged, cut, "audit records past retention purged");
    report.purged = purged;
    report.checkpoint_size = Some(cut);
    Ok(report)
}

/// Purges every tenant; a failing tenant is logged and the others still run.
pub async fn purge_all(
    state: &AuditState,
    cutoff: DateTime<Utc>,
) -> anyhow::Result<Vec<PurgeReport>> {
    let tenants = {
        let client = state.db.get().await?;
        store::tenants(&client).await?
    };
    let mut out = Vec::new();
    for tenant in tenants {
        match purge_tenant(state, &tenant, cutoff).await {
            Ok(r) => out.push(r),
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), %tenant, "retention purge failed")
            }
        }
    }
    Ok(out)
}

/// The purge every `every` (`audit.purge_interval_secs`; 0 = CLI only, and no worker) as a
/// worker; its first round runs at once, so a process that starts (or takes the lease over)
/// catches up on a purge a restart cut short. A round that finds nothing due changes nothing.
pub fn start(state: AuditState, every: std::time::Duration) -> chukan_runtime::Worker {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop_rx.changed() => return,
            }
            let run = async { purge_all(&state, cutoff(&state)?).await };
            if let Err(err) = run.await {
                tracing::error!(error = format!("{err:#}"), "retention round failed");
            }
        }
    });
    chukan_runtime::periodic_worker(
        "audit.retention",
        chukan_runtime::StopStage::Intake,
        task,
        stop_tx,
    )
}
