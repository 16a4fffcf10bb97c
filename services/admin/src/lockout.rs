//! ログイン失敗によるロック (account lockout, DOMAIN §8), built so that nobody outside can
//! turn it against the tenant. Anyone who knows an org code and two login ids could once lock
//! both administrators for good; now:
//!
//! - a lock expires by itself (`auth.lock_minutes`), and an administrator or a platform
//!   operator (`chukan admin unlock-user`, recorded with a reason) may lift it sooner;
//! - a source (client address) that logged in to the account recently is not held by the
//!   account's lock: the administrator's own terminal stays usable while someone else guesses;
//! - every source is also slowed down on its own: after `max_failed_logins` failures for one
//!   account it must wait `throttle_base_secs`, doubled with every further failure;
//! - locks and throttling are counted (`chukan_admin_account_locks_total`,
//!   `chukan_admin_login_throttled_total`) for an alert on bursts.

use actix_web::{HttpRequest, http::header::HeaderName};
use chrono::{DateTime, Duration, Utc};
use chukan_config::AuthSettings;

/// The lockout rules, from `auth.*` settings, checked once at start.
#[derive(Debug, Clone)]
pub struct LoginPolicy {
    /// Failures in a row that lock the account (and after which a source is slowed).
    pub max_failed: i32,
    /// How long a lock lasts.
    pub lock: Duration,
    /// A source's first delay, doubled with every further failure.
    pub throttle_base: Duration,
    pub throttle_max: Duration,
    /// A source that logged in within this long is trusted despite the lock.
    pub trusted_for: Duration,
    /// Where the client address comes from (None: the TCP peer).
    pub address_header: Option<HeaderName>,
}

impl LoginPolicy {
    pub fn from_settings(s: &AuthSettings) -> anyhow::Result<Self> {
        let secs = |v: u64, name: &str| {
            i64::try_from(v)
                .ok()
                .and_then(Duration::try_seconds)
                .filter(|d| *d > Duration::zero())
                .ok_or_else(|| anyhow::anyhow!("setting auth.{name} must be positive"))
        };
        let max_failed = i32::try_from(s.max_failed_logins)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| anyhow::anyhow!("setting auth.max_failed_logins must be at least 1"))?;
        let throttle_base = secs(s.throttle_base_secs, "throttle_base_secs")?;
        let throttle_max = secs(s.throttle_max_secs, "throttle_max_secs")?;
        if throttle_max < throttle_base {
            anyhow::bail!("setting auth.throttle_max_secs must not be below throttle_base_secs");
        }
        let header = s.client_address_header.trim();
        let address_header = (!header.is_empty())
            .then(|| HeaderName::from_bytes(header.as_bytes()))
            .transpose()
            .map_err(|_| anyhow::anyhow!("setting auth.client_address_header is no header name"))?;
        Ok(LoginPolicy {
            max_failed,
            lock: secs(s.lock_minutes.saturating_mul(60), "lock_minutes")?,
            throttle_base,
            throttle_max,
            trusted_for: secs(
                s.trusted_source_days.saturating_mul(86_400),
                "trusted_source_days",
            )?,
            address_header,
        })
    }

    /// The client address a login comes from: the configured header's last value (what the
    /// ingress in front added), else the TCP peer.
    pub fn source(&self, req: &HttpRequest) -> String {
        chukan_core::edge::client_address(req, self.address_header.as_ref())
    }

    /// How long a source must wait after its `failures`-th failure in a row (None: not yet).
    pub fn delay_after(&self, failures: i32) -> Option<Duration> {
        let past = failures.checked_sub(self.max_failed)?;
        // 2^past, without overflowing: past the cap it no longer matters.
        let factor = 1i32.checked_shl(u32::try_from(past).ok()?.min(30))?;
        Some((self.throttle_base * factor).min(self.throttle_max))
    }
}

/// What is known of an account and one source before the password is checked.
#[derive(Debug, Clone, Default)]
pub struct Standing {
    pub locked_until: Option<DateTime<Utc>>,
    pub delayed_until: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
}

/// Why an attempt is refused before its password is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The account is locked for this source until then (423).
    Locked { until: DateTime<Utc> },
    /// This source must wait until then (429).
    Throttled { until: DateTime<Utc> },
}

