//! The in-process backend: two bounded moka caches. Challenges expire on their own deadlines
//! (moka's per-entry expiry only frees memory; correctness uses the injected clock), and
//! per-number state lives as long as the send window or the code lifetime needs it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use super::{ChallengeStore, InsertError, SendQuota, StoreError};
use crate::domain::{AttemptOutcome, Challenge, ChallengeId, CodeHash, PhoneNumber};
use crate::sync::lock;

struct Entry {
    /// Time to keep the entry after insertion; fixed at insert so moka can read it lock-free.
    keep_for: Duration,
    state: Mutex<Challenge>,
}

#[derive(Default)]
struct PhoneState {
    current: Option<ChallengeId>,
    /// (sent at, id) of sends inside the window, oldest first.
    sends: VecDeque<(u64, ChallengeId)>,
}

struct ChallengeExpiry;

impl Expiry<ChallengeId, Arc<Entry>> for ChallengeExpiry {
    fn expire_after_create(&self, _: &ChallengeId, v: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(v.keep_for)
    }
}

/// moka-backed [`ChallengeStore`].
#[derive(Clone)]
pub struct MemoryStore {
    challenges: Cache<ChallengeId, Arc<Entry>>,
    phones: Cache<PhoneNumber, Arc<Mutex<PhoneState>>>,
}

impl MemoryStore {
    /// `capacity` bounds live challenges; `phone_idle` is how long per-number state survives
    /// without activity (the longer of the send window and the code lifetime).
    pub fn new(capacity: u64, phone_idle: Duration) -> MemoryStore {
        MemoryStore {
            challenges: Cache::builder()
                .max_capacity(capacity)
                .expire_after(ChallengeExpiry)
                .build(),
            phones: Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(phone_idle)
                .build(),
        }
    }

    /// By reference, so the number is cloned into the cache only when its state is created.
    fn phone(&self, phone: &PhoneNumber) -> Arc<Mutex<PhoneState>> {
        self.phones.get_with_by_ref(phone, Default::default)
    }

    /// Live challenges currently held (approximate; for metrics and benchmarks).
    pub fn len(&self) -> u64 {
        self.challenges.run_pending_tasks();
        self.challenges.entry_count()
    }

    /// True when no challenge is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ChallengeStore for MemoryStore {
    async fn insert_pending(
        &self,
        challenge: Challenge,
        quota: SendQuota,
        now_ms: u64,
    ) -> Result<(), InsertError> {
        let phone = self.phone(&challenge.phone);
        let mut p = lock(&phone);
        let window_ms = u64::try_from(quota.window.as_millis()).unwrap_or(u64::MAX);
        while p
            .sends
            .front()
            .is_some_and(|(at, _)| now_ms.saturating_sub(*at) >= window_ms)
        {
            p.sends.pop_front();
        }
        if p.sends.len() >= quota.max as usize {
            return Err(InsertError::QuotaExceeded);
        }
        p.sends.push_back((now_ms, challenge.id));
        let keep_for = Duration::from_millis(challenge.expires_at_ms.saturating_sub(now_ms));
        let id = challenge.id;
        self.challenges.insert(
            id,
            Arc::new(Entry {
                keep_for,
                state: Mutex::new(challenge),
            }),
        );
        Ok(())
    }

    async fn activate(&self, id: ChallengeId, phone: &PhoneNumber) -> Result<(), StoreError> {
        let state = self.phone(phone);
        let mut p = lock(&state);
        if let Some(old) = p.current.replace(id) {
            if old != id {
                self.challenges.invalidate(&old);
            }
        }
        Ok(())
    }

    async fn discard(&self, id: ChallengeId, phone: &PhoneNumber) -> Result<(), StoreError> {
        self.challenges.invalidate(&id);
        let state = self.phone(phone);
        let mut p = lock(&state);
        p.sends.retain(|(_, sent)| *sent != id);
        if p.current == Some(id) {
            p.current = None;
        }
        Ok(())
    }

    async fn attempt(
        &self,
        id: ChallengeId,
        presented: CodeHash,
        now_ms: u64,
        max_attempts: u32,
    ) -> Result<AttemptOutcome, StoreError> {
        let Some(entry) = self.challenges.get(&id) else {
            return Ok(AttemptOutcome::Expired);
        };
        let outcome = {
            let mut c = lock(&entry.state);
            // A concurrent winner may have consumed it between `get` and `lock`.
            if c.expires_at_ms == 0 {
                return Ok(AttemptOutcome::Expired);
            }
            let outcome = c.attempt(&presented, now_ms, max_attempts);
            if matches!(outcome, AttemptOutcome::Valid | AttemptOutcome::Expired) {
                c.expires_at_ms = 0;
            }
            outcome
        };
        if matches!(outcome, AttemptOutcome::Valid | AttemptOutcome::Expired) {
            self.challenges.invalidate(&id);
        }
        Ok(outcome)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_satisfies_the_store_contract() {
        crate::store::contract::run(|| MemoryStore::new(10_000, Duration::from_secs(600))).await;
    }
}
