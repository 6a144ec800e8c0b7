//! Self-authenticating `authenticationId`s.
//!
//! An id is a UUID (version 8, the "custom" layout, 36 characters as the schema allows) whose
//! 122 free bits carry the issue time (32 bits, Unix seconds), 48 random bits and a 42-bit
//! truncated HMAC-SHA256 over (client id, time, random) under a server key. So a never-issued
//! id or another client's id fails the MAC and answers 404 without touching the store, and an
//! id that verifies but has no live challenge must have been used, superseded or expired. No
//! tombstones are kept, whatever the traffic.

use std::fmt;

use ring::hmac;
use subtle::ConstantTimeEq;
use uuid::Uuid;

const RANDOM_BITS: u32 = 48;
/// Low bits of the random field that carry the store bucket of the number (see
/// [`StoreBucket`](super::StoreBucket)), so a store can find a challenge's shard from its id.
pub(super) const BUCKET_BITS: u32 = 14;
const MAC_BITS: u32 = 42;
const MAC_MASK: u128 = (1u128 << MAC_BITS) - 1;
const RANDOM_MASK: u128 = (1u128 << RANDOM_BITS) - 1;

/// The key that signs and checks ids.
#[derive(Clone)]
pub struct IdKey(hmac::Key);

impl IdKey {
    /// Derives the id key from the gateway's secret, separate from the code-hash key.
    pub fn derive(secret: &[u8]) -> IdKey {
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let sub = hmac::sign(&root, b"otp-gateway/authentication-id/v1");
        IdKey(hmac::Key::new(hmac::HMAC_SHA256, sub.as_ref()))
    }

    fn mac(&self, client_id: &str, issued_at: u32, random: u64) -> u128 {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(&(client_id.len() as u64).to_be_bytes());
        ctx.update(client_id.as_bytes());
        ctx.update(&issued_at.to_be_bytes());
        ctx.update(&random.to_be_bytes());
        let tag = ctx.sign();
        let mut first = [0u8; 16];
        first.copy_from_slice(&tag.as_ref()[..16]);
        u128::from_be_bytes(first) & MAC_MASK
    }
}

/// A verified authenticationId.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthenticationId {
    uuid: Uuid,
    issued_at: u32,
}

impl AuthenticationId {
    /// Mints an id for `client_id`, issued at `now_secs`, with 48 bits of `random`.
    pub fn mint(key: &IdKey, client_id: &str, now_secs: u64, random: u64) -> AuthenticationId {
        let issued_at = u32::try_from(now_secs).unwrap_or(u32::MAX);
        let random = random & RANDOM_MASK as u64;
        let mac = key.mac(client_id, issued_at, random);
        let payload = (u128::from(issued_at) << (RANDOM_BITS + MAC_BITS))
            | (u128::from(random) << MAC_BITS)
            | mac;
        AuthenticationId {
            uuid: Uuid::from_u128(spread(payload)),
            issued_at,
        }
    }

    /// Like [`AuthenticationId::mint`], with the low [`BUCKET_BITS`] of the random field set to
    /// `bucket`: the id then names the store shard of its number (the other 34 random bits, the
    /// time and the number's own bucket keep ids of one client apart).
    pub fn mint_in_bucket(
        key: &IdKey,
        client_id: &str,
        now_secs: u64,
        random: u64,
        bucket: super::StoreBucket,
    ) -> AuthenticationId {
        let mask = (1u64 << BUCKET_BITS) - 1;
        let random = (random & !mask) | (u64::from(bucket.get()) & mask);
        AuthenticationId::mint(key, client_id, now_secs, random)
    }

    /// Accepts only a hyphenated UUID whose MAC verifies for this client.
    pub fn verify(key: &IdKey, client_id: &str, s: &str) -> Option<AuthenticationId> {
        if s.len() != 36 {
            return None;
        }
        let uuid = Uuid::try_parse(s).ok()?;
        let raw = uuid.as_u128();
        if (raw >> 76) & 0xF != 8 || (raw >> 62) & 0b11 != 0b10 {
            return None;
        }
        let payload = gather(raw);
        let issued_at = u32::try_from(payload >> (RANDOM_BITS + MAC_BITS)).ok()?;
        let random = ((payload >> MAC_BITS) & RANDOM_MASK) as u64;
        let expected = key.mac(client_id, issued_at, random);
        let presented = payload & MAC_MASK;
        let ok: bool = expected
            .to_be_bytes()
            .ct_eq(&presented.to_be_bytes())
            .into();
        ok.then_some(AuthenticationId { uuid, issued_at })
    }

    /// Unix seconds at which the id was issued.
    pub fn issued_at(&self) -> u64 {
        u64::from(self.issued_at)
    }

