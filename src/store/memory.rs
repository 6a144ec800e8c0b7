//! The in-process backend: two sharded hash maps, one of challenges by id and one of per-number
//! send history by number, each shard under its own mutex.
//!
//! Not moka. A challenge must stay until it is used, superseded, discarded or past its
//! deadline, so the store needs exact removal and a deadline per entry, none of a cache's
//! admission or frequency tracking. Measured on the 2-core benchmark machine (docs/PERFORMANCE.md):
//! moka's concurrent map cost validate-code about a fifth of its CPU (invalidation with its
//! rehash) and about 1.9 KB of RSS per live code, and its table growth stalled requests for
//! hundreds of milliseconds with a million live codes. Here a live code costs one 32-byte slot
//! and usually one 48-byte number record, and a table grows one shard (1/64 of the codes) at a
//! time.
//!
//! Memory is reclaimed by sweeping: each write that lands in a shard sweeps that shard when
//! [`SWEEP_EVERY`] has passed since its last sweep, so the cost is spread over the traffic and
//! no background task is needed. The deadlines that decide *correctness* come from the
//! caller's clock (`now_ms`), as with every backend; sweeping uses this process's monotonic
//! clock and only frees what the caller's deadlines no longer need (a challenge after its
//! lifetime, a number after `phone_idle` without activity).
//!
//! Capacity: an exact count of held challenges is the bound, and
//! [`ChallengeStore::insert_pending`] answers [`StoreError::Full`] at it, before any SMS is sent,
//! so a code is never acknowledged and then dropped. Numbers are bounded too (as many as
//! challenges); past that bound a shard drops its least recently active numbers, which loses
//! only their send history, never a live challenge, and never the send being counted.
//!
//! Hashing: ids are looked up only after their MAC verified (the store never sees a forged
//! one), so their bytes are uniform and a fixed fast hash serves. Numbers are chosen by
//! clients, so their map uses the standard keyed SipHash against collision flooding.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::{ChallengeStore, Discard, InsertError, SendQuotas, StoreError};
use crate::domain::{
    attempt_rules, short_code_hash, AttemptOutcome, Challenge, ChallengeId, ClientTag, CodeHash,
    PhoneNumber, ShortCodeHash,
};
use crate::metrics::StoreMetrics;
use crate::sync::lock;

/// Shards per map: enough that two workers rarely meet on one lock and that one shard's
/// rehash moves little, few enough that sweeping each once per [`SWEEP_EVERY`] costs little.
const SHARDS: usize = 64;

/// How often a shard is swept at most (monotonic seconds).
const SWEEP_EVERY: u32 = 1;

/// One live challenge: 32 bytes, no heap. The number is not kept: validation needs only the
/// hash, the deadline and the count, and superseding goes through the number's record.
struct Slot {
    code_hash: ShortCodeHash,
    /// The caller's clock: the code is refused from this millisecond on.
    expires_at_ms: u64,
    /// This process's monotonic clock: the slot may be freed from this second on.
    sweep_at: u32,
    failed_attempts: u32,
}

// Memory per live code is these two records plus the maps' slack: keep them from growing.
const _: () = assert!(std::mem::size_of::<Slot>() == 32);
const _: () = assert!(std::mem::size_of::<PhoneState>() <= 48);

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

/// One send to the number: 32 bytes, no heap (the stage rides in the time's top bits).
#[derive(Clone, Copy)]
struct Send {
    /// Milliseconds of the send (caller's clock) in the low 62 bits, the stage in the top 2.
    at_and_stage: u64,
    client: ClientTag,
    id: ChallengeId,
}

const AT_BITS: u32 = 62;
const AT_MASK: u64 = (1 << AT_BITS) - 1;

impl Send {
    fn new(at_ms: u64, client: ClientTag, id: ChallengeId, stage: Stage) -> Send {
        let mut s = Send {
            at_and_stage: at_ms.min(AT_MASK),
            client,
            id,
        };
        s.set_stage(stage);
        s
    }

