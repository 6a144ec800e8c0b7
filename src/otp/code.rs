//! Code generation (CSPRNG, uniform over the alphabet) and the keyed hash that is all the store
//! ever sees.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::domain::{AuthenticationId, CodeHash, OtpCode};

/// The characters a code is drawn from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeAlphabet {
    /// `0`-`9`.
    #[default]
    Digits,
    /// Upper-case letters and digits without the look-alikes `0 O 1 I L` (31 characters):
    /// read off a lock screen and typed without confusion. Validation ignores case.
    Alphanumeric,
}

const DIGITS: &[u8] = b"0123456789";
const ALPHANUMERIC: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

impl CodeAlphabet {
    /// The characters, each drawn with equal probability.
    pub fn symbols(self) -> &'static [u8] {
        match self {
            CodeAlphabet::Digits => DIGITS,
            CodeAlphabet::Alphanumeric => ALPHANUMERIC,
        }
    }
}

/// Draws `len` decimal digits from the system CSPRNG (see [`generate_from`]).
pub fn generate(rng: &SystemRandom, len: usize) -> Result<OtpCode, ring::error::Unspecified> {
    generate_from(rng, len, CodeAlphabet::Digits)
}

/// Draws `len` characters of `alphabet` from the system CSPRNG. A byte at or above the largest
/// multiple of the alphabet's size that fits in a byte (250 for digits, 248 for the 31
/// alphanumerics) is rejected, so every character is exactly equally likely (no modulo bias).
pub fn generate_from(
    rng: &SystemRandom,
    len: usize,
    alphabet: CodeAlphabet,
) -> Result<OtpCode, ring::error::Unspecified> {
    let symbols = alphabet.symbols();
    // Both alphabets have fewer than 256 symbols (checked by a test).
    let n = symbols.len();
    let limit = 256 - 256 % n;
    let mut code = String::with_capacity(len);
    let mut buf = [0u8; 16];
    while code.len() < len {
        rng.fill(&mut buf)?;
        for b in buf {
            if usize::from(b) < limit && code.len() < len {
                code.push(char::from(symbols[usize::from(b) % n]));
            }
        }
    }
    Ok(OtpCode::new(code))
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
    fn alphanumeric_codes_use_every_symbol_uniformly_and_no_look_alike() {
        let rng = SystemRandom::new();
        let symbols = CodeAlphabet::Alphanumeric.symbols();
        assert_eq!(symbols.len(), 31);
        for c in b"0O1IL".iter() {
            assert!(!symbols.contains(c), "{}", char::from(*c));
        }
        let mut counts = [0u32; 31];
        for _ in 0..3100 {
            let code = generate_from(&rng, 10, CodeAlphabet::Alphanumeric).unwrap();
            assert_eq!(code.expose().len(), 10);
            for b in code.expose().bytes() {
                let at = symbols.iter().position(|s| *s == b).unwrap();
                counts[at] += 1;
            }
        }
        // 31,000 characters: each expected 1,000 (sd about 31); a 6-sigma band is ±190.
        for c in counts {
            assert!((810..=1190).contains(&c), "{counts:?}");
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
