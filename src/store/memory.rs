//! The in-process backend: two moka caches. Challenges expire on their own deadlines (moka's
//! per-entry expiry only frees memory; correctness uses the injected clock), and per-number
//! state lives as long as the send windows or the code lifetime need it.
//!
//! Capacity: moka's default admission (TinyLFU) may refuse a fresh entry at capacity, which
//! would acknowledge a code that can never be validated. So the challenge cache has no moka
//! bound at all; an exact count of held challenges (kept by moka's removal listener) is the
//! bound, and [`ChallengeStore::insert_pending`] answers [`StoreError::Full`] at it, before any
//! SMS is sent. The per-number cache evicts by plain LRU, which never refuses the entry being
//! inserted (moka admits every candidate under LRU and evicts from the cold end afterwards), so
//! the send being counted is never lost; only the least recently used number's history can go.
//!
//! One number's state is one moka entry under one mutex: the in-process form of the Redis keys
//! sharing the number's hash tag. Its (client, number) views and its all-clients view are one
//! list of fixed-size send records, filtered by client tag, so a number costs one small heap
//! allocation however many clients send to it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use moka::Expiry;

use super::{ChallengeStore, Discard, InsertError, SendQuotas, StoreError};
use crate::domain::{AttemptOutcome, Challenge, ChallengeId, ClientTag, CodeHash, PhoneNumber};
use crate::metrics::StoreMetrics;
use crate::sync::lock;

struct Entry {
    /// Time to keep the entry after insertion; fixed at insert so moka can read it lock-free.
    keep_for: Duration,
    state: Mutex<Challenge>,
}

/// Where a send stands; decides how long its record is kept.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Inserted, SMS not yet confirmed: kept until activated or discarded.
    Pending,
    /// The client's live challenge for the number: kept until superseded, so superseding
    /// finds it even when the code outlives the send windows.
    Current,
    /// Superseded, or discarded with its outcome unknown: kept only while a window counts it.
    Settled,
}

/// One send to the number: 40 bytes, no heap.
struct Send {
    at_ms: u64,
    client: ClientTag,
    id: ChallengeId,
    stage: Stage,
}

#[derive(Default)]
struct PhoneState {
    /// Every client's sends that a window may still count, plus pending and current ones.
    sends: Vec<Send>,
}

struct ChallengeExpiry;

impl Expiry<ChallengeId, Arc<Entry>> for ChallengeExpiry {
    fn expire_after_create(&self, _: &ChallengeId, v: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(v.keep_for)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// moka-backed [`ChallengeStore`].
#[derive(Clone)]
pub struct MemoryStore {
    challenges: Cache<ChallengeId, Arc<Entry>>,
    phones: Cache<PhoneNumber, Arc<Mutex<PhoneState>>>,
    /// Challenges held by `challenges`, expired ones included until moka removes them.
    held: Arc<AtomicU64>,
    capacity: u64,
    /// Recorded by the [`super::Store`] dispatch, the one place every backend call passes.
    pub(super) metrics: StoreMetrics,
}

impl MemoryStore {
    /// `capacity` bounds live challenges (and the numbers whose state is kept); `phone_idle`
    /// is how long per-number state survives without activity (the longest of the send
    /// windows and the code lifetime).
    pub fn new(capacity: u64, phone_idle: Duration) -> MemoryStore {
        let held = Arc::new(AtomicU64::new(0));
        let removed = Arc::clone(&held);
        MemoryStore {
            challenges: Cache::builder()
                .expire_after(ChallengeExpiry)
                // Called once per removed entry, whatever the cause (used, superseded,
                // discarded, expired), by the thread that removed it.
                .eviction_listener(move |_, _, _| {
                    // Saturating: a count that went wrong must not wrap into "full forever".
                    let _ = removed.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        Some(n.saturating_sub(1))
                    });
                })
                .build(),
            phones: Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(EvictionPolicy::lru())
                .time_to_idle(phone_idle)
                .build(),
            held,
            capacity,
            metrics: StoreMetrics::detached(),
        }
    }

    /// The same store, recording into `metrics` (the gateway's registry).
    pub fn with_metrics(mut self, metrics: StoreMetrics) -> MemoryStore {
        self.metrics = metrics;
        self
    }

    /// By reference, so the number is cloned into the cache only when its state is created.
    fn phone(&self, phone: &PhoneNumber) -> Arc<Mutex<PhoneState>> {
        self.phones.get_with_by_ref(phone, Default::default)
    }

