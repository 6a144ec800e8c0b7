//! `[audit]`: where the audit events (one per send and per validation outcome) go besides the
//! log.

use std::path::PathBuf;

use serde::Deserialize;

use super::{invalid, ConfigError};

/// `[audit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// A JSON-lines file the events are appended to (one object a line); none: the log only.
    pub file: Option<PathBuf>,
    /// Events waiting for the file writer at most (100 to 1,000,000); beyond it new events are
    /// dropped and counted (`otp_sms_audit_events_dropped_total`), so a slow disk never holds
    /// a request.
    pub buffer: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            file: None,
            buffer: 10_000,
        }
    }
}

impl AuditSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !(100..=1_000_000).contains(&self.buffer) {
            return Err(invalid("audit.buffer", "must be between 100 and 1000000"));
        }
        if let Some(path) = &self.file {
            // Opened (created) now, so a wrong path stops the start instead of losing events.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| invalid("audit.file", format!("{}: {e}", path.display())))?;
        }
        Ok(())
    }
}
