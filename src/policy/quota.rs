//! Per-client daily and monthly send quotas, for CAMARA's 429 QUOTA_EXCEEDED. Periods are UTC
//! days and calendar months of the gateway's clock. With the memory store each process counts
//! on its own; with the Redis store every replica counts against one total (see
//! `store::redis::quota`). A send the SMSC definitely did not take is given back.

use std::collections::HashMap;
use std::sync::Mutex;

use time::{Date, Month, OffsetDateTime};

use crate::store::{QuotaCounter, QuotaPeriod, RedisStore, StoreError};

const DAY_MS: u64 = 86_400_000;

/// A client's quota limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Codes per UTC day.
    pub daily: Option<u32>,
    /// Codes per UTC calendar month.
    pub monthly: Option<u32>,
}

impl Quota {
    /// True when there is anything to count.
    pub fn is_limited(&self) -> bool {
        self.daily.is_some() || self.monthly.is_some()
    }
}

/// What a counted send holds, to give it back ([`TenantQuotas::refund`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaTicket {
    periods: [Option<QuotaPeriod>; 2],
}

/// Why a send was not counted.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// A quota is spent until its period ends.
    #[error("the client's {period} quota is spent")]
    Spent {
        /// `daily` or `monthly`.
        period: &'static str,
        /// Whole seconds until the period ends (at least 1).
        retry_after_secs: u64,
    },
    /// The shared counter did not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The counters of the current periods, month first: when both are spent, the month's end is
/// the honest `Retry-After`. With each, when its period ends (unix ms).
fn counters(quota: &Quota, now_ms: u64) -> [Option<(QuotaCounter, u64)>; 2] {
    let day = now_ms / DAY_MS;
    let day_end = (day + 1) * DAY_MS;
    let (month, month_end) = month_of(now_ms);
    // Keys outlive their period by a day, so a replica whose clock lags still finds them.
    let daily = quota.daily.map(|limit| {
        let c = QuotaCounter {
            period: QuotaPeriod::Day(day),
            limit,
            expires_at_ms: day_end + DAY_MS,
        };
        (c, day_end)
    });
    let monthly = quota.monthly.map(|limit| {
        let c = QuotaCounter {
            period: QuotaPeriod::Month(month),
            limit,
            expires_at_ms: month_end + DAY_MS,
        };
        (c, month_end)
    });
    [monthly, daily]
}

/// Months since January 1970 of `now_ms`, and when that month ends (unix ms).
fn month_of(now_ms: u64) -> (u64, u64) {
    let secs = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    let now = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let (year, month) = (now.year(), now.month());
    let index =
        u64::try_from(i64::from(year - 1970) * 12 + i64::from(u8::from(month)) - 1).unwrap_or(0);
    let (next_year, next_month) = match month {
        Month::December => (year + 1, Month::January),
        m => (year, m.next()),
    };
    let end = Date::from_calendar_date(next_year, next_month, 1)
        .map(|d| d.midnight().assume_utc().unix_timestamp())
        .ok()
        .and_then(|s| u64::try_from(s).ok())
        .map_or(u64::MAX, |s| s.saturating_mul(1000));
    (index, end)
}

/// This process's counts of one client: the period each count is for.
#[derive(Default)]
struct Local {
    day: Option<(QuotaPeriod, u32)>,
    month: Option<(QuotaPeriod, u32)>,
}

impl Local {
    fn slot(&mut self, period: QuotaPeriod) -> &mut Option<(QuotaPeriod, u32)> {
        match period {
            QuotaPeriod::Day(_) => &mut self.day,
            QuotaPeriod::Month(_) => &mut self.month,
        }
    }

    fn count(&mut self, period: QuotaPeriod) -> u32 {
        match self.slot(period) {
            Some((p, n)) if *p == period => *n,
            _ => 0,
        }
    }
}

/// Quota counters for every client with a quota.
#[derive(Default)]
pub struct TenantQuotas {
    /// Built at start for each client with a quota, so a request never allocates an entry.
    local: HashMap<String, Mutex<Local>>,
    shared: Option<RedisStore>,
}

