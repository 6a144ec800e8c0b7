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
    /// Shorthand for a one-element `signing_key_files`.
    pub signing_key_file: Option<PathBuf>,
    /// Token signing keys for rotation: all are published in the JWKS and accepted on
    /// presented tokens; new tokens are signed with the LAST one (the newest).
    pub signing_key_files: Vec<PathBuf>,
    /// How long a client's `jwks_uri` document is used before it is fetched again.
    #[serde(with = "humantime_serde")]
    pub client_jwks_max_age: Duration,
    /// Least time between two fetches of one client's `jwks_uri`, however many unknown `kid`s
    /// are presented: a flood of forged assertions cannot hammer the client's server.
    #[serde(with = "humantime_serde")]
    pub client_jwks_min_refresh: Duration,
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
            signing_key_files: Vec::new(),
            client_jwks_max_age: Duration::from_secs(300),
            client_jwks_min_refresh: Duration::from_secs(30),
            failed_attempts_per_client: 10,
            failed_attempts_total: 120,
            embedded: true,
            issuers: Vec::new(),
        }
    }
}

/// One `[[auth.clients]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// `client_id`.
    pub id: String,
    /// Plain secret or its `pbkdf2-sha256$…` hashed form; empty for a client that
    /// authenticates with `private_key_jwt` only.
    #[serde(default)]
    pub secret: Secret,
    /// How the client may authenticate at the token endpoint; by default what its entry
    /// configures (a secret, or keys), and it must be named when both are configured.
    #[serde(default)]
    pub auth_method: Option<crate::auth::AuthMethod>,
    /// The client's public keys for `private_key_jwt`, a JWK Set as inline JSON.
    #[serde(default)]
    pub jwks: Option<String>,
    /// The same, read from a file at start (validation puts its content in `jwks`).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The same, fetched from the client's URL and cached (`auth.client_jwks_max_age`).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Scopes the client may request.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// This client's token lifetime, when it differs from `auth.token_ttl`.
    #[serde(default, with = "humantime_serde::option")]
    pub token_ttl: Option<Duration>,
    /// API requests per second (and burst) allowed to this client; none means unlimited.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// `[auth.clients.tenant]`: this client's tenant profile (see `config::tenant`).
    #[serde(default)]
    pub tenant: super::TenantSettings,
    /// A sandbox client: its SMS never reach an SMSC but its own sandbox inbox, and the
    /// `[[sandbox.numbers]]` answer it their fixed code or error.
    #[serde(default)]
    pub sandbox: bool,
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
    /// The token signing keys read from `auth.signing_key_file(s)`, oldest first.
    pub signing_keys: Vec<Secret<Vec<u8>>>,
    /// `auth.client_jwks_max_age`.
    pub client_jwks_max_age: Duration,
    /// `auth.client_jwks_min_refresh`.
    pub client_jwks_min_refresh: Duration,
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
        let mut clients = self.clients;
        for c in &mut clients {
            if c.id.is_empty() {
                return Err(invalid("auth.clients", "each client needs an id"));
            }
            validate_client_keys(c)?;
            if !c.secret.is_empty() && c.secret.len() < 8 {
                return Err(invalid(
                    "auth.clients",
                    format!("client {}: a secret needs at least 8 characters", c.id),
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
            if !c.secret.is_empty() {
                crate::auth::ClientSecret::parse(c.secret.expose())
                    .map_err(|e| invalid("auth.clients.secret", format!("client {}: {e}", c.id)))?;
            }
        }
        if self.client_jwks_min_refresh < Duration::from_secs(1)
            || self.client_jwks_max_age < self.client_jwks_min_refresh
        {
            return Err(invalid(
                "auth.client_jwks_min_refresh",
                "must be at least 1s and at most auth.client_jwks_max_age",
            ));
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
        let (key_setting, key_files) = match (self.signing_key_file, self.signing_key_files) {
            (Some(_), files) if !files.is_empty() => {
                return Err(invalid(
                    "auth.signing_key_files",
                    "set signing_key_file or signing_key_files, not both",
                ))
            }
            (Some(file), _) => ("auth.signing_key_file", vec![file]),
            (None, files) => ("auth.signing_key_files", files),
        };
        let mut signing_keys = Vec::with_capacity(key_files.len());
        let mut kids = std::collections::HashSet::new();
        for path in &key_files {
            let read_error = |e: String| invalid(key_setting, format!("{}: {e}", path.display()));
            let bytes = std::fs::read(path).map_err(|e| read_error(e.to_string()))?;
            let key = crate::auth::jwt::SigningKey::from_pkcs8(&bytes)
                .map_err(|e| read_error(e.to_string()))?;
            if !kids.insert(key.kid().to_owned()) {
                return Err(read_error("the same key is listed twice".to_owned()));
            }
            signing_keys.push(Secret::wrap(bytes));
        }
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
                ..ClientEntry::default()
            });
        }
        Ok(AuthConfig {
            issuer,
            audience: self.audience,
            token_ttl: self.token_ttl,
            clients,
            demo_client,
            signing_keys,
            client_jwks_max_age: self.client_jwks_max_age,
            client_jwks_min_refresh: self.client_jwks_min_refresh,
            failed_attempts_per_client: self.failed_attempts_per_client,
            failed_attempts_total: self.failed_attempts_total,
            embedded: self.embedded,
            issuers,
        })
    }
}

/// Checks a client's authentication settings: at least one method, `jwks` / `jwks_file` /
/// `jwks_uri` exclusive, an explicit `auth_method` when both a secret and keys are given, and
/// the key set parseable now (a `jwks_file` is read into `jwks`), so a bad one stops the start.
fn validate_client_keys(c: &mut ClientEntry) -> Result<(), ConfigError> {
    use crate::auth::AuthMethod;
    let what = |msg: &str| invalid("auth.clients", format!("client {}: {msg}", c.id));
    let sources = [
        c.jwks.is_some(),
        c.jwks_file.is_some(),
        c.jwks_uri.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() > 1 {
        return Err(what("set one of jwks, jwks_file and jwks_uri"));
    }
    if let Some(path) = &c.jwks_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| what(&format!("jwks_file {}: {e}", path.display())))?;
        c.jwks = Some(text);
    }
    if let Some(jwks) = &c.jwks {
        crate::auth::assertion::ClientKeys::parse_set(jwks)
            .map_err(|e| what(&format!("jwks: {e}")))?;
    }
    if let Some(uri) = &c.jwks_uri {
        if !(uri.starts_with("https://") || uri.starts_with("http://")) {
            return Err(what("jwks_uri must be an http(s) URL"));
        }
    }
    let has_keys = c.jwks.is_some() || c.jwks_uri.is_some();
    let has_secret = !c.secret.is_empty();
    let method =
        match (c.auth_method, has_secret, has_keys) {
            (Some(m), _, _) => m,
            (None, true, false) => AuthMethod::ClientSecret,
            (None, false, true) => AuthMethod::PrivateKeyJwt,
            (None, true, true) => return Err(what(
                "both a secret and keys: set auth_method (client_secret, private_key_jwt or any)",
            )),
            (None, false, false) => {
                return Err(what("needs a secret or keys (jwks, jwks_file, jwks_uri)"))
            }
        };
    if method.allows_secret() && !has_secret {
        return Err(what(
            "auth_method allows client_secret but no secret is set",
        ));
    }
    if method.allows_assertion() && !has_keys {
        return Err(what(
            "auth_method allows private_key_jwt but no keys are set",
        ));
    }
    c.auth_method = Some(method);
    Ok(())
}
