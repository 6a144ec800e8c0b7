//! Bounds on the work unauthenticated token requests can cause.
//!
//! Checking a client secret costs a full PBKDF2 run (about 20 ms at 100000 iterations) before
//! anything is known about the caller, so the token endpoint is a CPU lever. Three bounds:
//!
//! - Failed authentications are rate-limited per presented client id and overall (token
//!   buckets of N per minute, burst N). A request finding either bucket empty is answered 429
//!   before any secret is checked. Each attempt reserves one failure up front and gets it back
//!   when the secret was right, so concurrent attempts cannot overshoot the budget while a
//!   correct secret costs no budget.
//! - Secrets are checked on a pool of half the cores (at least one) through
//!   `spawn_blocking`, so the async workers, and the other half of the cores, stay free for
//!   API calls whatever the token endpoint receives.
//! - The iteration count of configured secrets is capped (see [`crate::auth::secret`]).
//!
//! Unknown ids get buckets like known ones, so the 429s do not tell them apart either; the
//! per-id buckets live in a bounded cache, and an attacker cycling ids to evade them still
//! drains the overall bucket.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use tokio::sync::Semaphore;

use crate::auth::issuer::loggable;

/// Per-id buckets remembered at most; beyond it the least recently used are dropped (and
/// come back full, which the overall bucket makes harmless).
const MAX_TRACKED_IDS: u64 = 10_000;
/// An idle bucket is full again after a minute, so forgetting it then loses nothing.
const BUCKET_IDLE: Duration = Duration::from_secs(60);

/// How many failed client authentications are tolerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLimits {
    /// Failures per minute (and burst) per presented client id.
    pub per_client_per_minute: u32,
    /// Failures per minute (and burst) over all client ids.
    pub total_per_minute: u32,
}

impl Default for AttemptLimits {
    fn default() -> Self {
        AttemptLimits {
            per_client_per_minute: 10,
            total_per_minute: 120,
        }
    }
}

/// A token bucket holding up to `capacity` failures, refilled at `capacity` per minute.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl Bucket {
    fn full(capacity: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(capacity),
            refilled_at: now,
        }
    }

    fn refill(&mut self, capacity: u32, now: Instant) {
        let capacity = f64::from(capacity);
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * capacity / 60.0).min(capacity);
        self.refilled_at = now;
    }

    /// Time until one failure is available again.
    fn wait(&self, capacity: u32) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::from_secs_f64(missing * 60.0 / f64::from(capacity.max(1)))
    }

    fn give_back(&mut self, capacity: u32) {
        self.tokens = (self.tokens + 1.0).min(f64::from(capacity));
    }
}

/// The failure budgets and the verification pool of one token issuer.
pub(crate) struct AttemptGuard {
    limits: AttemptLimits,
    total: Mutex<Bucket>,
    per_client: Cache<String, Arc<Mutex<Bucket>>>,
    pool: Arc<Semaphore>,
}

impl std::fmt::Debug for AttemptGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptGuard")
            .field("limits", &self.limits)
            .field("pool", &self.pool.available_permits())
            .finish_non_exhaustive()
    }
}

/// One failure reserved for an attempt; [`AttemptGuard::refund`] returns it.
#[derive(Debug)]
pub(crate) struct Reservation {
    bucket: Arc<Mutex<Bucket>>,
}

/// Threads checking secrets at once: half the cores, at least one.
fn pool_size() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get() / 2)
        .max(1)
}

