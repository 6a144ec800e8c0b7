//! Code generation (CSPRNG, uniform digits) and the keyed hash that is all the store ever sees.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::domain::{AuthenticationId, CodeHash, OtpCode};

/// Draws `len` decimal digits from the system CSPRNG. Bytes ≥ 250 are rejected so that every
/// digit is exactly equally likely (250 is the largest multiple of 10 that fits in a byte).
pub fn generate(rng: &SystemRandom, len: usize) -> Result<OtpCode, ring::error::Unspecified> {
    let mut digits = String::with_capacity(len);
    let mut buf = [0u8; 16];
    while digits.len() < len {
        rng.fill(&mut buf)?;
        for b in buf {
            if b < 250 && digits.len() < len {
                digits.push(char::from(b'0' + b % 10));
            }
        }
    }
    Ok(OtpCode::new(digits))
}

/// HMAC-SHA256 of (id, code) under a key derived from the gateway secret.
#[derive(Clone)]
pub struct CodeHasher(hmac::Key);

impl CodeHasher {
    /// Derives the code key, distinct from the id key.
    pub fn derive(secret: &[u8]) -> CodeHasher {
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let sub = hmac::sign(&root, b"otp-gateway/code-hash/v1");
        CodeHasher(hmac::Key::new(hmac::HMAC_SHA256, sub.as_ref()))
    }

    /// Hashes a code for a given id. Binding the id in means equal codes hash differently.
    pub fn hash(&self, id: &AuthenticationId, code: &str) -> CodeHash {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(id.as_bytes());
        ctx.update(code.as_bytes());
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::{hashes_match, IdKey};

    #[test]
    fn codes_have_the_requested_length_and_only_digits() {
        let rng = SystemRandom::new();
        for len in 4..=10 {
            let c = generate(&rng, len).unwrap();
            assert_eq!(c.expose().len(), len);
            assert!(c.expose().bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn digits_are_roughly_uniform() {
        let rng = SystemRandom::new();
        let mut counts = [0u32; 10];
        for _ in 0..2000 {
            for b in generate(&rng, 10).unwrap().expose().bytes() {
                counts[usize::from(b - b'0')] += 1;
            }
        }
        // 20,000 digits: each expected 2,000; a 6-sigma band is about ±255.
        for c in counts {
            assert!((1745..=2255).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn hashes_bind_the_id_and_compare_equal_only_for_the_same_code() {
        let h = CodeHasher::derive(&[1u8; 32]);
        let k = IdKey::derive(&[1u8; 32]);
        let a = AuthenticationId::mint(&k, "c", 1_800_000_000, 1);
        let b = AuthenticationId::mint(&k, "c", 1_800_000_000, 2);
        assert!(hashes_match(&h.hash(&a, "123456"), &h.hash(&a, "123456")));
        assert!(!hashes_match(&h.hash(&a, "123456"), &h.hash(&a, "123457")));
        assert!(!hashes_match(&h.hash(&a, "123456"), &h.hash(&b, "123456")));
    }
}