    /// Takes a place for one more challenge, or says the store is full.
    fn reserve(&self) -> bool {
        let take = || {
            self.held
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < self.capacity).then_some(n + 1)
                })
                .is_ok()
        };
        if take() {
            return true;
        }
        // Expired challenges leave the count when moka collects them, which it does lazily:
        // collect now, on this slow path only, then look again.
        self.challenges.run_pending_tasks();
        take()
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
        client: ClientTag,
        quotas: SendQuotas,
        now_ms: u64,
    ) -> Result<(), InsertError> {
        let phone = self.phone(&challenge.phone);
        let mut p = lock(&phone);
        let per_client_ms = millis(quotas.per_client.window);
        let all_clients_ms = millis(quotas.all_clients.window);
        let within = |s: &Send, window_ms: u64| now_ms.saturating_sub(s.at_ms) < window_ms;
        let horizon = per_client_ms.max(all_clients_ms);
        p.sends
            .retain(|s| s.stage != Stage::Settled || within(s, horizon));
        let mine = p
            .sends
            .iter()
            .filter(|s| s.client == client && within(s, per_client_ms))
            .count();
        if mine >= quotas.per_client.max as usize {
            return Err(InsertError::QuotaExceeded);
        }
        let all = p.sends.iter().filter(|s| within(s, all_clients_ms)).count();
        if all >= quotas.all_clients.max as usize {
            return Err(InsertError::NumberCapExceeded);
        }
        if !self.reserve() {
            return Err(StoreError::Full.into());
        }
        if p.sends.is_empty() {
            // Most numbers see one send per window: room for exactly one, not the default four.
            p.sends.reserve_exact(1);
        }
        p.sends.push(Send {
            at_ms: now_ms,
            client,
            id: challenge.id,
            stage: Stage::Pending,
        });
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

    async fn activate(
        &self,
        id: ChallengeId,
        client: ClientTag,
        phone: &PhoneNumber,
        _now_ms: u64,
    ) -> Result<(), StoreError> {
        let state = self.phone(phone);
        let mut p = lock(&state);
        for s in p.sends.iter_mut() {
            if s.client != client {
                continue;
            }
            if s.id == id {
                s.stage = Stage::Current;
            } else if s.stage == Stage::Current {
                self.challenges.invalidate(&s.id);
                s.stage = Stage::Settled;
            }
        }
        if !p.sends.iter().any(|s| s.id == id && s.client == client) {
            // The number's state was evicted while the SMS was on its way: keep the challenge
            // findable for the next superseding; at time 0 no window counts it again.
            p.sends.push(Send {
                at_ms: 0,
                client,
                id,
                stage: Stage::Current,
            });
        }
        Ok(())
    }

    async fn discard(
        &self,
        id: ChallengeId,
        client: ClientTag,
        phone: &PhoneNumber,
        how: Discard,
        _now_ms: u64,
    ) -> Result<(), StoreError> {
        self.challenges.invalidate(&id);
        let state = self.phone(phone);
        let mut p = lock(&state);
        let this = |s: &Send| s.id == id && s.client == client;
        match how {
            Discard::Refund => p.sends.retain(|s| !this(s)),
            Discard::KeepCounted => {
                for s in p.sends.iter_mut().filter(|s| this(s)) {
                    s.stage = Stage::Settled;
                }
            }
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::SendQuota;

    #[tokio::test]
    async fn memory_store_satisfies_the_store_contract() {
        crate::store::contract::run(|| MemoryStore::new(10_000, Duration::from_secs(600))).await;
        crate::store::contract::run_bounded(|capacity| {
            MemoryStore::new(capacity, Duration::from_secs(600))
        })
        .await;
    }

    /// The bug this store's counting replaces: at capacity moka's TinyLFU refused fresh
    /// entries, so an acknowledged code could be missing. Far past capacity, with places freed
    /// along the way, every insert that answered Ok must still be there.
    #[tokio::test]
    async fn every_admitted_challenge_is_held_far_past_capacity() {
        let capacity = 1000;
        let s = MemoryStore::new(capacity, Duration::from_secs(600));
        let quotas = SendQuotas {
            per_client: SendQuota {
                max: 5,
                window: Duration::from_secs(600),
            },
            all_clients: SendQuota {
                max: 10,
                window: Duration::from_secs(600),
            },
        };
        let client = ClientTag::of("app");
        let mut admitted = Vec::new();
        let mut refused = 0;
        for i in 0..5000u32 {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&i.to_be_bytes());
            let id = ChallengeId::from_bytes(bytes);
            let challenge = Challenge {
                id,
                phone: PhoneNumber::parse(&format!("+3460{i:07}")).unwrap(),
                code_hash: [1; 32],
                expires_at_ms: 60_000,
                failed_attempts: 0,
            };
            // Every tenth round a code is used first, so admission and removal interleave.
            if i % 10 == 9 {
                if let Some(used) = admitted.pop() {
                    let o = s.attempt(used, [1; 32], 1, 3).await.unwrap();
                    assert_eq!(o, AttemptOutcome::Valid);
                }
            }
            match s.insert_pending(challenge, client, quotas, 0).await {
                Ok(()) => admitted.push(id),
                Err(InsertError::Store(StoreError::Full)) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(refused > 0, "the bound was never reached");
        assert_eq!(admitted.len() as u64, capacity);
        for id in admitted {
            assert_eq!(
                s.attempt(id, [1; 32], 2, 3).await.unwrap(),
                AttemptOutcome::Valid,
                "{id:?} was acknowledged but is gone"
            );
        }
    }
}
