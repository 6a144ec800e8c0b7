//! Validation of bearer access tokens presented on the API endpoints.
//!
//! [`BearerValidator`] is what the API asks: it reads the token's (unverified) `iss` only to
//! pick the verifier, then hands the token to the embedded issuer's [`TokenValidator`] or to
//! the configured external issuer ([`crate::auth::external`]); a token that is not a JWT is
//! introspected by the issuers configured for it. Both paths remember verified tokens in a
//! [`TokenCache`] (keyed by the token's SHA-256, until it can no longer be valid), so repeated
//! calls with the same token verify its signature once.
//!
//! Embedded tokens: the ES256 signature verifies against one of the gateway's keys and the
//! `iss`, `aud`, `exp`, `nbf` and `iat` claims hold. A valid signature is not enough: the
//! token's client must still be registered, and a scope counts only while the client still
//! holds it ([`TokenValidator::permits`]). The signing key may be kept across restarts
//! (`auth.signing_key_file`), so a token can outlive the configuration it was issued under.
//!
//! External tokens: the IdP is the authority on the client and its scopes. The client id maps
//! to the `[[auth.clients]]` entry of the same id for its per-client settings (`rate_limit`);
//! a client without one gets the defaults, unless the issuer sets `registered_clients_only`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;
use ring::digest;
use serde_json::{Map, Value};

use crate::auth::external::{ExternalIssuer, Rejected, Vouched};
use crate::auth::jwt::{self, VerifyingKey};
use crate::auth::{unix_now, AuthError, Principal, CLOCK_SKEW_LEEWAY_SECS};
use crate::metrics::AuthMetrics;

/// Upper bound on remembered tokens; one entry is a few hundred bytes.
const CACHE_CAPACITY: u64 = 100_000;
const TARGET: &str = "otp_gateway::auth";

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
    cache: TokenCache,
}

/// What is remembered about a verified token.
pub struct CachedToken {
    /// Who presented it; shared, so a cache hit costs a reference count, not a copy of the
    /// client id and scopes.
    pub principal: Arc<Principal>,
    /// Unix second from which it is no longer accepted.
    pub valid_until: u64,
    /// The external issuer (index) that vouched for it; `None` for the embedded issuer.
    pub issuer: Option<usize>,
    /// The `kid` that verified it, so a key gone from the IdP's JWKS takes its tokens along.
    pub kid: Option<String>,
}

/// Verified tokens by SHA-256, each evicted once it can no longer be valid; bounded. The one
/// verified-token cache concept, used by the embedded and the external paths alike.
#[derive(Clone)]
pub struct TokenCache {
    cache: Cache<[u8; 32], Arc<CachedToken>>,
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
        Some(Duration::from_secs(
            value.valid_until.saturating_sub(unix_now()),
        ))
    }
}

