//! `[store]`

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::domain::Secret;
use crate::store::{RedisTarget, RedisTls};

/// Where challenges live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// In-process moka caches (one replica).
    #[default]
    Memory,
    /// A Redis server or Redis Cluster shared by every replica.
    Redis,
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
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]` of a single Redis server, `rediss://…` for TLS.
    pub redis_url: Option<Secret>,
    /// `redis://` (or `rediss://`) URLs of Redis Cluster nodes (any subset; the rest is
    /// discovered).
    pub redis_cluster_urls: Vec<Secret>,
    /// Deadline of every Redis call, connecting included.
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub redis_key_prefix: String,
    /// Replicas that must hold a new code or a spent attempt before the API answers (Redis
    /// `WAIT`); 0 answers once the master has it, which a master crash can then undo.
    pub redis_wait_replicas: u32,
    /// PEM CA bundle for `rediss://` servers whose certificates a private CA signs (default:
    /// the system's roots).
    pub redis_ca_file: Option<PathBuf>,
    /// PEM client certificate for `rediss://` servers that authenticate clients.
    pub redis_client_cert_file: Option<PathBuf>,
    /// PEM private key of `redis_client_cert_file`.
    pub redis_client_key_file: Option<PathBuf>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Memory,
            max_challenges: 1_000_000,
            redis_url: None,
            redis_cluster_urls: Vec::new(),
            redis_timeout: Duration::from_millis(500),
            redis_key_prefix: "otp".into(),
            redis_wait_replicas: 0,
            redis_ca_file: None,
            redis_client_cert_file: None,
            redis_client_key_file: None,
        }
    }
}

/// `[store]` after validation: the backend and what it needs.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// In memory, at most `max_challenges` live codes.
    Memory {
        /// The bound of live challenges.
        max_challenges: u64,
    },
    /// Redis.
    Redis {
        /// Where.
        target: RedisTarget,
        /// Key prefix.
        prefix: String,
        /// Deadline of every call.
        timeout: Duration,
        /// Replicas that must acknowledge inserts and attempts.
        wait_replicas: u32,
        /// TLS material for `rediss://`.
        tls: RedisTls,
    },
}

impl StoreSettings {
    pub(super) fn validate(self) -> Result<StoreConfig, ConfigError> {
        // A floor only against typos (`max_challenges = 1`); small stores serve tests.
        if self.max_challenges < 100 {
            return Err(invalid("store.max_challenges", "must be at least 100"));
        }
        let redis_keys = self.redis_url.is_some() || !self.redis_cluster_urls.is_empty();
        match self.backend {
            StoreBackend::Memory if redis_keys => Err(invalid(
                "store.backend",
                "store.redis_url / store.redis_cluster_urls are set but the backend is `memory`",
            )),
            StoreBackend::Memory => Ok(StoreConfig::Memory {
                max_challenges: self.max_challenges,
            }),
            StoreBackend::Redis => {
                let target = match (self.redis_url, self.redis_cluster_urls.is_empty()) {
                    (Some(url), true) => RedisTarget::Single(url),
                    (None, false) => RedisTarget::Cluster(self.redis_cluster_urls),
                    _ => {
                        return Err(invalid(
                            "store.redis_url",
                            "backend `redis` needs exactly one of store.redis_url and store.redis_cluster_urls",
                        ))
                    }
                };
                if self.redis_timeout < Duration::from_millis(10) {
                    return Err(invalid("store.redis_timeout", "must be at least 10ms"));
                }
                if self.redis_key_prefix.is_empty() || self.redis_key_prefix.contains(['{', '}']) {
                    return Err(invalid(
                        "store.redis_key_prefix",
                        "must be non-empty and free of `{` and `}` (they mark hash tags)",
                    ));
                }
                let tls = tls_files(
                    &target,
                    self.redis_ca_file.as_deref(),
                    self.redis_client_cert_file.as_deref(),
                    self.redis_client_key_file.as_deref(),
                )?;
                Ok(StoreConfig::Redis {
                    target,
                    prefix: self.redis_key_prefix,
                    timeout: self.redis_timeout,
                    wait_replicas: self.redis_wait_replicas,
                    tls,
                })
            }
        }
    }
}

/// Reads the `rediss://` certificate files; they make sense only with `rediss://` URLs.
fn tls_files(
    target: &RedisTarget,
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<RedisTls, ConfigError> {
    if ca.is_none() && cert.is_none() && key.is_none() {
        return Ok(RedisTls::default());
    }
    let urls: Vec<&Secret> = match target {
        RedisTarget::Single(url) => vec![url],
        RedisTarget::Cluster(urls) => urls.iter().collect(),
    };
    if !urls.iter().all(|u| u.expose().starts_with("rediss://")) {
        return Err(invalid(
            "store.redis_ca_file",
            "certificate files are set but the Redis URLs are not all `rediss://`",
        ));
    }
    let read = |key: &str, path: &Path| {
        std::fs::read(path).map_err(|e| invalid(key, format!("{}: {e}", path.display())))
    };
    let ca = ca.map(|p| read("store.redis_ca_file", p)).transpose()?;
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((
            read("store.redis_client_cert_file", c)?,
            Secret::wrap(read("store.redis_client_key_file", k)?),
        )),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "store.redis_client_cert_file",
                "store.redis_client_cert_file and store.redis_client_key_file go together",
            ))
        }
    };
    Ok(RedisTls { ca, client })
}
