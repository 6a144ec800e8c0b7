//! Where live challenges and per-number send history live, behind a narrow trait of atomic
//! domain operations (no generic get/set, so no caller can build a check-then-act race).
//! Backends form an enum chosen at start-up: `memory` (moka, the default) and `redis` (one
//! server or a Cluster, shared by replicas).
//!
//! Superseding and the CAMARA max-codes rule are scoped to one (client, number); an operator
//! cap counts every client's sends to the number. Each operation below is one atomic step over
//! that state, so the Redis backend mirrors it with one Lua script over keys that share the
//! hash tag of the number's `domain::StoreBucket` (the key layout is in `redis`).

mod memory;
pub mod redis;

use std::future::Future;
use std::time::{Duration, Instant};

pub use self::redis::{
    QuotaCounter, QuotaPeriod, RedisSettings, RedisStore, RedisTarget, RedisTls,
};
pub use memory::MemoryStore;

use crate::domain::{AttemptOutcome, Challenge, ChallengeId, ClientTag, CodeHash, PhoneNumber};
use crate::metrics::StoreMetrics;

/// A backend failure (never a business outcome).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or answered with an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store holds as many live challenges as it may: a new one is refused rather than
    /// admitted at the cost of another (or silently dropped), so every challenge the API
    /// acknowledged stays validatable.
    #[error("store full: no room for another live challenge")]
    Full,
}

/// Why a new challenge was not stored.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// This client already sent the number `per_client.max` codes within that window.
    #[error("this client's send quota for this number is exhausted")]
    QuotaExceeded,
    /// The number already received `all_clients.max` codes, from all clients together, within
    /// that window.
    #[error("the number's send cap across all clients is reached")]
    NumberCapExceeded,
    /// Backend failure, or the store is full.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One send limit: at most `max` sends within a sliding `window`.
#[derive(Debug, Clone, Copy)]
pub struct SendQuota {
    /// Codes allowed within `window`.
    pub max: u32,
    /// Sliding window.
    pub window: Duration,
}

/// The limits [`ChallengeStore::insert_pending`] applies; a send counts against both or
/// neither.
#[derive(Debug, Clone, Copy)]
pub struct SendQuotas {
    /// Sends by one client to one number (the CAMARA max-codes rule).
    pub per_client: SendQuota,
    /// Sends by all clients together to one number (the operator's anti-bombing cap).
    pub all_clients: SendQuota,
}

/// What [`ChallengeStore::discard`] does with the discarded send's place in the quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// The SMS was definitely not taken: the send stops counting, per client and across
    /// clients.
    Refund,
    /// The SMS may still arrive: the send keeps counting against both limits.
    KeepCounted,
}

/// The atomic operations the OTP rules need. `client` and `phone` name the (client, number)
/// state an operation touches; they are always the ones the challenge was inserted with.
pub trait ChallengeStore: Send + Sync {
    /// Counts the send against both quotas and stores the challenge, all or nothing. The
    /// challenge can be validated at once but does not yet supersede older ones. A store at
    /// its capacity answers [`StoreError::Full`] and counts nothing.
    fn insert_pending(
        &self,
        challenge: Challenge,
        client: ClientTag,
        quotas: SendQuotas,
        now_ms: u64,
    ) -> impl Future<Output = Result<(), InsertError>> + Send;