impl AttemptGuard {
    /// Full buckets and a pool sized to the machine.
    pub(crate) fn new(limits: AttemptLimits) -> AttemptGuard {
        let limits = AttemptLimits {
            per_client_per_minute: limits.per_client_per_minute.max(1),
            total_per_minute: limits.total_per_minute.max(1),
        };
        AttemptGuard {
            limits,
            total: Mutex::new(Bucket::full(limits.total_per_minute, Instant::now())),
            per_client: Cache::builder()
                .max_capacity(MAX_TRACKED_IDS)
                .time_to_idle(BUCKET_IDLE)
                .build(),
            pool: Arc::new(Semaphore::new(pool_size())),
        }
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> AttemptLimits {
        self.limits
    }

    /// The pool secrets are checked on: hold a permit while checking.
    pub(crate) fn pool(&self) -> Arc<Semaphore> {
        Arc::clone(&self.pool)
    }

    /// Reserves one failure for an attempt by `client_id` from its bucket and the overall
    /// one, or says how long to wait when either is empty (nothing is taken then).
    pub(crate) fn admit(&self, client_id: &str) -> Result<Reservation, Duration> {
        self.admit_at(client_id, Instant::now())
    }

    fn admit_at(&self, client_id: &str, now: Instant) -> Result<Reservation, Duration> {
        // Ids are attacker-chosen: the key is cut like a logged id, so memory stays bounded.
        let per_client = self.limits.per_client_per_minute;
        let bucket = self
            .per_client
            .get_with(loggable(client_id).to_owned(), || {
                Arc::new(Mutex::new(Bucket::full(per_client, now)))
            });
        // Lock order: the client's bucket, then the overall one (refund takes them the same
        // way), so two attempts never wait on each other crosswise.
        let mut own = crate::sync::lock(&bucket);
        let mut total = crate::sync::lock(&self.total);
        own.refill(per_client, now);
        total.refill(self.limits.total_per_minute, now);
        if own.tokens < 1.0 || total.tokens < 1.0 {
            return Err(own
                .wait(per_client)
                .max(total.wait(self.limits.total_per_minute)));
        }
        own.tokens -= 1.0;
        total.tokens -= 1.0;
        drop(total);
        drop(own);
        Ok(Reservation { bucket })
    }

    /// Returns a reservation whose attempt did not fail authentication.
    pub(crate) fn refund(&self, reservation: Reservation) {
        let mut own = crate::sync::lock(&reservation.bucket);
        let mut total = crate::sync::lock(&self.total);
        own.give_back(self.limits.per_client_per_minute);
        total.give_back(self.limits.total_per_minute);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn guard(per_client: u32, total: u32) -> AttemptGuard {
        AttemptGuard::new(AttemptLimits {
            per_client_per_minute: per_client,
            total_per_minute: total,
        })
    }

    #[test]
    fn per_client_budget_then_refill() {
        let g = guard(2, 100);
        let t0 = Instant::now();
        assert!(g.admit_at("a", t0).is_ok());
        assert!(g.admit_at("a", t0).is_ok());
        let wait = g.admit_at("a", t0).unwrap_err();
        assert!(wait > Duration::from_secs(29) && wait <= Duration::from_secs(30));
        // Other ids, known or not, have their own budget.
        assert!(g.admit_at("b", t0).is_ok());
        assert!(g.admit_at("a", t0 + Duration::from_secs(30)).is_ok());
    }

    #[test]
    fn overall_budget_spans_ids() {
        let g = guard(10, 3);
        let t0 = Instant::now();
        for id in ["x", "y", "z"] {
            assert!(g.admit_at(id, t0).is_ok());
        }
        assert!(g.admit_at("w", t0).is_err());
    }

    #[test]
    fn refunds_restore_the_budget() {
        let g = guard(1, 1);
        let t0 = Instant::now();
        let r = g.admit_at("a", t0).unwrap();
        assert!(g.admit_at("a", t0).is_err());
        g.refund(r);
        assert!(g.admit_at("a", t0).is_ok());
    }

    #[test]
    fn long_ids_share_a_bounded_key() {
        let g = guard(1, 100);
        let t0 = Instant::now();
        let long = "x".repeat(1_000);
        assert!(g.admit_at(&long, t0).is_ok());
        assert!(g.admit_at(&format!("{long}y"), t0).is_err());
    }
}
