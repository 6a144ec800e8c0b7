//! External identity providers: the gateway as a resource server behind the operator's own
//! authorisation server (`[[auth.issuers]]`).
//!
//! - [`jwks`]: discovery and the JWKS cache (periodic refresh, refresh on an unknown `kid`, a
//!   minimum interval between fetches, readiness).
//! - [`verify`]: JWT access-token checks with `jsonwebtoken` (pure-Rust backend).
//! - [`introspection`]: RFC 7662 introspection of opaque tokens with the `oauth2` crate.
//!
//! Discovery and JWKS are fetched with `reqwest` + serde rather than `openidconnect`: that
//! crate is built around a relying party verifying *ID tokens* (nonce, `at_hash`, its own JOSE
//! types), while a resource server needs three fields of the discovery document, a JWKS it can
//! hand to `jsonwebtoken`, and full control over when the IdP is asked (the refresh rate limit).
//! `reqwest` is the HTTP client `oauth2` uses anyway, on rustls with ring (no OpenSSL).

pub mod introspection;
pub mod jwks;
pub mod verify;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::Principal;
use crate::config::IssuerConfig;
use crate::metrics::AuthMetrics;

use self::introspection::Introspector;
use self::jwks::JwksCache;

/// Why an external token was refused. Safe to log: never the token or a claim value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Not a JWT this issuer could have produced, or a claim of the wrong type.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The signature does not verify with the key the header names.
    #[error("invalid token signature")]
    BadSignature,
    /// `alg` is not one this issuer is configured for (`none` and HS* never are).
    #[error("algorithm not accepted")]
    UnsupportedAlgorithm,
    /// No key of the JWKS has the token's `kid` (after a refresh, when one was allowed).
    #[error("unknown signing key")]
    UnknownKey,
    /// The key the `kid` names is of another type than `alg` needs.
    #[error("key type does not match the algorithm")]
    KeyMismatch,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` lies in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` names no configured issuer.
    #[error("token issued by an issuer not configured")]
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    #[error("token intended for another audience")]
    WrongAudience,
    /// A required claim is absent.
    #[error("token lacks the {0} claim")]
    MissingClaim(&'static str),
    /// The client is not listed while `registered_clients_only` is set.
    #[error("token of a client that is not registered")]
    UnknownClient,
    /// Introspection answered `active: false`.
    #[error("token not active")]
    Inactive,
    /// The IdP could not be asked (keys never loaded, introspection failed).
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
}

impl Rejected {
    /// The metrics `outcome` label (one of [`AuthMetrics::OUTCOMES`]).
    pub fn label(&self) -> &'static str {
        match self {
            Rejected::Malformed(_) => "malformed",
            Rejected::BadSignature => "bad_signature",
            Rejected::UnsupportedAlgorithm => "unsupported_algorithm",
            Rejected::UnknownKey => "unknown_key",
            Rejected::KeyMismatch => "key_mismatch",
            Rejected::Expired => "expired",
            Rejected::NotYetValid => "not_yet_valid",
            Rejected::WrongIssuer => "wrong_issuer",
            Rejected::WrongAudience => "wrong_audience",
            Rejected::MissingClaim(_) => "missing_claim",
            Rejected::UnknownClient => "unknown_client",
            Rejected::Inactive => "inactive",
            Rejected::Unavailable(_) => "idp_unavailable",
        }
    }
}

/// A token an external issuer vouched for.
#[derive(Debug, Clone)]
pub struct Vouched {
    /// The caller.
    pub principal: Principal,
    /// Until when (Unix seconds) the answer may be reused: `exp` plus the leeway for a JWT,
    /// bounded by `introspection_cache_ttl` for an introspected token.
    pub valid_until: u64,
    /// The `kid` that verified it (JWTs only): a cached token dies with its key.
    pub kid: Option<String>,
}

/// One configured external issuer.
pub struct ExternalIssuer {
    config: IssuerConfig,
    jwks: Arc<JwksCache>,
    introspector: Option<Introspector>,
    metrics: AuthMetrics,
}

impl std::fmt::Debug for ExternalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalIssuer")
            .field("name", &self.config.name)
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl ExternalIssuer {
    /// Builds the issuer's HTTP client, key cache and introspector; fetches nothing yet.
    pub fn new(config: IssuerConfig, metrics: AuthMetrics) -> Result<ExternalIssuer, String> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // An IdP answer is never followed elsewhere (SSRF; oauth2's advice too).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("auth.issuers {}: HTTP client: {e}", config.name))?;
        let jwks = Arc::new(JwksCache::new(&config, http.clone(), metrics.clone()));
        let introspector = config
            .introspection
            .as_ref()
            .map(|i| Introspector::new(&config, i, http, metrics.clone()));
        metrics
            .issuer_ready
            .with_label_values(&[config.name.as_str()])
            .set(0);
        Ok(ExternalIssuer {
            config,
            jwks,
            introspector,
            metrics,
        })
    }

    /// The configured name (metrics label).
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The configured `iss`.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Whether `[[auth.clients]]` must list the client.
    pub fn registered_clients_only(&self) -> bool {
        self.config.registered_clients_only
    }

    /// Whether opaque tokens are introspected here.
    pub fn introspects(&self) -> bool {
        self.introspector.is_some()
    }

    /// True once the keys were loaded (and stays so while the IdP is down later: the cached
    /// keys keep verifying).
    pub fn is_ready(&self) -> bool {
        self.jwks.is_loaded()
    }

    /// The key cache (tests and the refresh task).
    pub fn jwks(&self) -> &Arc<JwksCache> {
        &self.jwks
    }

    /// Starts the background refresh: at once, then every `jwks_refresh_interval` (every
    /// `jwks_min_interval` while the keys were never loaded), until `stop`.
    pub fn spawn_refresh(&self, stop: CancellationToken) {
        tokio::spawn(Arc::clone(&self.jwks).run(stop));
    }

    /// Verifies a JWT access token whose unverified `iss` named this issuer.
    pub async fn verify_jwt(&self, token: &str) -> Result<Vouched, Rejected> {
        verify::verify(token, &self.config, &self.jwks).await
    }

    /// Asks the IdP about an opaque token; `None` when this issuer does not introspect.
    pub async fn introspect(&self, token: &str) -> Option<Result<Vouched, Rejected>> {
        let introspector = self.introspector.as_ref()?;
        let endpoint = self.jwks.introspection_endpoint();
        Some(introspector.introspect(token, endpoint).await)
    }

    /// Records one validation outcome under this issuer's name.
    pub fn record(&self, outcome: &str) {
        self.metrics
            .validations
            .with_label_values(&[self.config.name.as_str(), outcome])
            .inc();
    }
}