    /// Called once the SMSC accepted the SMS: this challenge becomes the client's only live
    /// one for the number, and that client's earlier challenge for the number is removed.
    /// Other clients' challenges for the number are untouched.
    fn activate(
        &self,
        id: ChallengeId,
        client: ClientTag,
        phone: &PhoneNumber,
        now_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Called when the SMS was not confirmed: removes the challenge (the client never got its
    /// id), and refunds its send or keeps it counted as `how` says.
    fn discard(
        &self,
        id: ChallengeId,
        client: ClientTag,
        phone: &PhoneNumber,
        how: Discard,
        now_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Applies [`Challenge::attempt`] atomically; a valid or expired challenge is removed.
    /// An id with no live challenge answers [`AttemptOutcome::Expired`].
    fn attempt(
        &self,
        id: ChallengeId,
        presented: CodeHash,
        now_ms: u64,
        max_attempts: u32,
    ) -> impl Future<Output = Result<AttemptOutcome, StoreError>> + Send;

    /// Cheap liveness probe for readiness.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The configured backend.
#[derive(Clone)]
pub enum Store {
    /// In-process moka caches.
    Memory(MemoryStore),
    /// Redis or Redis Cluster, shared by replicas.
    Redis(RedisStore),
}

impl Store {
    fn metrics(&self) -> &StoreMetrics {
        match self {
            Store::Memory(s) => &s.metrics,
            Store::Redis(s) => &s.metrics,
        }
    }

    /// Runs one backend call of `op` and records its duration and, when it failed, its kind:
    /// the one place store metrics are recorded, so both backends report alike.
    async fn metered<T, E: ErrorKind>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = Instant::now();
        let result = call.await;
        let kind = result.as_ref().err().and_then(ErrorKind::kind);
        self.metrics().record(op, started.elapsed(), kind);
        result
    }
}

/// The `kind` label of a failed call; `None` for business outcomes (quotas).
trait ErrorKind {
    fn kind(&self) -> Option<&'static str>;
}

impl ErrorKind for StoreError {
    fn kind(&self) -> Option<&'static str> {
        Some(match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Full => "full",
        })
    }
}

impl ErrorKind for InsertError {
    fn kind(&self) -> Option<&'static str> {
        match self {
            InsertError::Store(e) => e.kind(),
            InsertError::QuotaExceeded | InsertError::NumberCapExceeded => None,
        }
    }
}

impl ChallengeStore for Store {
    async fn insert_pending(
        &self,
        challenge: Challenge,
        client: ClientTag,
        quotas: SendQuotas,
        now_ms: u64,
    ) -> Result<(), InsertError> {
        self.metered("insert", async {
            match self {
                Store::Memory(s) => s.insert_pending(challenge, client, quotas, now_ms).await,
                Store::Redis(s) => s.insert_pending(challenge, client, quotas, now_ms).await,
            }
        })
        .await
    }

    async fn activate(
        &self,
        id: ChallengeId,
        client: ClientTag,
        phone: &PhoneNumber,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.metered("activate", async {
            match self {
                Store::Memory(s) => s.activate(id, client, phone, now_ms).await,
                Store::Redis(s) => s.activate(id, client, phone, now_ms).await,
            }
        })
        .await
    }

    async fn discard(
        &self,
        id: ChallengeId,
        client: ClientTag,
        phone: &PhoneNumber,
        how: Discard,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.metered("discard", async {
            match self {
                Store::Memory(s) => s.discard(id, client, phone, how, now_ms).await,
                Store::Redis(s) => s.discard(id, client, phone, how, now_ms).await,
            }
        })
        .await
    }

    async fn attempt(
        &self,
        id: ChallengeId,
        presented: CodeHash,
        now_ms: u64,
        max_attempts: u32,
    ) -> Result<AttemptOutcome, StoreError> {
        self.metered("attempt", async {
            match self {
                Store::Memory(s) => s.attempt(id, presented, now_ms, max_attempts).await,
                Store::Redis(s) => s.attempt(id, presented, now_ms, max_attempts).await,
            }
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.metered("ping", async {
            match self {
                Store::Memory(s) => s.ping().await,
                Store::Redis(s) => s.ping().await,
            }
        })
        .await
    }
}

/// The behaviour every backend must show; run against each backend by its own tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod contract {
    use super::*;

    const MIN: u64 = 60_000;

    /// Test ids share one store bucket, as every id minted for one number does, so a sharded
    /// backend keeps all of a test's state in one slot.
    fn id(n: u8) -> ChallengeId {
        ChallengeId::from_bytes(crate::domain::with_bucket_bits([n; 16], 0x0123))
    }

    fn number(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s).unwrap()
    }

    fn challenge(n: u8, phone: &str, expires_at_ms: u64) -> Challenge {
        Challenge {
            id: id(n),
            phone: number(phone),
            code_hash: [n; 32],
            expires_at_ms,
            failed_attempts: 0,
        }
    }

    /// Two clients; `A` is the one the single-client cases use.
    const A: ClientTag = ClientTag::from_bytes([0xa; 8]);
    const B: ClientTag = ClientTag::from_bytes([0xb; 8]);