    fn at_ms(&self) -> u64 {
        self.at_and_stage & AT_MASK
    }

    fn stage(&self) -> Stage {
        match self.at_and_stage >> AT_BITS {
            0 => Stage::Pending,
            1 => Stage::Current,
            _ => Stage::Settled,
        }
    }

    fn set_stage(&mut self, stage: Stage) {
        let bits = match stage {
            Stage::Pending => 0,
            Stage::Current => 1,
            Stage::Settled => 2,
        };
        self.at_and_stage = self.at_ms() | (bits << AT_BITS);
    }
}

/// One number's sends, every client's (filtered by tag for the per-client view). Most numbers
/// see one send per window, so one is held inline: a number costs no allocation of its own.
struct PhoneState {
    /// Monotonic second of the last activity, for idling out and for the bound.
    touched: u32,
    sends: SmallVec<[Send; 1]>,
}

struct Shard<K, V, S> {
    map: HashMap<K, V, S>,
    /// Monotonic second of the next sweep.
    next_sweep: u32,
}

type Shards<K, V, S> = Box<[Mutex<Shard<K, V, S>>]>;

fn shards<K, V, S: Clone>(hasher: &S) -> Shards<K, V, S> {
    (0..SHARDS)
        .map(|_| {
            Mutex::new(Shard {
                map: HashMap::with_hasher(hasher.clone()),
                next_sweep: 0,
            })
        })
        .collect()
}

/// A fixed, fast hash for keys that are already uniform (verified id bytes).
#[derive(Clone, Default)]
struct IdHash;

impl BuildHasher for IdHash {
    type Hasher = foldhash::fast::FoldHasher<'static>;
    fn build_hasher(&self) -> Self::Hasher {
        foldhash::fast::FixedState::with_seed(0x6f74_7067_7720_6964).build_hasher()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Sharded in-process [`ChallengeStore`].
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
    /// Recorded by the [`super::Store`] dispatch, the one place every backend call passes.
    pub(super) metrics: StoreMetrics,
}

struct Inner {
    challenges: Shards<ChallengeId, Slot, IdHash>,
    phones: Shards<u64, PhoneState, RandomState>,
    phone_hash: RandomState,
    /// Challenges held, expired ones included until swept.
    held: AtomicU64,
    capacity: u64,
    /// Numbers each phone shard keeps at most.
    phones_per_shard: usize,
    phone_idle_secs: u32,
    started: Instant,
    /// Added to the monotonic clock; moved only by tests, to make sweeping observable.
    skew_secs: AtomicU32,
}

impl MemoryStore {
    /// `capacity` bounds live challenges (and the numbers whose state is kept); `phone_idle`
    /// is how long per-number state survives without activity (the longest of the send
    /// windows and the code lifetime).
    pub fn new(capacity: u64, phone_idle: Duration) -> MemoryStore {
        let phone_hash = RandomState::new();
        let per_shard = usize::try_from(capacity.div_ceil(SHARDS as u64)).unwrap_or(usize::MAX);
        MemoryStore {
            inner: Arc::new(Inner {
                challenges: shards(&IdHash),
                phones: shards(&phone_hash),
                phone_hash,
                held: AtomicU64::new(0),
                capacity,
                // A floor, so that a tiny capacity spread over 64 shards still keeps a few
                // numbers per shard.
                phones_per_shard: per_shard.max(16),
                phone_idle_secs: u32::try_from(phone_idle.as_secs().max(1)).unwrap_or(u32::MAX),
                started: Instant::now(),
                skew_secs: AtomicU32::new(0),
            }),
            metrics: StoreMetrics::detached(),
        }
    }

    /// The same store, recording into `metrics` (the gateway's registry).
    pub fn with_metrics(mut self, metrics: StoreMetrics) -> MemoryStore {
        self.metrics = metrics;
        self
    }

