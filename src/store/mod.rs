//! Where live challenges and per-number send history live, behind a narrow trait of atomic
//! domain operations (no generic get/set, so no caller can build a check-then-act race).
//! Backends form an enum chosen at start-up; `memory` (moka) is the default.

mod memory;

use std::future::Future;
use std::time::Duration;

pub use memory::MemoryStore;

use crate::domain::{AttemptOutcome, Challenge, ChallengeId, CodeHash, PhoneNumber};

/// A backend failure (never a business outcome).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or answered with an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Why a new challenge was not stored.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// The number already received `max` codes within the window.
    #[error("send quota for this number exhausted")]
    QuotaExceeded,
    /// Backend failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The per-number send limit applied by [`ChallengeStore::insert_pending`].
#[derive(Debug, Clone, Copy)]
pub struct SendQuota {
    /// Codes allowed within `window`.
    pub max: u32,
    /// Sliding window.
    pub window: Duration,
}

/// The atomic operations the OTP rules need.
pub trait ChallengeStore: Send + Sync {
    /// Counts the send against the number's quota and stores the challenge, both or neither.
    /// The challenge can be validated at once but does not yet supersede older ones.
    fn insert_pending(
        &self,
        challenge: Challenge,
        quota: SendQuota,
        now_ms: u64,
    ) -> impl Future<Output = Result<(), InsertError>> + Send;

    /// Called once the SMSC accepted the SMS: this challenge becomes the number's only live
    /// one, and every earlier challenge for the number is removed.
    fn activate(
        &self,
        id: ChallengeId,
        phone: &PhoneNumber,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Called when the SMS was not accepted: removes the challenge and refunds the quota.
    fn discard(
        &self,
        id: ChallengeId,
        phone: &PhoneNumber,
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
}

impl ChallengeStore for Store {
    async fn insert_pending(
        &self,
        challenge: Challenge,
        quota: SendQuota,
        now_ms: u64,
    ) -> Result<(), InsertError> {
        match self {
            Store::Memory(s) => s.insert_pending(challenge, quota, now_ms).await,
        }
    }

    async fn activate(&self, id: ChallengeId, phone: &PhoneNumber) -> Result<(), StoreError> {
        match self {
            Store::Memory(s) => s.activate(id, phone).await,
        }
    }

    async fn discard(&self, id: ChallengeId, phone: &PhoneNumber) -> Result<(), StoreError> {
        match self {
            Store::Memory(s) => s.discard(id, phone).await,
        }
    }

    async fn attempt(
        &self,
        id: ChallengeId,
        presented: CodeHash,
        now_ms: u64,
        max_attempts: u32,
    ) -> Result<AttemptOutcome, StoreError> {
        match self {
            Store::Memory(s) => s.attempt(id, presented, now_ms, max_attempts).await,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Memory(s) => s.ping().await,
        }
    }
}

/// The behaviour every backend must show; run against each backend by its own tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod contract {
    use super::*;

    const MIN: u64 = 60_000;

    fn id(n: u8) -> ChallengeId {
        ChallengeId::from_bytes([n; 16])
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

    fn quota(max: u32) -> SendQuota {
        SendQuota {
            max,
            window: Duration::from_secs(600),
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
        make().ping().await.unwrap();
    }

    async fn valid_code_is_single_use<S: ChallengeStore>(s: S) {
        s.insert_pending(challenge(1, "+3460001", 5 * MIN), quota(5), 0)
            .await
            .unwrap();
        s.activate(id(1), &number("+3460001")).await.unwrap();
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
        s.insert_pending(challenge(2, "+3460002", 5 * MIN), quota(5), 0)
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
        s.insert_pending(challenge(3, "+3460003", 1000), quota(5), 0)
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
        s.insert_pending(challenge(4, "+3460004", 5 * MIN), quota(5), 0)
            .await
            .unwrap();
        s.activate(id(4), &number("+3460004")).await.unwrap();
        s.insert_pending(challenge(5, "+3460004", 5 * MIN), quota(5), 1)
            .await
            .unwrap();
        s.activate(id(5), &number("+3460004")).await.unwrap();
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
            s.insert_pending(challenge(10 + i, phone, 5 * MIN), quota(3), u64::from(i))
                .await
                .unwrap();
        }
        let over = s
            .insert_pending(challenge(20, phone, 5 * MIN), quota(3), 3)
            .await;
        assert!(matches!(over, Err(InsertError::QuotaExceeded)));
        s.discard(id(12), &phone_number).await.unwrap();
        assert_eq!(
            s.attempt(id(12), [12; 32], 4, 3).await.unwrap(),
            AttemptOutcome::Expired
        );
        s.insert_pending(challenge(21, phone, 5 * MIN), quota(3), 4)
            .await
            .unwrap();
        // Ten minutes later the window has slid past the first sends.
        s.insert_pending(challenge(22, phone, 20 * MIN), quota(3), 10 * MIN + 5)
            .await
            .unwrap();
        // Another number has its own budget.
        s.insert_pending(challenge(23, "+3460007", 5 * MIN), quota(3), 5)
            .await
            .unwrap();
    }

    async fn concurrent_right_answers_succeed_once<S: ChallengeStore>(s: S) {
        s.insert_pending(challenge(30, "+3460030", 5 * MIN), quota(5), 0)
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
