//! Client secrets: how they are configured and how a presented secret is checked.
//!
//! A secret is configured either in clear or as a PBKDF2-HMAC-SHA256 hash
//! (`pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>`), so that a
//! configuration file leak does not leak usable credentials. Every comparison
//! runs in constant time with respect to the presented secret.
//!
//! Constant-time comparison alone does not hide which client ids exist when secrets differ in
//! cost (a clear secret took 0.5 ms, a hashed one 21.5 ms). So the issuer hashes clear secrets
//! at load and pads cheaper hashes with extra work ([`ClientSecret::equalised`]), and the decoy
//! checked for unknown ids costs the same: every check costs the same.

use std::num::NonZeroU32;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, pbkdf2};
use subtle::ConstantTimeEq;

use crate::auth::AuthError;
use crate::domain::Secret;

/// Prefix marking the hashed form of a secret.
const PBKDF2_PREFIX: &str = "pbkdf2-sha256$";
/// Salt length used by [`ClientSecret::hash`].
const SALT_LEN: usize = 16;
/// Derived-key length used by [`ClientSecret::hash`] (one SHA-256 block).
const HASH_LEN: usize = 32;
/// Iterations used for clear secrets when no hashed secret is configured, and by
/// `otp-gateway hash-secret` (about 20 ms on a current core).
pub const DEFAULT_ITERATIONS: u32 = 100_000;
/// Bytes derived per PBKDF2 block (the SHA-256 output size); each block repeats every
/// iteration, so a 64-byte hash costs twice as much as a 32-byte one.
const BLOCK_LEN: usize = 32;
/// Fixed input of the padding derivation: its output is thrown away.
const PADDING_SALT: &[u8] = b"otp-gateway cost padding";

/// Upper bound on configured iterations (about 0.2 s per check on a current core, ten times
/// the default and above OWASP's 600000 for PBKDF2-HMAC-SHA256): every check costs what the
/// most expensive secret costs, unauthenticated ones included, so a higher count would turn
/// each token request into a denial-of-service lever.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// Standard base64 that accepts the value with or without `=` padding, since
/// hand-written configuration files are inconsistent about it.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A registered client's secret, as configured.
#[derive(Clone, Debug)]
pub enum ClientSecret {
    /// The secret in clear.
    Plain(Secret),
    /// A PBKDF2-HMAC-SHA256 hash of the secret.
    Pbkdf2 {
        /// PBKDF2 iteration count (at least 1).
        iterations: u32,
        /// Salt the key was derived with.
        salt: Vec<u8>,
        /// Derived key to compare against.
        derived: Secret<Vec<u8>>,
        /// Extra one-block iterations run after the real derivation, so that this secret costs
        /// as much as the most expensive one configured (see [`ClientSecret::equalised`]).
        padding: u32,
    },
}