    /// `max` per client and a cap across clients that never binds first, both in 10 minutes.
    fn quota(max: u32) -> SendQuotas {
        quotas(max, 10 * MIN, 100, 10 * MIN)
    }

    fn quotas(max: u32, window_ms: u64, cap: u32, cap_window_ms: u64) -> SendQuotas {
        SendQuotas {
            per_client: SendQuota {
                max,
                window: Duration::from_millis(window_ms),
            },
            all_clients: SendQuota {
                max: cap,
                window: Duration::from_millis(cap_window_ms),
            },
        }
    }

    /// Runs every contract check against a fresh store made by `make`.
    pub async fn run<S: ChallengeStore, F: Fn() -> S>(make: F) {
        valid_code_is_single_use(make()).await;
        wrong_codes_lock_the_challenge(make()).await;
        expired_challenges_answer_expired(make()).await;
        activation_supersedes_earlier_challenges(make()).await;
        quota_limits_sends_per_window_and_discard_refunds(make()).await;
        concurrent_right_answers_succeed_once(make()).await;
        superseding_is_per_client(make()).await;
        quotas_are_per_client_and_capped_across_clients(make()).await;
        unknown_outcomes_stay_counted_and_refunds_free_both_limits(make()).await;
        make().ping().await.unwrap();
    }

    /// Runs the checks of a bound on live challenges against a store made by `make(capacity)`,
    /// for every backend that has such a bound.
    pub async fn run_bounded<S: ChallengeStore, F: Fn(u64) -> S>(make: F) {
        a_full_store_refuses_new_challenges_and_keeps_every_admitted_one(make(3)).await;
    }

    async fn outcome<S: ChallengeStore>(s: &S, n: u8, now_ms: u64) -> AttemptOutcome {
        s.attempt(id(n), [n; 32], now_ms, 3).await.unwrap()
    }

    async fn superseding_is_per_client<S: ChallengeStore>(s: S) {
        let phone = "+3460040";
        let n = number(phone);
        s.insert_pending(challenge(40, phone, 5 * MIN), A, quota(5), 0)
            .await
            .unwrap();
        s.activate(id(40), A, &n, 0).await.unwrap();
        for (i, at) in [(41u8, 1), (42, 2)] {
            s.insert_pending(challenge(i, phone, 5 * MIN), B, quota(5), at)
                .await
                .unwrap();
            s.activate(id(i), B, &n, at).await.unwrap();
        }
        // B's newer code superseded B's older one, and left A's alone.
        assert_eq!(outcome(&s, 41, 3).await, AttemptOutcome::Expired);
        assert_eq!(outcome(&s, 40, 3).await, AttemptOutcome::Valid);
        assert_eq!(outcome(&s, 42, 3).await, AttemptOutcome::Valid);
    }

    async fn quotas_are_per_client_and_capped_across_clients<S: ChallengeStore>(s: S) {
        let phone = "+3460050";
        // 2 per client in 1 minute, 3 across clients in 10 minutes.
        let q = quotas(2, MIN, 3, 10 * MIN);
        let insert =
            |n: u8, client, at| s.insert_pending(challenge(n, phone, 20 * MIN), client, q, at);
        insert(50, B, 0).await.unwrap();
        insert(51, B, 1).await.unwrap();
        assert!(matches!(
            insert(52, B, 2).await,
            Err(InsertError::QuotaExceeded)
        ));
        // B's sends did not use up A's budget for the number...
        insert(53, A, 3).await.unwrap();
        // ...but the number has had its three.
        assert!(matches!(
            insert(54, A, 4).await,
            Err(InsertError::NumberCapExceeded)
        ));
        // Past the per-client window, inside the cap's: still refused.
        assert!(matches!(
            insert(55, B, MIN + 5).await,
            Err(InsertError::NumberCapExceeded)
        ));
        // A refused send stores nothing and counts nothing.
        for refused in [52, 54, 55] {
            assert_eq!(outcome(&s, refused, MIN + 6).await, AttemptOutcome::Expired);
        }
        // The cap's window slides too: at 10 minutes the send at 0 has left it.
        insert(56, B, 10 * MIN).await.unwrap();
        assert!(matches!(
            insert(57, A, 10 * MIN).await,
            Err(InsertError::NumberCapExceeded)
        ));
        // Another number has its own cap.
        s.insert_pending(challenge(58, "+3460051", 20 * MIN), A, q, 10 * MIN + 2)
            .await
            .unwrap();
    }

