//! `[http]` and `[admin]`: the two listeners; `[sandbox]`: whether the embedded simulator's
//! inbox may be served beyond loopback, and the sandbox clients' inboxes and magic numbers.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::domain::Secret;

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address of the public API.
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes (at least 512).
    pub max_body_bytes: usize,
    /// Time between "not ready" and "stop accepting" on shutdown, so load balancers stop
    /// sending before the listener closes.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Longest time a client may take to send a request's head, and again its body, on both
    /// listeners; a slower request gets 408 and its connection is closed (at least 100ms).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Connections each worker of each listener serves at once (at least 1); further ones
    /// wait in the accept backlog.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 * 1024,
            shutdown_grace: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

impl HttpSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 512 {
            return Err(invalid("http.max_body_bytes", "must be at least 512"));
        }
        if self.request_timeout < Duration::from_millis(100) {
            return Err(invalid("http.request_timeout", "must be at least 100ms"));
        }
        if self.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be at least 1"));
        }
        Ok(())
    }
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Address of the admin listener (metrics, health, sandbox inbox).
    pub listen: SocketAddr,
    /// Bearer token that opens `/admin/*` and `/sandbox/*` (at least 16 bytes). Those paths
    /// need a credential whenever the listener is not loopback, or when this is set.
    pub token: Option<Secret>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
            token: None,
        }
    }
}

/// Shortest accepted `admin.token`: a guessable token would open the inbox of every code.
const MIN_ADMIN_TOKEN_BYTES: usize = 16;

impl AdminSettings {
    /// Whether `/admin/*` and `/sandbox/*` need a credential: beyond loopback anyone on the
    /// network could read every code, and a configured token is always honoured.
    pub fn credential_required(&self) -> bool {
        !self.listen.ip().is_loopback() || self.token.is_some()
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if let Some(t) = &self.token {
            if t.expose().trim().len() < MIN_ADMIN_TOKEN_BYTES {
                return Err(invalid(
                    "admin.token",
                    format!("must be at least {MIN_ADMIN_TOKEN_BYTES} bytes"),
                ));
            }
        }
        Ok(())
    }
}

/// `[sandbox]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    /// Serve the embedded simulator's inbox (every code it received) on a non-loopback
    /// `admin.listen`; without it such a configuration does not start.
    pub expose: bool,
    /// Messages kept per sandbox client (`sandbox = true` in `[[auth.clients]]`); older ones
    /// are dropped (1 to 10,000).
    pub inbox_capacity: usize,
    /// `[[sandbox.numbers]]`: test numbers that answer a fixed code or a chosen CAMARA error,
    /// for sandbox clients only.
    pub numbers: Vec<crate::sandbox::MagicNumber>,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            expose: false,
            inbox_capacity: 100,
            numbers: Vec::new(),
        }
    }
}

impl SandboxSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !(1..=10_000).contains(&self.inbox_capacity) {
            return Err(invalid(
                "sandbox.inbox_capacity",
                "must be between 1 and 10000",
            ));
        }
        crate::sandbox::check_numbers(&self.numbers).map_err(|e| invalid("sandbox.numbers", e))
    }
}
