//! A live challenge and the one state transition that validation performs on it. Every store
//! backend applies [`Challenge::attempt`] atomically (under a lock, or in a Redis script that
//! mirrors it), so the rules live here once.

use std::fmt;

use uuid::Uuid;

use super::authentication_id::AuthenticationId;
use super::code_hash::{hashes_match, CodeHash};
use super::phone_number::PhoneNumber;

/// The store key of a challenge: the 16 bytes of its authenticationId and nothing else.
///
/// Not the [`AuthenticationId`] itself: that carries its decoded issue time too (20 bytes), and
/// can only be built by verifying a MAC, which a store has no key for and no reason to repeat.
/// The id was verified before the store is asked, so the bytes alone identify the challenge.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChallengeId([u8; 16]);

// Every live code holds this key in the cache, in its phone's send history and in the
// challenge itself: growing it grows memory per code three times over.
const _: () = assert!(std::mem::size_of::<ChallengeId>() == 16);

impl ChallengeId {
    /// Wraps id bytes as a backend reads them back from its own keys (and as tests make them).
    pub const fn from_bytes(bytes: [u8; 16]) -> ChallengeId {
        ChallengeId(bytes)
    }

    /// The 16 bytes, for backends that key by raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl ChallengeId {
    /// The store bucket its id was minted in (see [`AuthenticationId::mint_in_bucket`]).
    pub fn bucket(&self) -> StoreBucket {
        StoreBucket(super::authentication_id::bucket_bits(&self.0))
    }

    /// Unix seconds at which its id was issued, which a store may use to place the challenge
    /// by age (the id is all that validate-code knows).
    pub fn issued_at_secs(&self) -> u64 {
        super::authentication_id::issued_at_bits(&self.0)
    }
}

/// Which of 16,384 shards a number's state lives in: a sharded store (Redis Cluster) keeps a
/// number's challenges and counters under one hash tag derived from it, so every operation on
/// them is one atomic script in one slot, and validate-code, which knows only the id, reaches
/// the same shard because the id carries the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StoreBucket(u16);

impl StoreBucket {
    /// Number of buckets (as many as Redis Cluster has slots).
    pub const COUNT: u16 = 1 << super::authentication_id::BUCKET_BITS;

    /// The bucket of `phone`: the first 14 bits of SHA-256 of its E.164 form. Unkeyed on
    /// purpose (every replica must agree without configuration); 14 bits of a hash say next
    /// to nothing about a number, and the id that carries them is only given to the client
    /// that chose the number.
    pub fn of(phone: &PhoneNumber) -> StoreBucket {
        let d = ring::digest::digest(&ring::digest::SHA256, phone.as_e164().as_bytes());
        let first = u16::from_be_bytes([d.as_ref()[0], d.as_ref()[1]]);
        StoreBucket(first >> (16 - super::authentication_id::BUCKET_BITS))
    }

    /// The bucket number, below [`StoreBucket::COUNT`].
    pub fn get(self) -> u16 {
        self.0
    }
}

impl From<&AuthenticationId> for ChallengeId {
    fn from(id: &AuthenticationId) -> ChallengeId {
        ChallengeId(*id.as_bytes())
    }
}

/// Printed as the UUID the client holds, so a store log line can be matched to a request.
impl fmt::Debug for ChallengeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChallengeId({})", Uuid::from_bytes(self.0).hyphenated())
    }
}

/// The client a send belongs to, as the stores key it: the first 8 bytes of SHA-256 of the
/// client id.
///
/// A fixed-size hash rather than the id or an interned string: it is `Copy`, costs no heap
/// allocation in any per-number record, needs no process-wide table (which an interner would,
/// and a table that every replica must agree on for Redis), and spells the same Redis key on
/// every replica. Two client ids share a tag only by a 64-bit collision: a few thousand
/// configured clients make that about 10^-12, and hitting a given client's tag on purpose is
/// a 2^64 search. Only superseding and quotas use it; ids are still bound to the full client
/// id by their MAC.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ClientTag([u8; 8]);

impl ClientTag {
    /// The tag of `client_id`.
    pub fn of(client_id: &str) -> ClientTag {
        let digest = ring::digest::digest(&ring::digest::SHA256, client_id.as_bytes());
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&digest.as_ref()[..8]);
        ClientTag(tag)
    }

    /// Wraps tag bytes as a backend reads them back from its own keys (and as tests make them).
    pub const fn from_bytes(bytes: [u8; 8]) -> ClientTag {
        ClientTag(bytes)
    }

    /// The 8 bytes, for backends that key by raw bytes (a Redis key spells them in hex).
    pub const fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

/// What the store keeps for one issued code. Never the code itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The key of its authenticationId.
    pub id: ChallengeId,
    /// The number it was sent to, for superseding and quotas.
    pub phone: PhoneNumber,
    /// HMAC of the code bound to the id.
    pub code_hash: CodeHash,
    /// Unix milliseconds after which the code is no longer accepted.
    pub expires_at_ms: u64,
    /// Wrong answers so far.
    pub failed_attempts: u32,
}