    async fn unknown_outcomes_stay_counted_and_refunds_free_both_limits<S: ChallengeStore>(s: S) {
        let phone = "+3460060";
        let n = number(phone);
        let q = quotas(3, 10 * MIN, 4, 10 * MIN);
        let insert =
            |i: u8, client, at| s.insert_pending(challenge(i, phone, 5 * MIN), client, q, at);
        insert(60, A, 0).await.unwrap();
        s.activate(id(60), A, &n, 0).await.unwrap();
        // The SMS of 61 may have arrived: its challenge goes, its send keeps counting.
        insert(61, A, 1).await.unwrap();
        s.discard(id(61), A, &n, Discard::KeepCounted, 1)
            .await
            .unwrap();
        assert_eq!(outcome(&s, 61, 2).await, AttemptOutcome::Expired);
        insert(62, A, 2).await.unwrap();
        assert!(matches!(
            insert(63, A, 3).await,
            Err(InsertError::QuotaExceeded)
        ));
        // It counts across clients too: A's three and B's one fill the cap of four.
        insert(64, B, 4).await.unwrap();
        assert!(matches!(
            insert(65, B, 5).await,
            Err(InsertError::NumberCapExceeded)
        ));
        // A refund frees the send's place in both limits.
        s.discard(id(62), A, &n, Discard::Refund, 5).await.unwrap();
        assert_eq!(outcome(&s, 62, 6).await, AttemptOutcome::Expired);
        insert(66, A, 6).await.unwrap();
        assert!(matches!(
            insert(67, B, 7).await,
            Err(InsertError::NumberCapExceeded)
        ));
        // Neither kind of discard touched the code A activated first.
        assert_eq!(outcome(&s, 60, 8).await, AttemptOutcome::Valid);
    }

    async fn a_full_store_refuses_new_challenges_and_keeps_every_admitted_one<S: ChallengeStore>(
        s: S,
    ) {
        let phone = |i: u8| format!("+34600{i:03}");
        let s = &s;
        let insert = |i: u8, max: u32, at| async move {
            s.insert_pending(challenge(i, &phone(i), 5 * MIN), A, quota(max), at)
                .await
        };
        for i in 80..83 {
            insert(i, 5, u64::from(i)).await.unwrap();
            s.activate(id(i), A, &number(&phone(i)), u64::from(i))
                .await
                .unwrap();
        }
        assert!(matches!(
            insert(83, 1, 90).await,
            Err(InsertError::Store(StoreError::Full))
        ));
        assert_eq!(outcome(s, 83, 91).await, AttemptOutcome::Expired);
        // Every admitted challenge is still there.
        for i in 80..83 {
            assert_eq!(outcome(s, i, 92).await, AttemptOutcome::Valid);
        }
        // Used challenges free their places, and the refused send counted nothing (max 1).
        insert(83, 1, 93).await.unwrap();
        s.activate(id(83), A, &number(&phone(83)), 93)
            .await
            .unwrap();
        // A superseded challenge frees its place, and so does a discarded one.
        s.insert_pending(challenge(84, &phone(83), 5 * MIN), A, quota(5), 94)
            .await
            .unwrap();
        s.activate(id(84), A, &number(&phone(83)), 94)
            .await
            .unwrap();
        insert(85, 5, 95).await.unwrap();
        insert(86, 5, 96).await.unwrap();
        assert!(matches!(
            insert(87, 5, 97).await,
            Err(InsertError::Store(StoreError::Full))
        ));
        s.discard(id(86), A, &number(&phone(86)), Discard::KeepCounted, 96)
            .await
            .unwrap();
        insert(87, 5, 98).await.unwrap();
        for i in [84, 85, 87] {
            assert_eq!(outcome(s, i, 99).await, AttemptOutcome::Valid);
        }
    }

