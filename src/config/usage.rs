//! `[usage]`: the per-client, per-day usage counters behind the admin usage report.

use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};

/// `[usage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageSettings {
    /// How long a day's counters are kept (1 to 3660 days; in Redis, the TTL of each day's
    /// hash); older days are no longer reported.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often the counters gathered in this process are added to Redis (100ms to 60s);
    /// unused with the memory store.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// How long after a send its delivery state is read for the receipt counts (at least
    /// 100ms); at the latest at nine tenths of `otp.ttl`, since the state lives as long as the
    /// code.
    #[serde(with = "humantime_serde")]
    pub receipt_check_after: Duration,
    /// Sent codes waiting for that check at most (1,000 to 10,000,000); beyond it receipts go
    /// uncounted.
    pub receipt_checks_max: usize,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(400 * 86_400),
            flush_interval: Duration::from_secs(1),
            receipt_check_after: Duration::from_secs(60),
            receipt_checks_max: 1_000_000,
        }
    }
}

impl UsageSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let days = self.retention.as_secs() / 86_400;
        if !(1..=3660).contains(&days) {
            return Err(invalid(
                "usage.retention",
                "must be between 1 and 3660 days",
            ));
        }
        if self.flush_interval < Duration::from_millis(100)
            || self.flush_interval > Duration::from_secs(60)
        {
            return Err(invalid(
                "usage.flush_interval",
                "must be between 100ms and 60s",
            ));
        }
        if self.receipt_check_after < Duration::from_millis(100) {
            return Err(invalid(
                "usage.receipt_check_after",
                "must be at least 100ms",
            ));
        }
        if !(1_000..=10_000_000).contains(&self.receipt_checks_max) {
            return Err(invalid(
                "usage.receipt_checks_max",
                "must be between 1000 and 10000000",
            ));
        }
        Ok(())
    }
}

impl UsageSettings {
    /// When a send's delivery state is read: `receipt_check_after`, or nine tenths of the
    /// code's lifetime `otp_ttl` when that comes first.
    pub fn receipt_check_delay(&self, otp_ttl: Duration) -> Duration {
        self.receipt_check_after.min(otp_ttl.mul_f64(0.9))
    }
}