impl Standing {
    /// A source the account logged in from within the trust period.
    pub fn trusted(&self, policy: &LoginPolicy, now: DateTime<Utc>) -> bool {
        self.last_success_at
            .is_some_and(|at| now - at <= policy.trusted_for)
    }

    /// The refusal this attempt meets, if any: the account's lock (unless the source is
    /// trusted), then the source's own delay.
    pub fn refusal(&self, policy: &LoginPolicy, now: DateTime<Utc>) -> Option<Refusal> {
        match (self.locked_until, self.delayed_until) {
            (Some(until), _) if until > now && !self.trusted(policy, now) => {
                Some(Refusal::Locked { until })
            }
            (_, Some(until)) if until > now => Some(Refusal::Throttled { until }),
            _ => None,
        }
    }
}

/// The account after one more failure: `(failed_logins, locked_until, newly locked)`. An
/// expired lock is forgotten (counting starts again); a running lock is kept as it is.
pub fn after_failure(
    policy: &LoginPolicy,
    failed: i32,
    locked_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (i32, Option<DateTime<Utc>>, bool) {
    match locked_until {
        Some(until) if until > now => (failed.saturating_add(1), Some(until), false),
        expired_or_none => {
            let failed = if expired_or_none.is_some() {
                1
            } else {
                failed.saturating_add(1)
            };
            if failed >= policy.max_failed {
                (failed, Some(now + policy.lock), true)
            } else {
                (failed, None, false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy() -> LoginPolicy {
        LoginPolicy {
            max_failed: 5,
            lock: Duration::minutes(15),
            throttle_base: Duration::seconds(30),
            throttle_max: Duration::hours(1),
            trusted_for: Duration::days(30),
            address_header: None,
        }
    }

    #[test]
    fn a_source_waits_longer_with_every_failure_past_the_limit_up_to_the_cap() {
        let p = policy();
        assert_eq!(p.delay_after(4), None);
        assert_eq!(p.delay_after(5), Some(Duration::seconds(30)));
        assert_eq!(p.delay_after(6), Some(Duration::seconds(60)));
        assert_eq!(p.delay_after(8), Some(Duration::seconds(240)));
        assert_eq!(p.delay_after(20), Some(Duration::hours(1)));
        assert_eq!(p.delay_after(i32::MAX), Some(Duration::hours(1)));
    }

    #[test]
    fn the_lock_holds_strangers_not_a_trusted_source_and_expires() {
        let p = policy();
        let now = Utc::now();
        let locked = Standing {
            locked_until: Some(now + Duration::minutes(10)),
            ..Default::default()
        };
        assert!(matches!(
            locked.refusal(&p, now),
            Some(Refusal::Locked { .. })
        ));
        let trusted = Standing {
            last_success_at: Some(now - Duration::days(3)),
            ..locked.clone()
        };
        assert_eq!(trusted.refusal(&p, now), None);
        let stale = Standing {
            last_success_at: Some(now - Duration::days(31)),
            ..locked.clone()
        };
        assert!(stale.refusal(&p, now).is_some());
        assert_eq!(locked.refusal(&p, now + Duration::minutes(11)), None);
        let throttled = Standing {
            delayed_until: Some(now + Duration::seconds(5)),
            last_success_at: Some(now),
            ..Default::default()
        };
        assert!(matches!(
            throttled.refusal(&p, now),
            Some(Refusal::Throttled { .. })
        ));
    }

    #[test]
    fn the_fifth_failure_locks_a_running_lock_is_kept_and_an_expired_one_forgotten() {
        let p = policy();
        let now = Utc::now();
        assert_eq!(after_failure(&p, 3, None, now), (4, None, false));
        assert_eq!(
            after_failure(&p, 4, None, now),
            (5, Some(now + p.lock), true)
        );
        let until = now + Duration::minutes(3);
        assert_eq!(
            after_failure(&p, 9, Some(until), now),
            (10, Some(until), false)
        );
        assert_eq!(
            after_failure(&p, 9, Some(now - Duration::seconds(1)), now),
            (1, None, false)
        );
    }
}