    async fn valid_code_is_single_use<S: ChallengeStore>(s: S) {
        s.insert_pending(challenge(1, "+3460001", 5 * MIN), A, quota(5), 0)
            .await
            .unwrap();
        s.activate(id(1), A, &number("+3460001"), 0).await.unwrap();
        assert_eq!(
            s.attempt(id(1), [1; 32], 1, 3).await.unwrap(),
            AttemptOutcome::Valid
        );
        assert_eq!(
            s.attempt(id(1), [1; 32], 2, 3).await.unwrap(),
            AttemptOutcome::Expired
        );
        assert_eq!(
            s.attempt(id(9), [9; 32], 2, 3).await.unwrap(),
            AttemptOutcome::Expired
        );
    }

    async fn wrong_codes_lock_the_challenge<S: ChallengeStore>(s: S) {
        s.insert_pending(challenge(2, "+3460002", 5 * MIN), A, quota(5), 0)
            .await
            .unwrap();
        assert_eq!(
            s.attempt(id(2), [0; 32], 1, 2).await.unwrap(),
            AttemptOutcome::Invalid
        );
        assert_eq!(
            s.attempt(id(2), [0; 32], 2, 2).await.unwrap(),
            AttemptOutcome::Locked
        );
        assert_eq!(
            s.attempt(id(2), [2; 32], 3, 2).await.unwrap(),
            AttemptOutcome::Locked
        );
    }

    async fn expired_challenges_answer_expired<S: ChallengeStore>(s: S) {
        s.insert_pending(challenge(3, "+3460003", 1000), A, quota(5), 0)
            .await
            .unwrap();
        assert_eq!(
            s.attempt(id(3), [3; 32], 1000, 3).await.unwrap(),
            AttemptOutcome::Expired
        );
        assert_eq!(
            s.attempt(id(3), [3; 32], 10, 3).await.unwrap(),
            AttemptOutcome::Expired
        );
    }

    async fn activation_supersedes_earlier_challenges<S: ChallengeStore>(s: S) {
        s.insert_pending(challenge(4, "+3460004", 5 * MIN), A, quota(5), 0)
            .await
            .unwrap();
        s.activate(id(4), A, &number("+3460004"), 0).await.unwrap();
        s.insert_pending(challenge(5, "+3460004", 5 * MIN), A, quota(5), 1)
            .await
            .unwrap();
        s.activate(id(5), A, &number("+3460004"), 1).await.unwrap();
        assert_eq!(
            s.attempt(id(4), [4; 32], 2, 3).await.unwrap(),
            AttemptOutcome::Expired
        );
        assert_eq!(
            s.attempt(id(5), [5; 32], 2, 3).await.unwrap(),
            AttemptOutcome::Valid
        );
    }

    async fn quota_limits_sends_per_window_and_discard_refunds<S: ChallengeStore>(s: S) {
        let phone = "+3460006";
        let phone_number = number(phone);
        for i in 0..3u8 {
            s.insert_pending(challenge(10 + i, phone, 5 * MIN), A, quota(3), u64::from(i))
                .await
                .unwrap();
        }
        let over = s
            .insert_pending(challenge(20, phone, 5 * MIN), A, quota(3), 3)
            .await;
        assert!(matches!(over, Err(InsertError::QuotaExceeded)));
        s.discard(id(12), A, &phone_number, Discard::Refund, 3)
            .await
            .unwrap();
        assert_eq!(
            s.attempt(id(12), [12; 32], 4, 3).await.unwrap(),
            AttemptOutcome::Expired
        );
        s.insert_pending(challenge(21, phone, 5 * MIN), A, quota(3), 4)
            .await
            .unwrap();
        // Ten minutes later the window has slid past the first sends.
        s.insert_pending(challenge(22, phone, 20 * MIN), A, quota(3), 10 * MIN + 5)
            .await
            .unwrap();
        // Another number has its own budget.
        s.insert_pending(challenge(23, "+3460007", 5 * MIN), A, quota(3), 5)
            .await
            .unwrap();
    }

    async fn concurrent_right_answers_succeed_once<S: ChallengeStore>(s: S) {
        s.insert_pending(challenge(30, "+3460030", 5 * MIN), A, quota(5), 0)
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            s.attempt(id(30), [30; 32], 1, 3),
            s.attempt(id(30), [30; 32], 1, 3)
        );
        let valid = [a.unwrap(), b.unwrap()]
            .iter()
            .filter(|o| **o == AttemptOutcome::Valid)
            .count();
        assert_eq!(valid, 1);
    }
}
