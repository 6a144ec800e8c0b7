//! Per-client request rate limits (token buckets), for CAMARA's 429 TOO_MANY_REQUESTS.
//!
//! With the memory store each process keeps its own buckets. With the Redis store the bucket
//! lives in Redis (one atomic script per check, see `store::redis`), so N replicas together
//! allow a client its `rate_limit`, not N times it. When Redis does not answer within
//! `store.redis_timeout` the check falls back to this process's own bucket: the limit then
//! holds per replica (a looser bound, never none), and send/validate answer 503 on their own
//! because they need the same Redis; failing closed would turn a store outage into 429s that
//! hide it, failing wide open would let a Redis outage lift every limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::store::RedisStore;

struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

/// Token buckets per client id; clients without a limit are never throttled.
#[derive(Default)]
pub struct ClientRateLimiter {
    /// Requests per second (also the burst) per client id.
    limits: HashMap<String, u32>,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// The shared buckets, with the Redis store.
    shared: Option<RedisStore>,
}

impl ClientRateLimiter {
    /// Limits from `(client id, requests per second)` pairs, kept in this process.
    pub fn new(limits: impl IntoIterator<Item = (String, u32)>) -> ClientRateLimiter {
        ClientRateLimiter {
            limits: limits.into_iter().filter(|(_, r)| *r > 0).collect(),
            buckets: Mutex::new(HashMap::new()),
            shared: None,
        }
    }

    /// The same limits, kept in Redis so every replica on `store` shares them.
    pub fn shared(mut self, store: RedisStore) -> ClientRateLimiter {
        self.shared = Some(store);
        self
    }

    /// Takes one request from the client's bucket; false when it is empty.
    pub async fn allow(&self, client_id: &str) -> bool {
        let Some(&rate) = self.limits.get(client_id) else {
            return true;
        };
        if let Some(store) = &self.shared {
            match store.take_token(client_id, rate).await {
                Ok(allowed) => return allowed,
                Err(e) => {
                    tracing::warn!(
                        target: "otp_gateway::policy",
                        error = %e,
                        "shared rate limit unavailable; this replica's own bucket applies"
                    );
                }
            }
        }
        self.allow_at(client_id, Instant::now())
    }

    fn allow_at(&self, client_id: &str, now: Instant) -> bool {
        let Some(&rate) = self.limits.get(client_id) else {
            return true;
        };
        let rate = f64::from(rate);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(client_id.to_string()).or_insert(Bucket {
            tokens: rate,
            refilled_at: now,
        });
        let elapsed = now.saturating_duration_since(b.refilled_at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.refilled_at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::domain::Secret;
    use crate::store::redis::testkit::RedisServer;
    use crate::store::{RedisSettings, RedisTarget};

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let l = ClientRateLimiter::new([("a".to_string(), 2)]);
        let t0 = Instant::now();
        assert!(l.allow_at("a", t0));
        assert!(l.allow_at("a", t0));
        assert!(!l.allow_at("a", t0));
        assert!(l.allow_at("a", t0 + Duration::from_millis(500)));
        assert!(!l.allow_at("a", t0 + Duration::from_millis(500)));
        for _ in 0..100 {
            assert!(l.allow_at("unlimited", t0));
        }
    }

    fn redis_store(url: String, timeout: Duration) -> RedisStore {
        RedisStore::new(
            RedisSettings {
                target: RedisTarget::Single(Secret::new(url)),
                prefix: format!("rl{}", std::process::id()),
                timeout,
                state_ttl: Duration::from_secs(60),
                wait_replicas: 0,
                tls: Default::default(),
            },
            b"rate-limit-test-key-rate-limit-test-key",
        )
    }

    #[tokio::test]
    async fn two_limiters_on_one_redis_share_one_bucket_which_refills() {
        let redis = RedisServer::start().unwrap();
        let limits = || [("a".to_string(), 5), ("b".to_string(), 5)];
        let one = ClientRateLimiter::new(limits())
            .shared(redis_store(redis.url(), Duration::from_secs(2)));
        let two = ClientRateLimiter::new(limits())
            .shared(redis_store(redis.url(), Duration::from_secs(2)));
        let mut allowed = 0;
        for i in 0..10 {
            let l = if i % 2 == 0 { &one } else { &two };
            if l.allow("a").await {
                allowed += 1;
            }
        }
        // Apart, each would allow its own burst of 5 (10 in all); together they allow 5 and
        // at most one more refilled while the ten calls ran.
        assert!((5..=6).contains(&allowed), "{allowed}");
        assert!(one.allow("b").await, "buckets are per client");
        assert!(one.allow("unlimited").await);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(two.allow("a").await, "the bucket refilled");
    }

    #[tokio::test]
    async fn with_redis_down_each_limiter_falls_back_to_its_own_bucket() {
        let mut redis = RedisServer::start().unwrap();
        let l = ClientRateLimiter::new([("a".to_string(), 2)])
            .shared(redis_store(redis.url(), Duration::from_millis(200)));
        redis.kill();
        assert!(l.allow("a").await);
        assert!(l.allow("a").await);
        assert!(!l.allow("a").await, "the local bucket still limits");
    }
}
