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
    /// Upper bound of live challenges held in memory (at least 1000).
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
        if self.max_challenges < 1000 {
            return Err(invalid("store.max_challenges", "must be at least 1000"));
        }
        Ok(())
    }
}
