//! `[http]` and `[admin]`: the two listeners.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};

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
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
        }
    }
}
