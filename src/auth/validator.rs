//! Validation of bearer access tokens presented on the API endpoints.
//!
//! A token is accepted when its ES256 signature verifies against one of the
//! gateway's keys and its `iss`, `aud`, `exp`, `nbf` and `iat` claims hold.
//! Verified tokens are remembered (keyed by their SHA-256) until they expire,
//! so repeated calls with the same token skip the ECDSA verification; the
//! expiry is still checked on every call.
//!
//! A valid signature is not enough: the token's client must still be registered, and a scope
//! counts only while the client still holds it ([`TokenValidator::permits`]). The signing key
//! may be kept across restarts (`auth.signing_key_file`), so a token can outlive the
//! configuration it was issued under.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;
use ring::digest;
use serde_json::{Map, Value};

use crate::auth::jwt::{self, VerifyingKey};
use crate::auth::{unix_now, AuthError, Principal, CLOCK_SKEW_LEEWAY_SECS};

/// Upper bound on remembered tokens; one entry is a few hundred bytes.
const CACHE_CAPACITY: u64 = 100_000;

/// Checks bearer tokens; cheap to clone (the state is shared behind an `Arc`).
#[derive(Clone)]
pub struct TokenValidator {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    audience: String,
    keys: Vec<VerifyingKey>,
    /// Registered client ids and the scopes each holds now.
    clients: HashMap<String, Vec<String>>,
    cache: Cache<[u8; 32], Arc<CachedToken>>,
}

/// What is remembered about a verified token.
struct CachedToken {
    principal: Principal,
    exp: u64,
}

/// Evicts each cached token once it can no longer be valid.
struct UntilExpiry;

impl Expiry<[u8; 32], Arc<CachedToken>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<CachedToken>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(remaining_lifetime(value.exp, unix_now()))
    }
}

/// Time until a token with this `exp` stops being accepted.
fn remaining_lifetime(exp: u64, now: u64) -> Duration {
    Duration::from_secs(
        exp.saturating_add(CLOCK_SKEW_LEEWAY_SECS)
            .saturating_sub(now),
    )
}

impl fmt::Debug for TokenValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenValidator")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("keys", &self.inner.keys.len())
            .finish_non_exhaustive()
    }
}

impl TokenValidator {
    /// A validator accepting tokens from `issuer` for `audience` signed by
    /// one of `keys`, of the `clients` given as (id, scopes it holds). Usually obtained from
    /// [`TokenIssuer::validator`](crate::auth::TokenIssuer::validator).
    pub fn new(
        issuer: String,
        audience: String,
        keys: Vec<VerifyingKey>,
        clients: impl IntoIterator<Item = (String, Vec<String>)>,
    ) -> TokenValidator {
        let cache = Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            .expire_after(UntilExpiry)
            .build();
        TokenValidator {
            inner: Arc::new(Inner {
                issuer,
                audience,
                keys,
                clients: clients.into_iter().collect(),
                cache,
            }),
        }
    }

