//! `[auth]` and `[[auth.clients]]`: the embedded token issuer and its clients.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::issuers::{IssuerConfig, IssuerEntry};
use super::{invalid, ConfigError};
use crate::domain::Secret;

/// The demo client that exists only when no client is configured and the API listens on loopback.
pub const DEMO_CLIENT_ID: &str = "demo";
/// Its secret; printed in the start-up banner.
pub const DEMO_CLIENT_SECRET: &str = "demo-secret";

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// `iss` of issued tokens and the base of the discovery document.
    pub issuer: String,
    /// `aud` of issued tokens, required on presented tokens.
    pub audience: String,
    /// Lifetime of issued access tokens (at least 10s).
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// OAuth2 clients allowed to obtain tokens.
    pub clients: Vec<ClientEntry>,
    /// P-256 private key (PKCS#8, PEM or DER) that signs tokens; generated per process when
    /// absent, so tokens then survive neither a restart nor a hop to another replica.
    pub signing_key_file: Option<PathBuf>,
    /// Failed client authentications per minute allowed per presented client id (also the
    /// burst); beyond it the token endpoint answers 429 before checking any secret.
    pub failed_attempts_per_client: u32,
    /// Failed client authentications per minute allowed over all client ids (also the burst):
    /// bounds the CPU an unauthenticated flood can spend on secret hashing.
    pub failed_attempts_total: u32,
    /// Whether the embedded issuer serves tokens and its tokens are accepted (default true).
    pub embedded: bool,
    /// External identity providers whose access tokens are accepted.
    pub issuers: Vec<IssuerEntry>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            audience: "one-time-password-sms".into(),
            token_ttl: Duration::from_secs(3600),
            clients: Vec::new(),
            signing_key_file: None,
            failed_attempts_per_client: 10,
            failed_attempts_total: 120,
            embedded: true,
            issuers: Vec::new(),
        }
    }
}

/// One `[[auth.clients]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// `client_id`.
    pub id: String,
    /// Plain secret or its `pbkdf2-sha256$…` hashed form.
    pub secret: Secret,
    /// Scopes the client may request.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// This client's token lifetime, when it differs from `auth.token_ttl`.
    #[serde(default, with = "humantime_serde::option")]
    pub token_ttl: Option<Duration>,
    /// API requests per second (and burst) allowed to this client; none means unlimited.
    #[serde(default)]
    pub rate_limit: Option<u32>,
}

/// `[auth]` after validation.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Issuer URL without a trailing slash.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// Default token lifetime.
    pub token_ttl: Duration,
    /// The clients, the demo client included when it was added.
    pub clients: Vec<ClientEntry>,
    /// True when the demo client was added because no client was configured.
    pub demo_client: bool,
    /// The token signing key read from `auth.signing_key_file`.
    pub signing_key: Option<Secret<Vec<u8>>>,
    /// `auth.failed_attempts_per_client`.
    pub failed_attempts_per_client: u32,
    /// `auth.failed_attempts_total`.
    pub failed_attempts_total: u32,
    /// `auth.embedded`.
    pub embedded: bool,
    /// `[[auth.issuers]]`, validated.
    pub issuers: Vec<IssuerConfig>,
}

impl AuthSettings {
    /// Checks the section; `loopback` says whether the API listens on loopback only, the one
    /// case in which the demo client may be offered.
    pub(super) fn validate(self, loopback: bool) -> Result<AuthConfig, ConfigError> {
        if self.token_ttl < Duration::from_secs(10) {
            return Err(invalid("auth.token_ttl", "must be at least 10s"));
        }
        let issuer = self.issuer.trim().trim_end_matches('/').to_owned();
        if issuer.is_empty() {
            return Err(invalid("auth.issuer", "must not be empty"));
        }
        for c in &self.clients {
            if c.id.is_empty() || c.secret.len() < 8 {
                return Err(invalid(
                    "auth.clients",
                    "each client needs an id and a secret of at least 8 characters",
                ));
            }
            if c.rate_limit == Some(0) {
                return Err(invalid(
                    "auth.clients",
                    "rate_limit must be at least 1 request per second",
                ));
            }
            if c.token_ttl.is_some_and(|t| t < Duration::from_secs(1)) {
                return Err(invalid("auth.clients", "token_ttl must be at least 1s"));
            }
            // The hashed form is checked here (iterations capped at
            // crate::auth::secret::MAX_ITERATIONS) so a bad one stops the start with exit 2.
            crate::auth::ClientSecret::parse(c.secret.expose())
                .map_err(|e| invalid("auth.clients.secret", format!("client {}: {e}", c.id)))?;
        }
        if self.failed_attempts_per_client == 0 {
            return Err(invalid(
                "auth.failed_attempts_per_client",
                "must be at least 1 per minute",
            ));
        }
        if self.failed_attempts_total == 0 {
            return Err(invalid(
                "auth.failed_attempts_total",
                "must be at least 1 per minute",
            ));
        }
        let signing_key = match &self.signing_key_file {
            None => None,
            Some(path) => {
                let read_error = |e: String| {
                    invalid("auth.signing_key_file", format!("{}: {e}", path.display()))
                };
                let bytes = std::fs::read(path).map_err(|e| read_error(e.to_string()))?;
                crate::auth::jwt::SigningKey::from_pkcs8(&bytes)
                    .map_err(|e| read_error(e.to_string()))?;
                Some(Secret::wrap(bytes))
            }
        };
        if !self.embedded && self.issuers.is_empty() {
            return Err(invalid(
                "auth.embedded",
                "with the embedded issuer off, configure at least one [[auth.issuers]]",
            ));
        }
        let issuers = super::issuers::validate_issuers(
            self.issuers,
            self.embedded.then_some(issuer.as_str()),
        )?;
        let mut clients = self.clients;
        // Without the embedded issuer nobody could use the demo client's secret.
        let demo_client = clients.is_empty() && self.embedded;
        if demo_client {
            if !loopback {
                return Err(invalid(
                    "auth.clients",
                    "no client configured; the demo client is only offered on a loopback listener",
                ));
            }
            clients.push(ClientEntry {
                id: DEMO_CLIENT_ID.into(),
                secret: Secret::new(DEMO_CLIENT_SECRET),
                scopes: vec![crate::auth::SEND_VALIDATE_SCOPE.into()],
                token_ttl: None,
                rate_limit: None,
            });
        }
        Ok(AuthConfig {
            issuer,
            audience: self.audience,
            token_ttl: self.token_ttl,
            clients,
            demo_client,
            signing_key,
            failed_attempts_per_client: self.failed_attempts_per_client,
            failed_attempts_total: self.failed_attempts_total,
            embedded: self.embedded,
            issuers,
        })
    }
}
