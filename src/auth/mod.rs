//! OAuth2 client-credentials authorisation for the gateway.
//!
//! The gateway is its own authorisation server: it owns ES256 signing keys (from PEM files,
//! rotated by listing several, or one generated at start-up), authenticates the registered
//! clients by secret or `private_key_jwt`, mints short-lived JWT access tokens for them
//! (`POST /oauth2/token`, RFC 6749 §4.4), publishes the public keys (`GET /oauth2/jwks`) and a
//! discovery document, and validates the bearer tokens presented on the CAMARA endpoints.
//!
//! Layout:
//! - [`secret`]: how client secrets are stored and compared (constant time).
//! - [`jwt`]: compact JWS encoding and ES256 signing / verification.
//! - [`assertion`]: `private_key_jwt` client assertions (RFC 7523) and their replay cache.
//! - [`issuer`]: the signing keys, the registered clients and token minting.
//! - [`validator`]: bearer-token validation with a verified-token cache.
//! - [`routes`]: the actix-web handlers of the token, JWKS and discovery endpoints.
//! - [`throttle`]: failure budgets and the bounded pool secrets are checked on.
//! - [`deadline`]: the request-body deadline (`http.request_timeout`) of both listeners.

#![forbid(unsafe_code)]

pub mod assertion;
pub mod external;
pub mod issuer;
pub mod jwt;
pub mod routes;
pub mod secret;
pub mod throttle;
pub mod validator;

pub use assertion::{AuthMethod, ClientKeys};
pub use issuer::{
    ClientAuth, IssuedToken, IssuerSettings, RegisteredClient, TokenError, TokenIssuer,
};
pub use routes::configure;
pub use secret::ClientSecret;
pub use throttle::AttemptLimits;
pub use validator::{BearerValidator, Refusal, TokenValidator};

/// Scope granting access to `POST /send-code` and `POST /validate-code` of the
/// CAMARA One Time Password SMS API.
pub const SEND_VALIDATE_SCOPE: &str = "one-time-password-sms:send-validate";
/// The scope that opens the admin listener's `/admin/*` and `/sandbox/*` to an access token.
pub const ADMIN_SCOPE: &str = "otp-gateway:admin";

/// Tolerated clock difference, in seconds, when checking `exp`, `nbf` and `iat`.
pub const CLOCK_SKEW_LEEWAY_SECS: u64 = 5;

/// The authenticated caller of an API request, taken from a validated token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// OAuth2 client id of the caller (`client_id` claim, else `sub`).
    pub client_id: String,
    /// Scopes granted to the token.
    pub scopes: Vec<String>,
}

impl Principal {
    /// Whether the token grants `scope` (exact, case-sensitive match as
    /// required by RFC 6749 §3.3).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Why a token could not be produced or was rejected.
///
/// The messages never contain the token, a secret or a claim value supplied by
/// the caller, so they are safe to log and to return to the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token is not a well-formed compact JWS / JWT (wrong number of
    /// parts, bad base64url, bad JSON, wrong claim type, too long, …).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The signature does not match the header and payload.
    #[error("invalid token signature")]
    BadSignature,
    /// The header names an algorithm other than ES256 (including `none`).
    #[error("unsupported token algorithm")]
    UnsupportedAlgorithm,
    /// The header names a key id this gateway does not know.
    #[error("unknown signing key")]
    UnknownKey,
    /// The token's `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// The token's `nbf` or `iat` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// The `iss` claim is missing or names another issuer.
    #[error("token issued by another issuer")]
    WrongIssuer,
    /// The `aud` claim is missing or does not contain this gateway.
    #[error("token intended for another audience")]
    WrongAudience,
    /// The token names a client that is not (or no longer) registered: with a signing key
    /// kept across restarts, tokens outlive a client's removal.
    #[error("token of an unregistered client")]
    UnknownClient,
    /// A required claim is absent.
    #[error("token lacks the {0} claim")]
    MissingClaim(&'static str),
    /// A cryptographic primitive failed (key generation, signing, randomness).
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
    /// The issuer settings are unusable (empty issuer, duplicate client id, …).
    #[error("invalid authorisation settings: {0}")]
    Config(String),
}

/// Seconds since the Unix epoch.
///
/// A clock set before 1970 yields 0 rather than a panic: every token then
/// looks not-yet-valid, which fails closed.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
