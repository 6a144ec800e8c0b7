//! The stored form of a code. Kept apart from the keyed hasher in `otp` so that the store and
//! the challenge state can compare hashes without depending on how codes are hashed.

use subtle::ConstantTimeEq;

/// A keyed hash of a code, bound to the id it was issued for.
pub type CodeHash = [u8; 32];

/// Constant-time equality of two hashes, so the time a comparison takes says nothing about how
/// many leading bytes of a guess were right.
pub fn hashes_match(a: &CodeHash, b: &CodeHash) -> bool {
    a.ct_eq(b).into()
}