impl TenantQuotas {
    /// Counters for `clients` (ids of the clients that have a quota), kept in this process.
    pub fn new<'a>(clients: impl IntoIterator<Item = &'a str>) -> TenantQuotas {
        TenantQuotas {
            local: clients
                .into_iter()
                .map(|id| (id.to_owned(), Mutex::new(Local::default())))
                .collect(),
            shared: None,
        }
    }

    /// The same counters, kept in Redis so every replica on `store` shares them.
    pub fn shared(mut self, store: RedisStore) -> TenantQuotas {
        self.shared = Some(store);
        self
    }

    /// Counts one send of `client_id` at `now_ms`, or says which quota is spent and for how
    /// long. A client without a quota is never refused.
    pub async fn take(
        &self,
        client_id: &str,
        quota: &Quota,
        now_ms: u64,
    ) -> Result<QuotaTicket, QuotaError> {
        if !quota.is_limited() {
            return Ok(QuotaTicket::default());
        }
        let counters = counters(quota, now_ms);
        let spent = |c: QuotaCounter| {
            let end = counters
                .iter()
                .flatten()
                .find(|(held, _)| held.period == c.period)
                .map_or(now_ms, |(_, end)| *end);
            let period = match c.period {
                QuotaPeriod::Day(_) => "daily",
                QuotaPeriod::Month(_) => "monthly",
            };
            tracing::info!(target: "otp_gateway::policy", period, "the client's quota is spent");
            QuotaError::Spent {
                period,
                retry_after_secs: end.saturating_sub(now_ms).div_ceil(1000).max(1),
            }
        };
        let ticket = QuotaTicket {
            periods: counters.map(|c| c.map(|(c, _)| c.period)),
        };
        if let Some(store) = &self.shared {
            let list: Vec<QuotaCounter> = counters.iter().flatten().map(|(c, _)| *c).collect();
            return match store.take_quota(client_id, &list).await? {
                None => Ok(ticket),
                Some(c) => Err(spent(c)),
            };
        }
        let Some(local) = self.local.get(client_id) else {
            return Ok(QuotaTicket::default());
        };
        let mut local = local.lock().unwrap_or_else(|p| p.into_inner());
        for (c, _) in counters.iter().flatten() {
            if local.count(c.period) >= c.limit {
                return Err(spent(*c));
            }
        }
        for (c, _) in counters.iter().flatten() {
            let n = local.count(c.period) + 1;
            *local.slot(c.period) = Some((c.period, n));
        }
        Ok(ticket)
    }

    /// Gives back a send counted by [`take`](TenantQuotas::take) (the SMSC holds nothing).
    pub async fn refund(&self, client_id: &str, ticket: QuotaTicket) -> Result<(), StoreError> {
        let periods: Vec<QuotaPeriod> = ticket.periods.iter().flatten().copied().collect();
        if periods.is_empty() {
            return Ok(());
        }
        if let Some(store) = &self.shared {
            return store.refund_quota(client_id, &periods).await;
        }
        if let Some(local) = self.local.get(client_id) {
            let mut local = local.lock().unwrap_or_else(|p| p.into_inner());
            for p in periods {
                if let Some((held, n)) = local.slot(p) {
                    if *held == p && *n > 0 {
                        *n -= 1;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// 2026-12-31T23:59:30Z.
    const NEW_YEARS_EVE: u64 = 1_798_761_570_000;

    #[test]
    fn periods_end_at_the_next_utc_midnight_and_first_of_the_month() {
        let both = Quota {
            daily: Some(1),
            monthly: Some(1),
        };
        let [month, day] = counters(&both, NEW_YEARS_EVE);
        assert_eq!(day.unwrap().1 - NEW_YEARS_EVE, 30_000);
        assert_eq!(
            month.unwrap().1 - NEW_YEARS_EVE,
            30_000,
            "December ends with the day"
        );
        let [month, day] = counters(&both, NEW_YEARS_EVE - 10 * DAY_MS);
        assert_eq!(day.unwrap().1, NEW_YEARS_EVE - 10 * DAY_MS + 30_000);
        assert_eq!(month.unwrap().1, NEW_YEARS_EVE + 30_000);
        let (jan, _) = month_of(NEW_YEARS_EVE + 60_000);
        let (dec, _) = month_of(NEW_YEARS_EVE);
        assert_eq!(jan, dec + 1);
        assert_eq!(month_of(0), (0, 31 * DAY_MS));
    }

    #[tokio::test]
    async fn a_daily_quota_refuses_until_midnight_and_a_refund_gives_a_send_back() {
        let q = TenantQuotas::new(["a"]);
        let quota = Quota {
            daily: Some(2),
            monthly: None,
        };
        let now = NEW_YEARS_EVE - 3_600_000;
        let first = q.take("a", &quota, now).await.unwrap();
        q.take("a", &quota, now).await.unwrap();
        match q.take("a", &quota, now).await {
            Err(QuotaError::Spent {
                period: "daily",
                retry_after_secs,
            }) => assert_eq!(retry_after_secs, 3630),
            other => panic!("{other:?}"),
        }
        q.refund("a", first).await.unwrap();
        q.take("a", &quota, now).await.unwrap();
        assert!(q.take("a", &quota, now).await.is_err());
        // A new day, a new count.
        q.take("a", &quota, NEW_YEARS_EVE + 60_000).await.unwrap();
        assert!(q.take("b", &Quota::default(), now).await.is_ok());
    }

    #[tokio::test]
    async fn with_both_spent_the_retry_after_is_the_months_end() {
        let q = TenantQuotas::new(["a"]);
        let quota = Quota {
            daily: Some(1),
            monthly: Some(1),
        };
        let now = NEW_YEARS_EVE - 10 * DAY_MS;
        q.take("a", &quota, now).await.unwrap();
        match q.take("a", &quota, now).await {
            Err(QuotaError::Spent {
                period: "monthly",
                retry_after_secs,
            }) => assert_eq!(retry_after_secs, 10 * 86_400 + 30),
            other => panic!("{other:?}"),
        }
    }

    fn redis_store(url: String) -> RedisStore {
        use crate::domain::Secret;
        use crate::store::{RedisSettings, RedisTarget};
        RedisStore::new(
            RedisSettings {
                target: RedisTarget::Single(Secret::new(url)),
                prefix: format!("q{}", std::process::id()),
                timeout: std::time::Duration::from_secs(2),
                state_ttl: std::time::Duration::from_secs(60),
                wait_replicas: 0,
                tls: Default::default(),
            },
            b"quota-test-key-quota-test-key-quota-test",
        )
    }

    #[tokio::test]
    async fn two_counters_on_one_redis_share_the_quota_and_its_refunds() {
        let redis = crate::store::redis::testkit::RedisServer::start().unwrap();
        let one = TenantQuotas::new(["a"]).shared(redis_store(redis.url()));
        let two = TenantQuotas::new(["a"]).shared(redis_store(redis.url()));
        let quota = Quota {
            daily: Some(2),
            monthly: Some(3),
        };
        let now = NEW_YEARS_EVE - 10 * DAY_MS;
        let first = one.take("a", &quota, now).await.unwrap();
        two.take("a", &quota, now).await.unwrap();
        assert!(matches!(
            one.take("a", &quota, now).await,
            Err(QuotaError::Spent {
                period: "daily",
                ..
            })
        ));
        // A refund on one frees a send for the other.
        two.refund("a", first).await.unwrap();
        one.take("a", &quota, now).await.unwrap();
        // The next day: the month has 2 counted (3 taken, one given back), so one more fits.
        let tomorrow = now + DAY_MS;
        two.take("a", &quota, tomorrow).await.unwrap();
        assert!(matches!(
            one.take("a", &quota, tomorrow).await,
            Err(QuotaError::Spent {
                period: "monthly",
                ..
            })
        ));
        assert!(one.take("b", &Quota::default(), now).await.is_ok());
    }
}
