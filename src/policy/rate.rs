//! Per-client request rate limits (token buckets), for CAMARA's 429 TOO_MANY_REQUESTS.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

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
}

impl ClientRateLimiter {
    /// Limits from `(client id, requests per second)` pairs.
    pub fn new(limits: impl IntoIterator<Item = (String, u32)>) -> ClientRateLimiter {
        ClientRateLimiter {
            limits: limits.into_iter().filter(|(_, r)| *r > 0).collect(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the client's bucket; false when it is empty.
    pub fn allow(&self, client_id: &str) -> bool {
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
mod tests {
    use super::*;
    use std::time::Duration;

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
}
