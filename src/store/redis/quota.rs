//! Per-client send quotas (codes per UTC day / month) counted in Redis, so every replica
//! counts against one total. One script checks every counter of a send and, only when none
//! is spent, increments them all; a refund decrements them. Each counter's key carries its
//! period and expires after it, so nothing needs clearing at midnight.

use std::sync::LazyLock;

use super::{hex, Call, Lua, RedisStore};
use crate::store::StoreError;

/// Checks, then counts, every counter of one send.
///
/// KEYS: the counters. ARGV: for counter i, its limit (2i-1) and its key's expiry in unix ms
/// (2i). Returns 0 when counted, else the index (from 1) of the first spent counter.
const TAKE: &str = r#"
for i, k in ipairs(KEYS) do
  if (tonumber(redis.call('GET', k)) or 0) >= tonumber(ARGV[2 * i - 1]) then
    return i
  end
end
for i, k in ipairs(KEYS) do
  redis.call('INCR', k)
  redis.call('PEXPIREAT', k, ARGV[2 * i])
end
return 0
"#;

/// Gives one send back to each counter still holding it (never below 0; DECR keeps the TTL).
const REFUND: &str = r#"
for _, k in ipairs(KEYS) do
  if (tonumber(redis.call('GET', k)) or 0) > 0 then
    redis.call('DECR', k)
  end
end
return 0
"#;

static TAKE_SCRIPT: LazyLock<Lua> = LazyLock::new(|| Lua::new(TAKE.to_owned()));
static REFUND_SCRIPT: LazyLock<Lua> = LazyLock::new(|| Lua::new(REFUND.to_owned()));

/// The period a quota counter covers: its kind and its number (days or months since 1970).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPeriod {
    /// A UTC day, as days since the epoch.
    Day(u64),
    /// A UTC calendar month, as months since January 1970.
    Month(u64),
}

/// One counter a send is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaCounter {
    /// Which period.
    pub period: QuotaPeriod,
    /// Sends allowed in it.
    pub limit: u32,
    /// When its key may be dropped (unix ms): after the period, with slack for clock skew.
    pub expires_at_ms: u64,
}

impl RedisStore {
    /// The key of `client_id`'s counter for `period`; one hash tag per client, so a send's
    /// counters share a Cluster slot.
    fn quota_key(&self, client_id: &str, period: QuotaPeriod) -> String {
        let (kind, n) = match period {
            QuotaPeriod::Day(n) => ('d', n),
            QuotaPeriod::Month(n) => ('m', n),
        };
        format!(
            "{}:{{q:{}}}:{kind}{n}",
            self.settings.prefix,
            hex(client_id.as_bytes())
        )
    }

    /// Counts one send of `client_id` against every counter, shared by every replica: `None`
    /// when counted, or the first counter that is spent (then nothing was counted).
    pub async fn take_quota(
        &self,
        client_id: &str,
        counters: &[QuotaCounter],
    ) -> Result<Option<QuotaCounter>, StoreError> {
        let started = std::time::Instant::now();
        let mut call = Call::new(&TAKE_SCRIPT);
        for c in counters {
            call.key(self.quota_key(client_id, c.period))
                .arg(c.limit)
                .arg(c.expires_at_ms);
        }
        let result = self.run::<i64>(&call).await.map(|spent| {
            usize::try_from(spent)
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| counters.get(i).copied())
        });
        self.metrics.record(
            "quota",
            started.elapsed(),
            result.as_ref().err().map(|_| "unavailable"),
        );
        result
    }

    /// Gives back one send counted by [`take_quota`](RedisStore::take_quota) in `periods`.
    pub async fn refund_quota(
        &self,
        client_id: &str,
        periods: &[QuotaPeriod],
    ) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let mut call = Call::new(&REFUND_SCRIPT);
        for p in periods {
            call.key(self.quota_key(client_id, *p));
        }
        let result = self.run::<i64>(&call).await.map(|_| ());
        self.metrics.record(
            "quota",
            started.elapsed(),
            result.as_ref().err().map(|_| "unavailable"),
        );
        result
    }
}