/// Result of presenting a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The code matched; the challenge is consumed.
    Valid,
    /// Wrong code; more attempts remain.
    Invalid,
    /// The attempt budget is spent (now or earlier); the id stays locked until it expires.
    Locked,
    /// Past its deadline, or no live challenge (used, superseded or expired).
    Expired,
}

impl Challenge {
    /// Applies one attempt. Expiry wins over a lock, and a locked id stays locked even for the
    /// right code: the spec's "maximum number of attempts was exceeded".
    pub fn attempt(
        &mut self,
        presented: &CodeHash,
        now_ms: u64,
        max_attempts: u32,
    ) -> AttemptOutcome {
        attempt_rules(
            &self.code_hash,
            self.expires_at_ms,
            &mut self.failed_attempts,
            presented,
            now_ms,
            max_attempts,
        )
    }
}

/// [`Challenge::attempt`] on the fields alone, for a backend that keeps a challenge in a
/// record of its own (the memory store does not keep the number). Expiry wins over a lock,
/// and a locked id stays locked even for the right code.
pub fn attempt_rules(
    code_hash: &[u8],
    expires_at_ms: u64,
    failed_attempts: &mut u32,
    presented: &[u8],
    now_ms: u64,
    max_attempts: u32,
) -> AttemptOutcome {
    if now_ms >= expires_at_ms {
        return AttemptOutcome::Expired;
    }
    if *failed_attempts >= max_attempts {
        return AttemptOutcome::Locked;
    }
    if hashes_match(code_hash, presented) {
        return AttemptOutcome::Valid;
    }
    *failed_attempts += 1;
    if *failed_attempts >= max_attempts {
        AttemptOutcome::Locked
    } else {
        AttemptOutcome::Invalid
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn challenge() -> Challenge {
        Challenge {
            id: ChallengeId::from_bytes([0; 16]),
            phone: PhoneNumber::parse("+34600000001").unwrap(),
            code_hash: [1; 32],
            expires_at_ms: 10_000,
            failed_attempts: 0,
        }
    }

    #[test]
    fn client_tags_are_stable_and_distinct() {
        assert_eq!(ClientTag::of("app-a"), ClientTag::of("app-a"));
        assert_ne!(ClientTag::of("app-a"), ClientTag::of("app-b"));
        // SHA-256("") starts e3b0c442 98fc1c14: the tag is the published digest's prefix.
        assert_eq!(
            ClientTag::of("").as_bytes(),
            &[0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14]
        );
    }

    #[test]
    fn an_id_carries_the_bucket_of_its_number() {
        let key = crate::domain::IdKey::derive(b"bucket-test-key-bucket-test-key-0");
        for n in ["+34600000001", "+447700900123", "+12025550100"] {
            let phone = PhoneNumber::parse(n).unwrap();
            let bucket = StoreBucket::of(&phone);
            assert!(bucket.get() < StoreBucket::COUNT);
            let id = AuthenticationId::mint_in_bucket(&key, "app", 1_700_000_000, u64::MAX, bucket);
            assert_eq!(ChallengeId::from(&id).bucket(), bucket);
            let again = AuthenticationId::verify(&key, "app", &id.as_uuid().to_string());
            assert_eq!(again, Some(id), "the MAC still verifies");
        }
    }

    #[test]
    fn right_code_before_deadline_is_valid() {
        assert_eq!(
            challenge().attempt(&[1; 32], 9_999, 3),
            AttemptOutcome::Valid
        );
    }

    #[test]
    fn the_max_th_wrong_attempt_locks_and_the_lock_holds_for_the_right_code() {
        let mut c = challenge();
        assert_eq!(c.attempt(&[2; 32], 0, 3), AttemptOutcome::Invalid);
        assert_eq!(c.attempt(&[2; 32], 0, 3), AttemptOutcome::Invalid);
        assert_eq!(c.attempt(&[2; 32], 0, 3), AttemptOutcome::Locked);
        assert_eq!(c.attempt(&[1; 32], 0, 3), AttemptOutcome::Locked);
        assert_eq!(c.failed_attempts, 3);
    }

    #[test]
    fn expiry_wins_over_everything() {
        let mut c = challenge();
        assert_eq!(c.attempt(&[1; 32], 10_000, 3), AttemptOutcome::Expired);
        c.failed_attempts = 3;
        assert_eq!(c.attempt(&[1; 32], 10_001, 3), AttemptOutcome::Expired);
    }

    #[test]
    fn a_single_attempt_budget_locks_on_the_first_wrong_code() {
        assert_eq!(challenge().attempt(&[2; 32], 0, 1), AttemptOutcome::Locked);
    }
}