impl TokenCache {
    /// An empty cache holding at most `capacity` tokens.
    pub fn new(capacity: u64) -> TokenCache {
        TokenCache {
            cache: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExpiry)
                .support_invalidation_closures()
                .build(),
        }
    }

    /// The remembered token: `Some(Err(()))` when it was remembered but has expired by `now`
    /// (and is forgotten).
    pub fn get(&self, token: &str, now: u64) -> Option<Result<Arc<CachedToken>, Arc<CachedToken>>> {
        let key = cache_key(token);
        let hit = self.cache.get(&key)?;
        if now >= hit.valid_until {
            self.cache.invalidate(&key);
            return Some(Err(hit));
        }
        Some(Ok(hit))
    }

    /// Remembers a verified token unless it is already dead.
    pub fn insert(&self, token: &str, entry: CachedToken) {
        if entry.valid_until > unix_now() {
            self.cache.insert(cache_key(token), Arc::new(entry));
        }
    }

    /// Whether `token` is remembered.
    pub fn contains(&self, token: &str) -> bool {
        self.cache.contains_key(&cache_key(token))
    }

    /// Forgets the tokens of external issuer `issuer` verified by a key not in `keep`.
    fn forget_keys_of(&self, issuer: usize, keep: impl Fn(&str) -> bool + Send + Sync + 'static) {
        // Only fails when invalidation closures were not enabled, which `new` does.
        let _ = self.cache.invalidate_entries_if(move |_, v| {
            v.issuer == Some(issuer) && v.kid.as_deref().is_some_and(|k| !keep(k))
        });
    }
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
        let cache = TokenCache::new(CACHE_CAPACITY);
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
    pub fn validate(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        self.validate_at(token, unix_now())
    }

    /// Validates a bearer token as if the time were `now` (seconds since the
    /// Unix epoch); lets tests cross a token's expiry without sleeping.
    pub fn validate_at(&self, token: &str, now: u64) -> Result<Arc<Principal>, AuthError> {
        let principal = self.verified(token, now)?;
        self.admit(&principal)?;
        Ok(principal)
    }

    /// The rule applied to every embedded token, cache hits included: its client is still
    /// registered (a lookup is cheap, and it keeps the rule in one place).
    fn admit(&self, principal: &Principal) -> Result<(), AuthError> {
        if self.inner.clients.contains_key(&principal.client_id) {
            Ok(())
        } else {
            Err(AuthError::UnknownClient)
        }
    }

    /// The verified-token cache, which [`BearerValidator`] shares so that one lookup serves
    /// embedded and external tokens alike.
    pub(crate) fn cache(&self) -> &TokenCache {
        &self.inner.cache
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
    fn verified(&self, token: &str, now: u64) -> Result<Arc<Principal>, AuthError> {
        // Checked before hashing so oversized input costs nothing.
        if token.len() > jwt::MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("token too long"));
        }
        // Only fully verified tokens are cached; time is the one thing that can have changed.
        // The cache is shared with the external issuers: only this issuer's entries count
        // here (an external token must never pass as an embedded one, e.g. at the admin
        // guard), the others go through the signature check and fail it.
        match self.inner.cache.get(token, now) {
            Some(Ok(hit)) if hit.issuer.is_none() => return Ok(Arc::clone(&hit.principal)),
            Some(Err(hit)) if hit.issuer.is_none() => return Err(AuthError::Expired),
            _ => {}
        }

        let claims = jwt::verify(token, &self.inner.keys)?;
        let (principal, exp) = self.check_claims(&claims, now)?;
        let principal = Arc::new(principal);
        self.inner.cache.insert(
            token,
            CachedToken {
                principal: Arc::clone(&principal),
                valid_until: exp.saturating_add(CLOCK_SKEW_LEEWAY_SECS),
                issuer: None,
                kid: None,
            },
        );
        Ok(principal)
    }

    /// Whether `token` is currently remembered as verified (for tests).
    pub fn is_cached(&self, token: &str) -> bool {
        self.inner.cache.contains(token)
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

/// Why a bearer token did not authorise a request (the reason is logged, never answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Missing, malformed, forged, expired, foreign or revoked: 401.
    InvalidToken,
    /// A valid token without the required scope: 403.
    InsufficientScope,
}

/// The bearer-token check of the API: the embedded issuer, the `[[auth.issuers]]`, and
/// introspection for opaque tokens, behind one verified-token cache for the external ones.
/// Cheap to clone.
#[derive(Clone)]
pub struct BearerValidator {
    inner: Arc<BearerInner>,
}

struct BearerInner {
    embedded: Option<TokenValidator>,
    embedded_issuer: String,
    external: Vec<Arc<ExternalIssuer>>,
    /// `[[auth.clients]]` ids, for `registered_clients_only`.
    registered: HashSet<String>,
    cache: TokenCache,
    metrics: AuthMetrics,
}

impl fmt::Debug for BearerValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerValidator")
            .field("embedded", &self.inner.embedded.is_some())
            .field("external", &self.inner.external)
            .finish_non_exhaustive()
    }
}

/// Only the routing claim of a JWT, read before anything is verified.
#[derive(serde::Deserialize)]
struct Routing {
    #[serde(default)]
    iss: Option<Value>,
}