impl ClientSecret {
    /// Parses a configured secret.
    ///
    /// `pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>` yields
    /// [`ClientSecret::Pbkdf2`]; anything else is taken as a clear secret.
    /// Errors for a malformed hashed form and for an empty secret.
    pub fn parse(s: &str) -> Result<ClientSecret, String> {
        let Some(rest) = s.strip_prefix(PBKDF2_PREFIX) else {
            if s.is_empty() {
                return Err("client secret must not be empty".to_owned());
            }
            return Ok(ClientSecret::Plain(Secret::new(s)));
        };
        let parts: Vec<&str> = rest.split('$').collect();
        let [iterations, salt, hash] = parts.as_slice() else {
            return Err(
                "pbkdf2 secret must look like pbkdf2-sha256$<iterations>$<salt>$<hash>".to_owned(),
            );
        };
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| "pbkdf2 iterations must be a positive integer".to_owned())?;
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(format!(
                "pbkdf2 iterations must be between 1 and {MAX_ITERATIONS}"
            ));
        }
        let salt = LENIENT_BASE64
            .decode(salt)
            .map_err(|_| "pbkdf2 salt is not valid base64".to_owned())?;
        if salt.is_empty() {
            return Err("pbkdf2 salt must not be empty".to_owned());
        }
        let hash = LENIENT_BASE64
            .decode(hash)
            .map_err(|_| "pbkdf2 hash is not valid base64".to_owned())?;
        // Shorter hashes are too weak, longer ones add cost without strength
        // (PBKDF2 output beyond one digest block is just more iterations).
        if !(16..=64).contains(&hash.len()) {
            return Err("pbkdf2 hash must be 16 to 64 bytes long".to_owned());
        }
        Ok(ClientSecret::Pbkdf2 {
            iterations,
            salt,
            derived: Secret::wrap(hash),
            padding: 0,
        })
    }

    /// Produces the hashed configuration form of `secret` with a fresh random
    /// 16-byte salt, e.g. for documentation or a CLI helper.
    pub fn hash(secret: &str, iterations: u32) -> Result<String, AuthError> {
        let rounds = NonZeroU32::new(iterations)
            .filter(|n| n.get() <= MAX_ITERATIONS)
            .ok_or(AuthError::Crypto("pbkdf2 iterations out of range"))?;
        let (salt, hash) = derive_fresh(secret, rounds)?;
        Ok(format!(
            "{PBKDF2_PREFIX}{iterations}${}${}",
            STANDARD.encode(salt),
            STANDARD.encode(hash)
        ))
    }

    /// This secret, made to cost exactly `cost` (in [`ClientSecret::cost`] units) when it
    /// costs less: a clear secret is hashed with `cost` iterations and a fresh salt, a cheaper
    /// hash gets padding. A secret costing more is returned as it is (the issuer passes the
    /// maximum, so that does not happen there).
    pub(crate) fn equalised(self, cost: u64) -> Result<ClientSecret, AuthError> {
        let current = self.cost();
        if current >= cost {
            return Ok(self);
        }
        match self {
            ClientSecret::Plain(secret) => {
                let rounds = u32::try_from(cost)
                    .ok()
                    .and_then(NonZeroU32::new)
                    .ok_or(AuthError::Crypto("pbkdf2 cost out of range"))?;
                let (salt, hash) = derive_fresh(secret.expose(), rounds)?;
                Ok(ClientSecret::Pbkdf2 {
                    iterations: rounds.get(),
                    salt: salt.to_vec(),
                    derived: Secret::wrap(hash.to_vec()),
                    padding: 0,
                })
            }
            ClientSecret::Pbkdf2 {
                iterations,
                salt,
                derived,
                padding,
            } => {
                let extra = u32::try_from(cost - current)
                    .map_err(|_| AuthError::Crypto("pbkdf2 cost out of range"))?;
                Ok(ClientSecret::Pbkdf2 {
                    iterations,
                    salt,
                    derived,
                    padding: padding.saturating_add(extra),
                })
            }
        }
    }

    /// Checks a presented secret in constant time.
    pub fn verify(&self, presented: &str) -> bool {
        match self {
            ClientSecret::Plain(expected) => {
                // Comparing digests rather than the strings keeps the time
                // independent of the lengths too (a plain slice `ct_eq`
                // returns early when lengths differ).
                let a = digest::digest(&digest::SHA256, expected.expose().as_bytes());
                let b = digest::digest(&digest::SHA256, presented.as_bytes());
                a.as_ref().ct_eq(b.as_ref()).into()
            }
            ClientSecret::Pbkdf2 {
                iterations,
                salt,
                derived: stored,
                padding,
            } => {
                let stored = stored.expose_value();
                let Some(rounds) = NonZeroU32::new(*iterations) else {
                    return false;
                };
                // Derive into a buffer of the stored length and compare with
                // `subtle` so the comparison itself is constant time.
                let mut derived = vec![0u8; stored.len()];
                pbkdf2::derive(
                    pbkdf2::PBKDF2_HMAC_SHA256,
                    rounds,
                    salt,
                    presented.as_bytes(),
                    &mut derived,
                );
                let matches =
                    !stored.is_empty() && bool::from(derived.as_slice().ct_eq(stored.as_slice()));
                // Runs whatever the outcome, so that a cheap hash answers as late as the most
                // expensive one; black_box keeps the unused result from being optimised away.
                if let Some(extra) = NonZeroU32::new(*padding) {
                    let mut waste = [0u8; BLOCK_LEN];
                    pbkdf2::derive(
                        pbkdf2::PBKDF2_HMAC_SHA256,
                        extra,
                        PADDING_SALT,
                        presented.as_bytes(),
                        &mut waste,
                    );
                    std::hint::black_box(waste);
                }
                matches
            }
        }
    }

    /// A secret nobody knows that costs as much to check as `like` (as
    /// [`DEFAULT_ITERATIONS`] when there is no hashed model).
    ///
    /// Used for unknown client ids so that the response time does not reveal
    /// which ids are registered.
    pub(crate) fn decoy(like: Option<&ClientSecret>) -> ClientSecret {
        let cost = match like {
            Some(model @ ClientSecret::Pbkdf2 { .. }) => model.cost(),
            Some(ClientSecret::Plain(_)) | None => u64::from(DEFAULT_ITERATIONS),
        };
        let rng = SystemRandom::new();
        let mut random = [0u8; SALT_LEN];
        // If the generator fails the salt is all zeros: the derived key stays all zeros, which
        // no presented secret produces in practice, and this is never a hard failure.
        let _ = rng.fill(&mut random);
        ClientSecret::Pbkdf2 {
            // One block, so iterations alone make the cost; `cost` never exceeds
            // 2 × MAX_ITERATIONS, which fits.
            iterations: u32::try_from(cost).unwrap_or(u32::MAX).max(1),
            salt: random.to_vec(),
            derived: Secret::wrap(vec![0u8; BLOCK_LEN]),
            padding: 0,
        }
    }

    /// Work of one check, in one-block PBKDF2 iterations (0 for a clear secret): iterations
    /// × blocks of the derived key, plus any padding. Secrets of equal cost take equal time.
    pub fn cost(&self) -> u64 {
        match self {
            ClientSecret::Plain(_) => 0,
            ClientSecret::Pbkdf2 {
                iterations,
                derived,
                padding,
                ..
            } => {
                let blocks = derived.expose_value().len().div_ceil(BLOCK_LEN).max(1);
                u64::from(*iterations) * blocks as u64 + u64::from(*padding)
            }
        }
    }
}

