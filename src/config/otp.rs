//! `[otp]`: the code rules, and the key that binds codes and ids to this deployment.

use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::domain::Secret;

/// `[otp]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtpSettings {
    /// Digits per code (4..=10).
    pub code_length: usize,
    /// How long a code can be validated (1s to 24h); also the SMS validity period.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Wrong answers after which an authenticationId is locked (at least 1).
    pub max_attempts: u32,
    /// Codes accepted per phone number within `max_codes_window` (at least 1).
    pub max_codes_per_number: u32,
    /// The sliding window of `max_codes_per_number`.
    #[serde(with = "humantime_serde")]
    pub max_codes_window: Duration,
    /// How long a used, superseded or expired id answers VERIFICATION_EXPIRED rather than 404
    /// (not shorter than `ttl`).
    #[serde(with = "humantime_serde")]
    pub id_retention: Duration,
    /// Key for code hashes and authenticationId MACs (at least 32 bytes); random when absent.
    pub hash_key: Option<Secret>,
}

impl Default for OtpSettings {
    fn default() -> Self {
        Self {
            code_length: 6,
            ttl: Duration::from_secs(300),
            max_attempts: 3,
            max_codes_per_number: 5,
            max_codes_window: Duration::from_secs(600),
            id_retention: Duration::from_secs(24 * 3600),
            hash_key: None,
        }
    }
}

/// The hash key in use, and whether it was generated because none was configured.
#[derive(Debug, Clone)]
pub struct HashKey {
    /// The key bytes.
    pub key: Secret<Vec<u8>>,
    /// True when generated at start: ids then survive neither a restart nor another replica.
    pub generated: bool,
}

impl OtpSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !(4..=10).contains(&self.code_length) {
            return Err(invalid("otp.code_length", "must be between 4 and 10"));
        }
        if self.ttl < Duration::from_secs(1) || self.ttl > Duration::from_secs(24 * 3600) {
            return Err(invalid("otp.ttl", "must be between 1s and 24h"));
        }
        if self.max_attempts == 0 {
            return Err(invalid("otp.max_attempts", "must be at least 1"));
        }
        if self.max_codes_per_number == 0 {
            return Err(invalid("otp.max_codes_per_number", "must be at least 1"));
        }
        if self.max_codes_window.is_zero() {
            return Err(invalid("otp.max_codes_window", "must be longer than 0s"));
        }
        if self.id_retention < self.ttl {
            return Err(invalid(
                "otp.id_retention",
                "must not be shorter than otp.ttl",
            ));
        }
        Ok(())
    }

    /// The configured key, or a random one.
    pub(super) fn hash_key(&self) -> Result<HashKey, ConfigError> {
        match &self.hash_key {
            Some(k) if k.len() < 32 => {
                Err(invalid("otp.hash_key", "must be at least 32 bytes long"))
            }
            Some(k) => Ok(HashKey {
                key: Secret::wrap(k.expose().as_bytes().to_vec()),
                generated: false,
            }),
            None => {
                use ring::rand::SecureRandom;
                let mut key = vec![0u8; 32];
                ring::rand::SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| invalid("otp.hash_key", "the system random generator failed"))?;
                Ok(HashKey {
                    key: Secret::wrap(key),
                    generated: true,
                })
            }
        }
    }
}
