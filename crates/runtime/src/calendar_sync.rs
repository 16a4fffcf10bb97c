//! Keeps this process's [`ServiceCalendar`] in step with the planned outages platform
//! operators announce (admin's `/v1/calendar`): every `calendar.changed` arrives on a
//! subscription of the process's own, and the whole calendar is asked of admin
//! (`admin.calendar-rpc`) after every (re)subscription and every [`REFRESH`], so a process
//! that missed an announcement (it was starting, or the broker was away) converges anyway.
//! Lists carry a revision; an older one than the process has applied is ignored.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::NaiveDate;
use chukan_core::ServiceCalendar;
use chukan_mq::{Bus, rpc::RpcClient};
use chukan_proto::{
    CALENDAR_CHANGED, CALENDAR_RPC, CalendarChanged, CalendarRequest, Message as _,
};
use tokio::sync::Notify;

use crate::{StopStage, Worker, periodic_worker};

/// How often the whole calendar is asked of admin besides the announcements.
pub const REFRESH: Duration = Duration::from_secs(300);
/// How long one ask waits for admin.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Applies announcements to one calendar, newest revision wins.
#[derive(Clone)]
pub struct CalendarFollower {
    calendar: Arc<ServiceCalendar>,
    /// The revision applied; held while applying, so two lists never interleave.
    applied: Arc<Mutex<i64>>,
}

impl CalendarFollower {
    pub fn new(calendar: Arc<ServiceCalendar>) -> Self {
        Self {
            calendar,
            applied: Arc::new(Mutex::new(-1)),
        }
    }

    /// Applies `event` unless a newer revision was applied; returns whether it was.
    pub fn apply(&self, event: &CalendarChanged) -> bool {
        let dates: Vec<NaiveDate> = event
            .planned_outages
            .iter()
            .filter_map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .collect();
        let mut applied = self
            .applied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *applied > event.revision {
            return false;
        }
        *applied = event.revision;
        self.calendar.set_announced(dates);
        true
    }

    /// The highest revision applied (-1: none yet).
    pub fn revision(&self) -> i64 {
        *self
            .applied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The subscription and the periodic ask, as two workers of this process.
pub fn start(bus: &Bus, calendar: Arc<ServiceCalendar>) -> Vec<Worker> {
    let follower = CalendarFollower::new(calendar);
    let ask_now = Arc::new(Notify::new());
    let on_message = {
        let follower = follower.clone();
        Arc::new(
            move |body: Vec<u8>| match CalendarChanged::decode(body.as_slice()) {
                Ok(event) => {
                    if follower.apply(&event) {
                        tracing::info!(
                            revision = event.revision,
                            outages = event.planned_outages.len(),
                            "planned outages updated"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "undecodable calendar.changed ignored"),
            },
        )
    };
    let on_subscribed = {
        let ask_now = ask_now.clone();
        Arc::new(move || ask_now.notify_one())
    };
    let subscription = chukan_mq::broadcast::subscribe(
        bus.clone(),
        "calendar.subscription",
        CALENDAR_CHANGED,
        on_message,
        on_subscribed,
    );
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let rpc = RpcClient::new(bus);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {}
                _ = ask_now.notified() => {}
            }
            let request = CalendarRequest {}.encode_to_vec();
            // The calendar is the platform's, not a tenant's; the header names the realm.
            match rpc
                .call(
                    CALENDAR_RPC,
                    chukan_proto::PLATFORM_TENANT,
                    &request,
                    ASK_TIMEOUT,
                )
                .await
            {
                Ok(body) => match CalendarChanged::decode(body.as_slice()) {
                    Ok(event) => {
                        follower.apply(&event);
                    }
                    Err(e) => tracing::warn!(error = %e, "undecodable calendar reply"),
                },
                // Admin may not run yet (or not in this deployment's reach): the settings'
                // outages hold until it answers.
                Err(e) => tracing::debug!(error = %e, "calendar not asked of admin"),
            }
        }
    });
    vec![
        subscription,
        periodic_worker("calendar.refresh", StopStage::Consumers, task, stop_tx),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_revision_wins_whatever_order_lists_arrive_in() {
        let calendar = Arc::new(ServiceCalendar::default());
        let follower = CalendarFollower::new(calendar.clone());
        let list = |revision, dates: &[&str]| CalendarChanged {
            planned_outages: dates.iter().map(|d| d.to_string()).collect(),
            revision,
        };
        assert!(follower.apply(&list(2, &["2026-12-09", "2026-12-10"])));
        assert!(!follower.apply(&list(1, &["2026-12-09"])));
        assert_eq!(calendar.planned_outages().len(), 2);
        assert!(follower.apply(&list(2, &["2026-12-09", "2026-12-10"])));
        assert!(follower.apply(&list(3, &[])));
        assert!(calendar.planned_outages().is_empty());
        assert_eq!(follower.revision(), 3);
    }
}
