//! `[otp]`: the code rules, and the key that binds codes and ids to this deployment.

use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::domain::Secret;

/// Default of `max_codes_per_number_all_clients`.
const DEFAULT_ALL_CLIENTS_CAP: u32 = 10;

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
    /// Codes one client may have sent to one phone number within `max_codes_window` (at least
    /// 1): the CAMARA max-codes rule, per (client, number) so one client cannot starve another.
    pub max_codes_per_number: u32,
    /// The sliding window of `max_codes_per_number`.
    #[serde(with = "humantime_serde")]
    pub max_codes_window: Duration,
    /// Codes a phone number may receive from all clients together within
    /// `max_codes_window_all_clients`: protects the subscriber from SMS bombing through many
    /// clients. Not below `max_codes_per_number`; when absent, 10 or `max_codes_per_number`,
    /// whichever is higher (see [`OtpSettings::all_clients_cap`]).
    pub max_codes_per_number_all_clients: Option<u32>,
    /// The sliding window of the all-clients cap.
    #[serde(with = "humantime_serde")]
    pub max_codes_window_all_clients: Duration,
    /// How long a used, superseded or expired id answers VERIFICATION_EXPIRED rather than 404
    /// (not shorter than `ttl`).
    #[serde(with = "humantime_serde")]
    pub id_retention: Duration,
    /// Key for code hashes and authenticationId MACs (at least 32 bytes); random when absent.
    pub hash_key: Option<Secret>,
    /// `[otp.tenant_bounds]`: the range a client's tenant `ttl` and `max_attempts` must keep.
    pub tenant_bounds: super::TenantBounds,
}

impl Default for OtpSettings {
    fn default() -> Self {
        Self {
            code_length: 6,
            ttl: Duration::from_secs(300),
            max_attempts: 3,
            max_codes_per_number: 5,
            max_codes_window: Duration::from_secs(600),
            max_codes_per_number_all_clients: None,
            max_codes_window_all_clients: Duration::from_secs(600),
            id_retention: Duration::from_secs(24 * 3600),
            hash_key: None,
            tenant_bounds: super::TenantBounds::default(),
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
        if self
            .max_codes_per_number_all_clients
            .is_some_and(|cap| cap < self.max_codes_per_number)
        {
            return Err(invalid(
                "otp.max_codes_per_number_all_clients",
                "must not be lower than otp.max_codes_per_number",
            ));
        }
        if self.max_codes_window_all_clients.is_zero() {
            return Err(invalid(
                "otp.max_codes_window_all_clients",
                "must be longer than 0s",
            ));
        }
        if self.id_retention < self.ttl {
            return Err(invalid(
                "otp.id_retention",
                "must not be shorter than otp.ttl",
            ));
        }
        Ok(())
    }

    /// The all-clients cap in force. Unset, it is the default of 10 raised to
    /// `max_codes_per_number` when that is higher, so raising the per-client rule alone never
    /// makes a configuration invalid; set explicitly, `check` holds it to the same bound.
    pub fn all_clients_cap(&self) -> u32 {
        self.max_codes_per_number_all_clients
            .unwrap_or(DEFAULT_ALL_CLIENTS_CAP.max(self.max_codes_per_number))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_all_clients_cap_defaults_to_ten_or_the_per_client_rule() {
        let mut s = OtpSettings::default();
        assert_eq!(s.all_clients_cap(), 10);
        s.max_codes_per_number = 20;
        s.check().unwrap();
        assert_eq!(s.all_clients_cap(), 20);
        s.max_codes_per_number_all_clients = Some(25);
        assert_eq!(s.all_clients_cap(), 25);
    }

    #[test]
    fn the_all_clients_cap_is_not_below_the_per_client_rule() {
        let s = OtpSettings {
            max_codes_per_number: 5,
            max_codes_per_number_all_clients: Some(4),
            ..OtpSettings::default()
        };
        let err = s.check().unwrap_err().to_string();
        assert!(
            err.contains("otp.max_codes_per_number_all_clients"),
            "{err}"
        );
        let s = OtpSettings {
            max_codes_window_all_clients: Duration::ZERO,
            ..OtpSettings::default()
        };
        let err = s.check().unwrap_err().to_string();
        assert!(err.contains("otp.max_codes_window_all_clients"), "{err}");
    }
}