    /// Live challenges currently held, after sweeping what has expired (for metrics and
    /// benchmarks).
    pub fn len(&self) -> u64 {
        self.inner.sweep_all();
        self.inner.held.load(Ordering::Acquire)
    }

    /// True when no challenge is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    fn advance(&self, secs: u32) {
        self.inner.skew_secs.fetch_add(secs, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn numbers_held(&self) -> usize {
        self.inner.phones.iter().map(|s| lock(s).map.len()).sum()
    }
}

impl Inner {
    fn mono_secs(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs())
            .unwrap_or(u32::MAX)
            .saturating_add(self.skew_secs.load(Ordering::Relaxed))
    }

    fn challenge_shard(&self, id: &ChallengeId) -> &Mutex<Shard<ChallengeId, Slot, IdHash>> {
        // The last byte is MAC output: uniform, and independent of the in-shard hash.
        &self.challenges[usize::from(id.as_bytes()[15]) % SHARDS]
    }

    fn phone_shard(&self, key: u64) -> &Mutex<Shard<u64, PhoneState, RandomState>> {
        let h = self.phone_hash.hash_one(key);
        &self.phones[(h >> 58) as usize % SHARDS]
    }

    fn release(&self, n: u64) {
        if n > 0 {
            // Saturating: a count that went wrong must not wrap into "full forever".
            let _ = self
                .held
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                    Some(h.saturating_sub(n))
                });
        }
    }

    /// Removes one challenge if held; true when it was.
    fn remove(&self, id: &ChallengeId) -> bool {
        let removed = lock(self.challenge_shard(id)).map.remove(id).is_some();
        if removed {
            self.release(1);
        }
        removed
    }

    fn sweep_challenges(&self, shard: &mut Shard<ChallengeId, Slot, IdHash>, now: u32) {
        let before = shard.map.len();
        shard.map.retain(|_, s| s.sweep_at > now);
        shard.next_sweep = now.saturating_add(SWEEP_EVERY);
        self.release((before - shard.map.len()) as u64);
    }

    /// Drops idle numbers, and the least recently active ones past the bound (never `keep`,
    /// the number being written).
    fn sweep_phones(&self, shard: &mut Shard<u64, PhoneState, RandomState>, now: u32, keep: u64) {
        let idle = self.phone_idle_secs;
        shard
            .map
            .retain(|_, p| now.saturating_sub(p.touched) < idle);
        shard.next_sweep = now.saturating_add(SWEEP_EVERY);
        if shard.map.len() >= self.phones_per_shard {
            // Still over the bound: drop the least recently active eighth at once, so the
            // cost of finding them is spread over the inserts that refill the room.
            let mut ages: Vec<u32> = shard.map.values().map(|p| p.touched).collect();
            let cut = ages.len() / 8;
            let (_, oldest, _) = ages.select_nth_unstable(cut);
            let oldest = *oldest;
            shard.map.retain(|k, p| *k == keep || p.touched > oldest);
        }
    }

    fn sweep_all(&self) {
        let now = self.mono_secs();
        for shard in self.challenges.iter() {
            self.sweep_challenges(&mut lock(shard), now);
        }
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
        // Expired challenges leave the count when swept: sweep now, on this slow path only,
        // then look again.
        self.sweep_all();
        take()
    }

    /// Runs `f` on the number's state, creating it when absent.
    fn with_phone<T>(&self, phone: &PhoneNumber, f: impl FnOnce(&mut PhoneState) -> T) -> T {
        let key = phone.as_u64();
        let now = self.mono_secs();
        let mut shard = lock(self.phone_shard(key));
        let full = shard.map.len() >= self.phones_per_shard && !shard.map.contains_key(&key);
        if full || now >= shard.next_sweep {
            self.sweep_phones(&mut shard, now, key);
        }
        let state = shard.map.entry(key).or_insert_with(|| PhoneState {
            touched: now,
            sends: SmallVec::new(),
        });
        state.touched = now;
        f(state)
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
        let inner = &*self.inner;
        let per_client_ms = millis(quotas.per_client.window);
        let all_clients_ms = millis(quotas.all_clients.window);
        let within = |s: &Send, window_ms: u64| now_ms.saturating_sub(s.at_ms()) < window_ms;
        let horizon = per_client_ms.max(all_clients_ms);
        let id = challenge.id;
        inner.with_phone(&challenge.phone, |p| {
            p.sends
                .retain(|s| s.stage() != Stage::Settled || within(s, horizon));
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
            if !inner.reserve() {
                return Err(StoreError::Full.into());
            }
            p.sends.push(Send::new(now_ms, client, id, Stage::Pending));
            Ok(())
        })?;
        let keep_for = challenge
            .expires_at_ms
            .saturating_sub(now_ms)
            .div_ceil(1000);
        let now = inner.mono_secs();
        let slot = Slot {
            code_hash: short_code_hash(&challenge.code_hash),
            expires_at_ms: challenge.expires_at_ms,
            sweep_at: now.saturating_add(u32::try_from(keep_for).unwrap_or(u32::MAX)),
            failed_attempts: challenge.failed_attempts,
        };
        let mut shard = lock(inner.challenge_shard(&id));
        if now >= shard.next_sweep {
            inner.sweep_challenges(&mut shard, now);
        }
        if shard.map.insert(id, slot).is_some() {
            // The same id twice (only a test can mint that): one place, not two.
            inner.release(1);
        }
        Ok(())
    }

    async fn activate(
        &self,
        id: ChallengeId,
        client: ClientTag,
        phone: &PhoneNumber,
        _now_ms: u64,
    ) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let superseded: SmallVec<[ChallengeId; 2]> = inner.with_phone(phone, |p| {
            let mut superseded = SmallVec::new();
            let mut found = false;
            for s in p.sends.iter_mut() {
                if s.client != client {
                    continue;
                }
                if s.id == id {
                    s.set_stage(Stage::Current);
                    found = true;
                } else if s.stage() == Stage::Current {
                    superseded.push(s.id);
                    s.set_stage(Stage::Settled);
                }
            }
            if !found {
                // The number's state was dropped while the SMS was on its way: keep the
                // challenge findable for the next superseding; at time 0 no window counts it
                // again.
                p.sends.push(Send::new(0, client, id, Stage::Current));
            }
            superseded
        });
        // Outside the number's lock: the two maps are never locked together.
        for old in superseded {
            inner.remove(&old);
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
        let inner = &*self.inner;
        inner.remove(&id);
        inner.with_phone(phone, |p| {
            let this = |s: &Send| s.id == id && s.client == client;
            match how {
                Discard::Refund => p.sends.retain(|s| !this(s)),
                Discard::KeepCounted => {
                    for s in p.sends.iter_mut().filter(|s| this(s)) {
                        s.set_stage(Stage::Settled);
                    }
                }
            }
        });
        Ok(())
    }

    async fn attempt(
        &self,
        id: ChallengeId,
        presented: CodeHash,
        now_ms: u64,
        max_attempts: u32,
    ) -> Result<AttemptOutcome, StoreError> {
        let inner = &*self.inner;
        let outcome = {
            let mut shard = lock(inner.challenge_shard(&id));
            let Some(slot) = shard.map.get_mut(&id) else {
                return Ok(AttemptOutcome::Expired);
            };
            let outcome = attempt_rules(
                &slot.code_hash,
                slot.expires_at_ms,
                &mut slot.failed_attempts,
                &short_code_hash(&presented),
                now_ms,
                max_attempts,
            );
            if matches!(outcome, AttemptOutcome::Valid | AttemptOutcome::Expired) {
                shard.map.remove(&id);
            }
            outcome
        };
        if matches!(outcome, AttemptOutcome::Valid | AttemptOutcome::Expired) {
            inner.release(1);
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

    fn send_to(i: u32, expires_at_ms: u64) -> Challenge {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        bytes[15] = i as u8;
        Challenge {
            id: ChallengeId::from_bytes(bytes),
            phone: PhoneNumber::parse(&format!("+3460{i:07}")).unwrap(),
            code_hash: [1; 32],
            expires_at_ms,
            failed_attempts: 0,
        }
    }

    fn one_per_window() -> SendQuotas {
        let q = SendQuota {
            max: 1,
            window: Duration::from_secs(3600),
        };
        SendQuotas {
            per_client: q,
            all_clients: q,
        }
    }

    #[tokio::test]
    async fn expired_challenges_are_swept_and_free_their_places() {
        let s = MemoryStore::new(2, Duration::from_secs(600));
        let client = ClientTag::of("app");
        for i in 0..2 {
            s.insert_pending(send_to(i, 1_000), client, one_per_window(), 0)
                .await
                .unwrap();
        }
        assert!(matches!(
            s.insert_pending(send_to(2, 1_000), client, one_per_window(), 0)
                .await,
            Err(InsertError::Store(StoreError::Full))
        ));
        assert_eq!(s.len(), 2, "not yet past their lifetime: nothing swept");
        s.advance(2);
        assert_eq!(s.len(), 0);
        s.insert_pending(send_to(2, 61_000), client, one_per_window(), 60_000)
            .await
            .unwrap();
        assert_eq!(s.len(), 1);
    }

    #[tokio::test]
    async fn a_number_idle_past_its_keep_time_is_forgotten_and_an_active_one_is_not() {
        let s = MemoryStore::new(100, Duration::from_secs(60));
        let (a, b) = (ClientTag::of("a"), ClientTag::of("b"));
        let c = send_to(1, 3_600_000);
        s.insert_pending(c.clone(), a, one_per_window(), 0)
            .await
            .unwrap();
        let again = |n: u32, client| {
            let mut c = send_to(n, 3_600_000);
            c.phone = PhoneNumber::parse("+34600000001").unwrap();
            s.insert_pending(c, client, one_per_window(), 10)
        };
        // The cap across clients (one per window) holds while the number is active.
        s.advance(59);
        assert!(matches!(
            again(2, b).await,
            Err(InsertError::NumberCapExceeded)
        ));
        // Activity (the refused send) restarted its idle time; 59 s later it is still there.
        s.advance(59);
        assert!(matches!(
            again(3, b).await,
            Err(InsertError::NumberCapExceeded)
        ));
        // 61 s without activity: its history is gone with it (phone_idle covers every window
        // and the code lifetime, so nothing the rules need was lost).
        s.advance(61);
        again(4, b).await.unwrap();
    }

    #[tokio::test]
    async fn numbers_are_bounded_and_the_number_being_written_keeps_its_history() {
        // Capacity 64: 16 numbers per shard (the floor), 1,024 in all.
        let s = MemoryStore::new(64, Duration::from_secs(3600));
        let client = ClientTag::of("app");
        let kept = send_to(0, 3_600_000);
        s.insert_pending(kept.clone(), client, one_per_window(), 0)
            .await
            .unwrap();
        for i in 1..5_000u32 {
            let c = send_to(i, 3_600_000);
            s.insert_pending(c.clone(), client, one_per_window(), 0)
                .await
                .unwrap();
            // Used at once, so the challenge bound is never the limit; the number's record
            // stays (its send still counts in the window).
            assert_eq!(
                s.attempt(c.id, [1; 32], 1, 3).await.unwrap(),
                AttemptOutcome::Valid
            );
            if i % 100 == 0 {
                // The first number stays active, so it is never the least recently active.
                s.advance(1);
                let mut again = send_to(100_000 + i, 3_600_000);
                again.phone = kept.phone.clone();
                assert!(matches!(
                    s.insert_pending(again, client, one_per_window(), 1).await,
                    Err(InsertError::QuotaExceeded)
                ));
            }
        }
        let held = s.numbers_held();
        assert!(held <= 64 * 16, "{held} numbers held");
        assert!(
            held > 64 * 8,
            "{held}: far more dropped than the bound needs"
        );
    }
}
