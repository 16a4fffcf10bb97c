//! Signed tree heads (STH): every `audit.tree_head_interval_secs`, or as soon as a tenant's log
//! grew by `audit.tree_head_every_records`, each tenant whose log grew gets its
//! (tenant, size, root, time) signed with the service's Ed25519 key. The rounds and the
//! appends keep `chukan_audit_tree_head_age_seconds` (see [`metrics`]).

use chrono::{TimeZone, Utc};
use tokio::sync::watch;

use crate::{AuditState, leaf, metrics, store};

/// Signs a tree head for `tenant` if its log grew since the last one; the new size if signed.
pub async fn sign_tenant(state: &AuditState, tenant: &str) -> anyhow::Result<Option<i64>> {
    let mut client = state.db.get().await?;
    let tx = chukan_db::tenant_tx(&mut client, tenant).await?;
    // Most rounds find most logs unchanged: look before taking the lock appends wait on.
    match store::log_growth(&tx).await? {
        Some((size, signed)) if size > signed => {}
        _ => {
            tx.commit().await?;
            return Ok(None);
        }
    }
    // The lock keeps appends out while the root is taken, so size and root belong together.
    let (size, frontier, signed_size) = store::lock_log(&tx, tenant).await?;
    if size <= signed_size || size == 0 {
        tx.commit().await?;
        return Ok(None);
    }
    let size_u = u64::try_from(size)?;
    let tree = leaf::frontier_from_bytes(size_u, &frontier)
        .ok_or_else(|| anyhow::anyhow!("stored frontier does not fit its size"))?;
    let root = tree.root();
    // Millisecond precision: the signed text carries Unix milliseconds.
    let now_ms = state.clock.now().timestamp_millis();
    let signed_at = Utc
        .timestamp_millis_opt(now_ms)
        .single()
        .ok_or_else(|| anyhow::anyhow!("clock out of range"))?;
    let signature = state
        .signer
        .sign(&leaf::tree_head_message(tenant, size_u, &root, now_ms));
    let head = store::TreeHeadRow {
        size,
        root: root.to_vec(),
        signed_at,
        kid: state.signer.kid().to_owned(),
        signature: signature.to_vec(),
    };
    store::insert_tree_head(&tx, tenant, &head).await?;
    tx.commit().await?;
    metrics::tree_head();
    metrics::head_signed(signed_at);
    Ok(Some(size))
}

/// One round over every tenant; a failing tenant is logged and the others still get signed.
pub async fn sign_all(state: &AuditState) -> anyhow::Result<usize> {
    // Records appended after this mark may have missed their tenant's turn.
    let mark = metrics::signing_round_began();
    let tenants = {
        let listed = async {
            let client = state.db.get().await?;
            anyhow::Ok(store::tenants(&client).await?)
        };
        match listed.await {
            Ok(tenants) => tenants,
            Err(err) => {
                metrics::signing_round_ended(mark, false);
                return Err(err);
            }
        }
    };
    let mut signed = 0;
    let mut failed = false;
    for tenant in tenants {
        match sign_tenant(state, &tenant).await {
            Ok(Some(_)) => signed += 1,
            Ok(None) => {}
            Err(err) => {
                failed = true;
                tracing::error!(%err, %tenant, "signing a tree head failed");
            }
        }
    }
    metrics::signing_round_ended(mark, !failed);
    Ok(signed)
}

/// Reads from the database whether some log has records no signed head covers and when the
/// newest head was signed, for the tree head age of a process that has just started.
pub async fn restore_coverage(state: &AuditState) -> anyhow::Result<()> {
    let mark = metrics::signing_round_began();
    let mut client = state.db.get().await?;
    let tenants = store::tenants(&client).await?;
    let mut newest = None;
    let mut uncovered = false;
    for tenant in tenants {
        let tx = chukan_db::tenant_tx(&mut client, &tenant).await?;
        if let Some((unsigned, head)) = store::coverage(&tx).await? {
            uncovered |= unsigned;
            newest = newest.max(head);
        }
        tx.commit().await?;
    }
    metrics::coverage_restored(mark, newest, uncovered);
    Ok(())
}

/// The signer as a worker.
pub fn start(state: AuditState) -> chukan_runtime::Worker {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let every = state.settings.tree_head_interval;
    metrics::signer_started(state.clock.clone());
    let task = tokio::spawn(async move {
        if let Err(err) = restore_coverage(&state).await {
            tracing::warn!(error = %format!("{err:#}"), "reading the tree heads' coverage failed");
        }
        // The first round one period after start, not at once: a round racing the first
        // appends would sign a head at whatever size it caught (harmless, but noise).
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = state.heads.notified() => {}
                _ = stop_rx.changed() => return,
            }
            if let Err(err) = sign_all(&state).await {
                tracing::error!(%err, "tree head round failed");
            }
        }
    });
    let mut worker = chukan_runtime::periodic_worker(
        "audit.tree-heads",
        chukan_runtime::StopStage::Intake,
        task,
        stop_tx,
    );
    // A process that stopped signing (its lease lost, ADR 0005) no longer exports the tree
    // head age: the appends it still counts would make the age of a signer elsewhere grow.
    let stop = worker.stop;
    worker.stop = Box::new(move || {
        Box::pin(async move {
            stop().await;
            metrics::signer_stopped();
        })
    });
    worker
}
