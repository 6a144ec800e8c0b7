//! `[policy]`: the operator's number ranges and barred numbers.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::de;
use crate::domain::PhoneNumber;

/// `[policy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// E.164 prefixes served by this operator; others get 404. Empty: every number.
    #[serde(deserialize_with = "de::prefixes")]
    pub operator_prefixes: Vec<String>,
    /// Prefixes that cannot receive SMS (landlines, data-only ranges): 403 PHONE_NUMBER_NOT_ALLOWED.
    #[serde(deserialize_with = "de::prefixes")]
    pub not_allowed_prefixes: Vec<String>,
    /// Numbers with SMS barring: 403 PHONE_NUMBER_BLOCKED.
    pub blocked_numbers: Vec<PhoneNumber>,
    /// A file of barred numbers (one E.164 number a line, `#` comments), re-read when it
    /// changes; it must parse at start, and a later version that does not parse is ignored.
    pub blocked_numbers_file: Option<PathBuf>,
    /// How often the file's modification time and size are checked.
    #[serde(with = "humantime_serde")]
    pub blocked_numbers_reload: Duration,
    /// `[policy.lookup]`: the HLR / number-portability hook, asked after the lists above.
    pub lookup: Option<super::LookupSettings>,
    /// `[policy.pumping]`: SMS-pumping protection per destination prefix.
    pub pumping: Option<super::PumpingSettings>,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            operator_prefixes: Vec::new(),
            not_allowed_prefixes: Vec::new(),
            blocked_numbers: Vec::new(),
            blocked_numbers_file: None,
            blocked_numbers_reload: Duration::from_secs(10),
            lookup: None,
            pumping: None,
        }
    }
}

impl PolicySettings {
    /// The barring file must exist and parse now; a bad later version is ignored at reload.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.blocked_numbers_reload < Duration::from_secs(1) {
            return Err(invalid(
                "policy.blocked_numbers_reload",
                "must be at least 1s",
            ));
        }
        if let Some(path) = &self.blocked_numbers_file {
            crate::policy::read_barring_file(path)
                .map_err(|e| invalid("policy.blocked_numbers_file", e))?;
        }
        if let Some(lookup) = &self.lookup {
            lookup.check()?;
        }
        if let Some(pumping) = &self.pumping {
            pumping.check()?;
        }
        Ok(())
    }
}
