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
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(400 * 86_400),
            flush_interval: Duration::from_secs(1),
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
        Ok(())
    }
}
