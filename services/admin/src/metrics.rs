//! Admin's metrics: login refusals and locks, for an alert on bursts of guessing. No label
//! names a tenant, a user or an address.

use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, register_int_counter, register_int_counter_vec};

static LOGIN_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_admin_login_failures_total",
        "Staff logins refused, by reason: invalid-credentials, account-locked, login-throttled",
        &["reason"]
    )
    .expect("metric registers once")
});

static ACCOUNT_LOCKS: LazyLock<IntCounter> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter!(
        "chukan_admin_account_locks_total",
        "Accounts locked after failed logins (alert on a burst: someone is guessing)"
    )
    .expect("metric registers once")
});

static UNLOCKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "chukan_admin_account_unlocks_total",
        "Accounts unlocked by hand, by who: administrator, operator",
        &["by"]
    )
    .expect("metric registers once")
});

pub fn login_refused(reason: &str) {
    LOGIN_FAILURES.with_label_values(&[reason]).inc();
}

pub fn account_locked() {
    ACCOUNT_LOCKS.inc();
}

pub fn account_unlocked(by: &str) {
    UNLOCKS.with_label_values(&[by]).inc();
}