impl BearerValidator {
    /// `embedded` is the embedded issuer's validator (None with `auth.embedded = false`);
    /// `registered` the `[[auth.clients]]` ids.
    pub fn new(
        embedded: Option<TokenValidator>,
        embedded_issuer: String,
        external: Vec<ExternalIssuer>,
        registered: impl IntoIterator<Item = String>,
        metrics: AuthMetrics,
    ) -> BearerValidator {
        // One cache for every issuer: a request costs one lookup whoever issued its token.
        let cache = match &embedded {
            Some(e) => e.cache().clone(),
            None => TokenCache::new(CACHE_CAPACITY),
        };
        let external: Vec<Arc<ExternalIssuer>> = external.into_iter().map(Arc::new).collect();
        for (index, issuer) in external.iter().enumerate() {
            let cache = cache.clone();
            issuer.jwks().on_change(move |set| {
                let kids: HashSet<String> = set.kids().map(str::to_owned).collect();
                cache.forget_keys_of(index, move |kid| kids.contains(kid));
            });
        }
        BearerValidator {
            inner: Arc::new(BearerInner {
                embedded,
                embedded_issuer,
                external,
                registered: registered.into_iter().collect(),
                cache,
                metrics,
            }),
        }
    }

    /// Starts every external issuer's key refresh, until `stop`.
    pub fn start(&self, stop: &tokio_util::sync::CancellationToken) {
        for issuer in &self.inner.external {
            issuer.spawn_refresh(stop.child_token());
        }
    }

    /// Whether every external issuer's keys are loaded (readiness); true without any.
    pub fn is_ready(&self) -> bool {
        self.inner.external.iter().all(|i| i.is_ready())
    }

    /// The external issuers, in configuration order.
    pub fn external(&self) -> &[Arc<ExternalIssuer>] {
        &self.inner.external
    }

    /// Whether `token` is in the external verified-token cache (for tests).
    pub fn is_cached(&self, token: &str) -> bool {
        self.inner.cache.contains(token)
    }

    /// Validates `token` and checks that it grants `scope`.
    pub async fn authorize(&self, token: &str, scope: &str) -> Result<Arc<Principal>, Refusal> {
        if token.len() > jwt::MAX_TOKEN_LEN {
            return Err(self.refuse("unknown", "malformed", &"token too long"));
        }
        let now = unix_now();
        match self.inner.cache.get(token, now) {
            Some(Ok(hit)) => {
                let name = self.issuer_name(hit.issuer);
                if hit.issuer.is_none() {
                    // The embedded issuer's own rules, as on its uncached path.
                    let Some(embedded) = &self.inner.embedded else {
                        return Err(self.refuse(name, "wrong_issuer", &Rejected::WrongIssuer));
                    };
                    if let Err(e) = embedded.admit(&hit.principal) {
                        return Err(self.refuse(name, auth_error_label(&e), &e));
                    }
                    return if embedded.permits(&hit.principal, scope) {
                        self.record(name, "cached");
                        Ok(Arc::clone(&hit.principal))
                    } else {
                        self.record(name, "insufficient_scope");
                        Err(Refusal::InsufficientScope)
                    };
                }
                return self.grant(name, Arc::clone(&hit.principal), scope, "cached");
            }
            Some(Err(hit)) => {
                let name = self.issuer_name(hit.issuer);
                return Err(self.refuse(name, "expired", &Rejected::Expired));
            }
            None => {}
        }
        if token.bytes().filter(|b| *b == b'.').count() == 2 {
            self.authorize_jwt(token, scope).await
        } else {
            self.authorize_opaque(token, scope).await
        }
    }

    async fn authorize_jwt(&self, token: &str, scope: &str) -> Result<Arc<Principal>, Refusal> {
        let iss = match jsonwebtoken::dangerous::insecure_decode_claims::<Routing>(token) {
            Ok(Routing {
                iss: Some(Value::String(iss)),
            }) => iss,
            Ok(_) => return Err(self.refuse("unknown", "wrong_issuer", &"no iss claim")),
            Err(_) => return Err(self.refuse("unknown", "malformed", &"undecodable JWT")),
        };
        if let Some(embedded) = &self.inner.embedded {
            if iss == self.inner.embedded_issuer {
                return match embedded.validate(token) {
                    Ok(p) if embedded.permits(&p, scope) => {
                        self.record("embedded", "valid");
                        Ok(p)
                    }
                    Ok(_) => {
                        self.record("embedded", "insufficient_scope");
                        Err(Refusal::InsufficientScope)
                    }
                    Err(e) => Err(self.refuse("embedded", auth_error_label(&e), &e)),
                };
            }
        }
        let Some(index) = self.inner.external.iter().position(|i| i.issuer() == iss) else {
            return Err(self.refuse("unknown", "wrong_issuer", &Rejected::WrongIssuer));
        };
        let issuer = &self.inner.external[index];
        match issuer.verify_jwt(token).await {
            Ok(vouched) => self.admit(index, token, vouched, scope),
            Err(e) => Err(self.refuse(issuer.name(), e.label(), &e)),
        }
    }