    /// Validates a bearer token against the current time.
    pub fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        self.validate_at(token, unix_now())
    }

    /// Validates a bearer token as if the time were `now` (seconds since the
    /// Unix epoch); lets tests cross a token's expiry without sleeping.
    pub fn validate_at(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        let principal = self.verified(token, now)?;
        // Checked on cache hits too: a lookup is cheap, and it keeps the rule in one place.
        if !self.inner.clients.contains_key(&principal.client_id) {
            return Err(AuthError::UnknownClient);
        }
        Ok(principal)
    }

    /// Whether `principal` may use `scope`: its token grants it and its client still holds it
    /// (a scope removed from a client's configuration stops working at once).
    pub fn permits(&self, principal: &Principal, scope: &str) -> bool {
        principal.has_scope(scope)
            && self
                .inner
                .clients
                .get(&principal.client_id)
                .is_some_and(|held| held.iter().any(|s| s == scope))
    }

    /// The signature and claim checks, with the verified-token cache.
    fn verified(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        // Checked before hashing so oversized input costs nothing.
        if token.len() > jwt::MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("token too long"));
        }
        let key = cache_key(token);
        if let Some(hit) = self.inner.cache.get(&key) {
            // Only fully verified tokens are cached; time is the one thing
            // that can have changed since.
            if now >= hit.exp.saturating_add(CLOCK_SKEW_LEEWAY_SECS) {
                self.inner.cache.invalidate(&key);
                return Err(AuthError::Expired);
            }
            return Ok(hit.principal.clone());
        }

        let claims = jwt::verify(token, &self.inner.keys)?;
        let (principal, exp) = self.check_claims(&claims, now)?;
        if !remaining_lifetime(exp, unix_now()).is_zero() {
            self.inner.cache.insert(
                key,
                Arc::new(CachedToken {
                    principal: principal.clone(),
                    exp,
                }),
            );
        }
        Ok(principal)
    }

    /// Whether `token` is currently remembered as verified (for tests).
    pub fn is_cached(&self, token: &str) -> bool {
        self.inner.cache.contains_key(&cache_key(token))
    }

    /// Applies the registered-claim rules (RFC 7519 §4.1, RFC 9068 §4) and
    /// extracts the principal and the expiry.
    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now: u64,
    ) -> Result<(Principal, u64), AuthError> {
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.inner.issuer => {}
            _ => return Err(AuthError::WrongIssuer),
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == self.inner.audience,
            Some(Value::Array(auds)) => auds
                .iter()
                .any(|a| a.as_str() == Some(self.inner.audience.as_str())),
            _ => false,
        };
        if !audience_ok {
            return Err(AuthError::WrongAudience);
        }

        let exp = numeric_date(claims, "exp")?.ok_or(AuthError::MissingClaim("exp"))?;
        if now >= exp.saturating_add(CLOCK_SKEW_LEEWAY_SECS) {
            return Err(AuthError::Expired);
        }
        let horizon = now.saturating_add(CLOCK_SKEW_LEEWAY_SECS);
        for name in ["nbf", "iat"] {
            if numeric_date(claims, name)?.is_some_and(|t| t > horizon) {
                return Err(AuthError::NotYetValid);
            }
        }

        let client_id = match (claims.get("client_id"), claims.get("sub")) {
            (Some(Value::String(id)), _) | (None, Some(Value::String(id))) => id.clone(),
            (Some(_), _) | (None, Some(_)) => {
                return Err(AuthError::Malformed("client_id/sub is not a string"))
            }
            (None, None) => return Err(AuthError::MissingClaim("client_id")),
        };
        if client_id.is_empty() {
            return Err(AuthError::MissingClaim("client_id"));
        }

        Ok((
            Principal {
                client_id,
                scopes: scopes(claims)?,
            },
            exp,
        ))
    }
}

/// SHA-256 of the token: fixed-size cache key that does not keep the token
/// itself in memory.
fn cache_key(token: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    key.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    key
}

/// Reads an optional NumericDate claim (RFC 7519 §2: may be fractional).
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, AuthError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    if let Some(n) = value.as_u64() {
        return Ok(Some(n));
    }
    match value.as_f64() {
        // Truncation towards zero is the intent: sub-second precision is moot
        // with a leeway of seconds. `as` saturates for huge values.
        Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
        _ => Err(AuthError::Malformed("time claim is not a NumericDate")),
    }
}

/// Granted scopes: `scope` as a space-separated string (RFC 9068 §2.2.3),
/// else `scp` as an array of strings (or a string), else none.
fn scopes(claims: &Map<String, Value>) -> Result<Vec<String>, AuthError> {
    let split = |s: &str| -> Vec<String> {
        s.split(' ')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => Ok(split(s)),
        (Some(_), _) => Err(AuthError::Malformed("scope is not a string")),
        (None, Some(Value::String(s))) => Ok(split(s)),
        (None, Some(Value::Array(items))) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or(AuthError::Malformed("scp entry is not a string"))
            })
            .collect(),
        (None, Some(_)) => Err(AuthError::Malformed("scp is not a string array")),
        (None, None) => Ok(Vec::new()),
    }
}