    /// The 16 bytes, bound into the code hash (and, as a `ChallengeId`, the store key).
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.uuid.as_bytes()
    }

    /// The UUID value.
    pub fn as_uuid(&self) -> Uuid {
        self.uuid
    }
}

/// Places 122 payload bits around the version nibble and the variant bits.
fn spread(p: u128) -> u128 {
    let high48 = (p >> 74) & ((1 << 48) - 1);
    let mid12 = (p >> 62) & 0xFFF;
    let low62 = p & ((1 << 62) - 1);
    (high48 << 80) | (0x8 << 76) | (mid12 << 64) | (0b10 << 62) | low62
}

/// The bucket bits of an id's 16 bytes (see [`AuthenticationId::mint_in_bucket`]).
pub(super) fn bucket_bits(bytes: &[u8; 16]) -> u16 {
    let payload = gather(u128::from_be_bytes(*bytes));
    ((payload >> MAC_BITS) & ((1 << BUCKET_BITS) - 1)) as u16
}

/// The issue time (Unix seconds) that an id's 16 bytes carry.
pub(super) fn issued_at_bits(bytes: &[u8; 16]) -> u64 {
    let payload = gather(u128::from_be_bytes(*bytes));
    (payload >> (RANDOM_BITS + MAC_BITS)) as u64
}

/// `bytes` with their bucket bits replaced (for tests that make ids without minting them).
#[cfg(test)]
pub(crate) fn with_bucket_bits(bytes: [u8; 16], bucket: u16) -> [u8; 16] {
    let raw = u128::from_be_bytes(bytes);
    let mask = ((1u128 << BUCKET_BITS) - 1) << MAC_BITS;
    let payload = (gather(raw) & !mask) | ((u128::from(bucket) << MAC_BITS) & mask);
    let fixed = (raw & !spread(u128::MAX >> 6)) | spread(payload);
    fixed.to_be_bytes()
}

fn gather(u: u128) -> u128 {
    let high48 = (u >> 80) & ((1 << 48) - 1);
    let mid12 = (u >> 64) & 0xFFF;
    let low62 = u & ((1 << 62) - 1);
    (high48 << 74) | (mid12 << 62) | low62
}

impl fmt::Display for AuthenticationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.uuid.hyphenated().fmt(f)
    }
}

impl fmt::Debug for AuthenticationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthenticationId({})", self.uuid.hyphenated())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key() -> IdKey {
        IdKey::derive(&[7u8; 32])
    }

    #[test]
    fn minted_ids_are_36_char_uuids_that_verify_for_their_client_only() {
        let id = AuthenticationId::mint(&key(), "app-a", 1_800_000_000, 0xDEAD_BEEF_CAFE);
        let s = id.to_string();
        assert_eq!(s.len(), 36);
        assert_eq!(Uuid::parse_str(&s).unwrap().get_version_num(), 8);
        let back = AuthenticationId::verify(&key(), "app-a", &s).unwrap();
        assert_eq!(back, id);
        assert_eq!(back.issued_at(), 1_800_000_000);
        // The store key alone still tells the issue time (the Redis store files by it).
        assert_eq!(
            crate::domain::ChallengeId::from(&id).issued_at_secs(),
            1_800_000_000
        );
        assert!(AuthenticationId::verify(&key(), "app-b", &s).is_none());
        assert!(AuthenticationId::verify(&IdKey::derive(&[8u8; 32]), "app-a", &s).is_none());
        assert!(AuthenticationId::verify(&key(), "app-a", &s.to_uppercase()).is_some());
    }

    #[test]
    fn tampered_or_foreign_ids_do_not_verify() {
        let s = AuthenticationId::mint(&key(), "c", 1_800_000_000, 42).to_string();
        for i in [0usize, 10, 20, 35] {
            let mut chars: Vec<char> = s.chars().collect();
            chars[i] = if chars[i] == '0' { '1' } else { '0' };
            let t: String = chars.into_iter().collect();
            assert!(AuthenticationId::verify(&key(), "c", &t).is_none(), "{t}");
        }
        for junk in [
            "",
            "ea0840f3-3663-4149-bd10-c7c6b8912105",
            "not-a-uuid-at-all-but-36-characters!",
            "{ea0840f3-3663-4149-bd10-c7c6b89121}",
        ] {
            assert!(
                AuthenticationId::verify(&key(), "c", junk).is_none(),
                "{junk}"
            );
        }
    }

    #[test]
    fn spread_and_gather_are_inverse() {
        for p in [
            0u128,
            (1 << 122) - 1,
            0x0123_4567_89AB_CDEF_0123_4567_89AB_CDEF & ((1 << 122) - 1),
        ] {
            assert_eq!(gather(spread(p)), p);
        }
    }
}