    async fn authorize_opaque(&self, token: &str, scope: &str) -> Result<Arc<Principal>, Refusal> {
        // RFC 6750 §2.1 b64token: anything else was never issued by an authorisation server
        // and is not worth a round trip.
        let b64token = !token.is_empty()
            && token.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
            });
        if !b64token {
            return Err(self.refuse("unknown", "malformed", &"not a b64token"));
        }
        let mut last: Option<(usize, Rejected)> = None;
        for (index, issuer) in self.inner.external.iter().enumerate() {
            match issuer.introspect(token).await {
                None => continue,
                Some(Ok(vouched)) => return self.admit(index, token, vouched, scope),
                Some(Err(e)) => last = Some((index, e)),
            }
        }
        match last {
            Some((index, e)) => Err(self.refuse(self.inner.external[index].name(), e.label(), &e)),
            None => Err(self.refuse(
                "unknown",
                "malformed",
                &"not a JWT and no issuer introspects",
            )),
        }
    }

    /// An external token passed its issuer's checks: client rule, cache, scope.
    fn admit(
        &self,
        index: usize,
        token: &str,
        vouched: Vouched,
        scope: &str,
    ) -> Result<Arc<Principal>, Refusal> {
        let issuer = &self.inner.external[index];
        if issuer.registered_clients_only()
            && !self.inner.registered.contains(&vouched.principal.client_id)
        {
            return Err(self.refuse(issuer.name(), "unknown_client", &Rejected::UnknownClient));
        }
        let principal = Arc::new(vouched.principal);
        self.inner.cache.insert(
            token,
            CachedToken {
                principal: Arc::clone(&principal),
                valid_until: vouched.valid_until,
                issuer: Some(index),
                kid: vouched.kid,
            },
        );
        self.grant(issuer.name(), principal, scope, "valid")
    }

    fn grant(
        &self,
        issuer: &str,
        principal: Arc<Principal>,
        scope: &str,
        outcome: &'static str,
    ) -> Result<Arc<Principal>, Refusal> {
        if principal.has_scope(scope) {
            self.record(issuer, outcome);
            Ok(principal)
        } else {
            self.record(issuer, "insufficient_scope");
            tracing::info!(target: TARGET, issuer, client_id = %principal.client_id, "token lacks the scope");
            Err(Refusal::InsufficientScope)
        }
    }

    fn issuer_name(&self, index: Option<usize>) -> &str {
        match index.and_then(|i| self.inner.external.get(i)) {
            Some(issuer) => issuer.name(),
            None => "embedded",
        }
    }

    fn record(&self, issuer: &str, outcome: &str) {
        self.inner
            .metrics
            .validations
            .with_label_values(&[issuer, outcome])
            .inc();
    }

    /// Counts and logs a rejected token; the reason never includes the token.
    fn refuse(&self, issuer: &str, outcome: &'static str, reason: &dyn fmt::Display) -> Refusal {
        self.record(issuer, outcome);
        tracing::info!(target: TARGET, issuer, check = outcome, reason = %reason, "token rejected");
        Refusal::InvalidToken
    }
}

/// The metrics outcome of an embedded-issuer failure.
fn auth_error_label(e: &AuthError) -> &'static str {
    match e {
        AuthError::Malformed(_) | AuthError::Crypto(_) | AuthError::Config(_) => "malformed",
        AuthError::BadSignature => "bad_signature",
        AuthError::UnsupportedAlgorithm => "unsupported_algorithm",
        AuthError::UnknownKey => "unknown_key",
        AuthError::Expired => "expired",
        AuthError::NotYetValid => "not_yet_valid",
        AuthError::WrongIssuer => "wrong_issuer",
        AuthError::WrongAudience => "wrong_audience",
        AuthError::UnknownClient => "unknown_client",
        AuthError::MissingClaim(_) => "missing_claim",
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
