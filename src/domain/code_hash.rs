//! The stored form of a code. Kept apart from the keyed hasher in `otp` so that the store and
//! the challenge state can compare hashes without depending on how codes are hashed.

use subtle::ConstantTimeEq;

/// A keyed hash of a code, bound to the id it was issued for.
pub type CodeHash = [u8; 32];

/// The first half of a [`CodeHash`], which the memory store keeps (16 bytes less per live
/// code): HMAC-SHA256 truncated to 128 bits, as RFC 2104 §5 allows, still leaves a guess of
/// the stored value a 2^-128 chance, and a guess of the *code* is what the attempt limit bounds.
pub type ShortCodeHash = [u8; 16];

/// The short form of `h`.
pub fn short(h: &CodeHash) -> ShortCodeHash {
    let mut s = [0u8; 16];
    s.copy_from_slice(&h[..16]);
    s
}

/// Constant-time equality of two hashes, so the time a comparison takes says nothing about how
/// many leading bytes of a guess were right.
pub fn hashes_match(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
