//! The nightly batch as a component of the operating status (稼動状態 "replica-batch"): the
//! night's run must have finished by 08:00 Japan time, when registration lists queued the
//! evening before are expected to be applied. The scheduler checks on its ticks and, on a
//! change only, writes a `status.component` to provision's outbox for admin.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use chrono_tz::Asia::Tokyo;

use crate::ProvisionState;

/// The component name in the operating status.
pub const COMPONENT: &str = "replica-batch";

/// By when (Japan time) the night's run must have finished.
const DEADLINE: NaiveTime = match NaiveTime::from_hms_opt(8, 0, 0) {
    Some(t) => t,
    None => NaiveTime::MIN,
};

/// The Japan date of the run that must have finished by this morning's deadline, once it has
/// passed: yesterday's evening run, or today's when the batch runs after midnight.
pub fn run_due(now: DateTime<Utc>, nightly_at: NaiveTime) -> Option<NaiveDate> {
    let local = now.with_timezone(&Tokyo);
    if local.time() < DEADLINE {
        return None;
    }
    let today = local.date_naive();
    Some(if nightly_at < DEADLINE {
        today
    } else {
        today - Duration::days(1)
    })
}

/// Whether the batch is healthy at `now`; `None` when there is nothing to judge (before the
/// deadline, or no night has ever run — a new installation).
pub async fn healthy(state: &ProvisionState, now: DateTime<Utc>) -> anyhow::Result<Option<bool>> {
    let Some(day) = run_due(now, state.nightly_at) else {
        return Ok(None);
    };
    let client = state.db.get().await?;
    let row = client
        .query_one(
            "SELECT (SELECT finished_at IS NOT NULL FROM provision.job_runs
                     WHERE job = 'nightly' AND day = $1),
                    EXISTS (SELECT 1 FROM provision.job_runs WHERE job = 'nightly' AND day < $1)",
            &[&day],
        )
        .await?;
    let finished: Option<bool> = row.get(0);
    let ran_before: bool = row.get(1);
    Ok(match finished {
        Some(done) => Some(done),
        None if ran_before => Some(false),
        None => None,
    })
}

/// Writes the batch's health to the outbox (admin's `status.component`).
pub async fn announce(state: &ProvisionState, ok: bool) -> anyhow::Result<()> {
    let detail = if ok {
        "夜間バッチは終了しています。"
    } else {
        "夜間バッチが08:00までに終了していません。登録リストの反映が遅れています。"
    };
    let message = chukan_runtime::component_status(COMPONENT, ok, detail, state.clock.now());
    let client = state.db.get().await?;
    chukan_mq::outbox::enqueue(&client, crate::SCHEMA, &message).await?;
    state.outbox.wake();
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn jst(d: u32, h: u32) -> DateTime<Utc> {
        Tokyo
            .with_ymd_and_hms(2026, 12, d, h, 0, 0)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_run_judged_is_last_nights_and_only_after_eight() {
        let evening = NaiveTime::from_hms_opt(22, 0, 0).unwrap();
        let after_midnight = NaiveTime::from_hms_opt(2, 0, 0).unwrap();
        assert_eq!(run_due(jst(9, 7), evening), None);
        assert_eq!(
            run_due(jst(9, 8), evening),
            NaiveDate::from_ymd_opt(2026, 12, 8)
        );
        assert_eq!(
            run_due(jst(9, 23), evening),
            NaiveDate::from_ymd_opt(2026, 12, 8)
        );
        assert_eq!(
            run_due(jst(9, 9), after_midnight),
            NaiveDate::from_ymd_opt(2026, 12, 9)
        );
    }
}
