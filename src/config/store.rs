//! `[store]`

use serde::Deserialize;

use super::{invalid, ConfigError};

/// Where challenges live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// In-process moka caches (one replica).
    #[default]
    Memory,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// The backend.
    pub backend: StoreBackend,
    /// Upper bound of live challenges held in memory (at least 100). At the bound send-code
    /// answers 503 before sending anything, so every acknowledged code stays validatable.
    pub max_challenges: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Memory,
            max_challenges: 1_000_000,
        }
    }
}

impl StoreSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        // A floor only against typos (`max_challenges = 1`); small stores serve tests.
        if self.max_challenges < 100 {
            return Err(invalid("store.max_challenges", "must be at least 100"));
        }
        Ok(())
    }
}