/// A fresh random salt and the one-block PBKDF2 of `secret` under it.
fn derive_fresh(
    secret: &str,
    rounds: NonZeroU32,
) -> Result<([u8; SALT_LEN], [u8; HASH_LEN]), AuthError> {
    let mut salt = [0u8; SALT_LEN];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| AuthError::Crypto("random generator failed"))?;
    let mut hash = [0u8; HASH_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        &salt,
        secret.as_bytes(),
        &mut hash,
    );
    Ok((salt, hash))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plain_secret_verifies() {
        let s = ClientSecret::parse("s3cret").unwrap();
        assert!(matches!(s, ClientSecret::Plain(_)));
        assert!(s.verify("s3cret"));
        assert!(!s.verify("s3cret "));
        assert!(!s.verify("S3cret"));
        assert!(!s.verify(""));
    }

    #[test]
    fn pbkdf2_secret_round_trip() {
        let stored = ClientSecret::hash("correct horse", 1_000).unwrap();
        assert!(stored.starts_with("pbkdf2-sha256$1000$"));
        let s = ClientSecret::parse(&stored).unwrap();
        assert!(matches!(
            s,
            ClientSecret::Pbkdf2 {
                iterations: 1000,
                ..
            }
        ));
        assert!(s.verify("correct horse"));
        assert!(!s.verify("correct horse battery"));
        assert!(!s.verify(""));
    }

    #[test]
    fn pbkdf2_accepts_unpadded_base64() {
        let stored = ClientSecret::hash("x", 10).unwrap();
        let unpadded = stored.replace('=', "");
        assert!(ClientSecret::parse(&unpadded).unwrap().verify("x"));
    }

    #[test]
    fn pbkdf2_parse_errors() {
        let good_salt = STANDARD.encode([1u8; 16]);
        let good_hash = STANDARD.encode([2u8; 32]);
        for bad in [
            "pbkdf2-sha256$".to_owned(),
            "pbkdf2-sha256$1000".to_owned(),
            format!("pbkdf2-sha256$1000${good_salt}"),
            format!("pbkdf2-sha256$1000${good_salt}${good_hash}$extra"),
            format!("pbkdf2-sha256$0${good_salt}${good_hash}"),
            format!("pbkdf2-sha256$-1${good_salt}${good_hash}"),
            format!("pbkdf2-sha256$abc${good_salt}${good_hash}"),
            format!("pbkdf2-sha256$99999999999${good_salt}${good_hash}"),
            format!("pbkdf2-sha256$1000$!!!${good_hash}"),
            format!("pbkdf2-sha256$1000${good_salt}$***"),
            format!("pbkdf2-sha256$1000$${good_hash}"),
            format!(
                "pbkdf2-sha256$1000${good_salt}${}",
                STANDARD.encode([2u8; 8])
            ),
        ] {
            assert!(ClientSecret::parse(&bad).is_err(), "accepted {bad}");
        }
        assert!(ClientSecret::parse("").is_err());
        assert!(ClientSecret::hash("x", 0).is_err());
    }

    #[test]
    fn other_prefixes_are_plain() {
        let s = ClientSecret::parse("pbkdf2-sha512$1$a$b").unwrap();
        assert!(s.verify("pbkdf2-sha512$1$a$b"));
    }

    #[test]
    fn debug_redacts() {
        let s = ClientSecret::parse("hunter2").unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        let h = ClientSecret::parse(&ClientSecret::hash("hunter2", 5).unwrap()).unwrap();
        let shown = format!("{h:?}");
        assert!(shown.contains("iterations"));
        assert!(!shown.contains("hash:"));
    }

    #[test]
    fn decoys_reject_everything() {
        let model = ClientSecret::parse(&ClientSecret::hash("a", 10).unwrap()).unwrap();
        let decoy = ClientSecret::decoy(Some(&model));
        assert_eq!(decoy.cost(), 10);
        assert!(!decoy.verify("a"));
        assert!(!decoy.verify(""));
        assert!(!ClientSecret::decoy(None).verify(""));
    }

    #[test]
    fn equalised_secrets_keep_their_answers() {
        let plain = ClientSecret::parse("s3cret-value")
            .unwrap()
            .equalised(50)
            .unwrap();
        assert_eq!(plain.cost(), 50);
        assert!(plain.verify("s3cret-value"));
        assert!(!plain.verify("s3cret-valuE"));
        let padded = ClientSecret::parse(&ClientSecret::hash("h", 20).unwrap())
            .unwrap()
            .equalised(50)
            .unwrap();
        assert_eq!(padded.cost(), 50);
        assert!(padded.verify("h"));
        assert!(!padded.verify("x"));
        // Never made cheaper.
        assert_eq!(padded.equalised(10).unwrap().cost(), 50);
        assert!(!format!("{plain:?}").contains("s3cret-value"));
    }
}
