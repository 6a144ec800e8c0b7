//! `private_key_jwt` client authentication at the token endpoint (RFC 7523 §2.2 and §3,
//! RFC 7521 §4.2), as the CAMARA Security and Interoperability Profile requires of API
//! consumers.
//!
//! A client proves its identity with a JWT it signed with one of its registered keys
//! (`[[auth.clients]]` `jwks`, `jwks_file` or `jwks_uri`). The assertion is accepted when:
//! - its `alg` is ES256, RS256, PS256 or EdDSA (never `none` or HS*: a client's keys are
//!   public) and the chosen key is of that type (EC P-256, RSA, OKP Ed25519);
//! - the signature verifies with the key named by `kid` (or, without `kid`, one of the
//!   client's keys of the right type);
//! - `iss` = `sub` = the client id;
//! - `aud` (string or array) contains the token endpoint URL or the issuer;
//! - `exp` is present and not past, `nbf` / `iat` are not in the future (with
//!   [`CLOCK_SKEW_LEEWAY_SECS`]), and the lifetime (`exp − iat`, or `exp − now` without `iat`)
//!   is at most [`MAX_LIFETIME_SECS`];
//! - `jti` is present and was not seen before for this client: it is remembered (bounded)
//!   until the assertion's `exp` plus the leeway, after which the assertion is dead anyway.
//!   Only assertions whose signature verified enter the cache, so only registered clients can
//!   fill it, and its bound (about 660 fresh assertions per second sustained over 300 s) is
//!   far above any client's need for tokens.
//!
//! Verification uses `jsonwebtoken` (pure-Rust backend): clients bring RSA and Ed25519 keys as
//! JWKs, which ring can neither parse nor, for PS256 from a JWK, verify without hand-written
//! ASN.1. The gateway's own tokens stay on ring ([`crate::auth::jwt`]): one fixed algorithm,
//! keys from PKCS#8 files, low-`s` canonical signatures and the hot-path verification that the
//! validator caches; nothing there needs a JOSE library.
//!
//! The caller only ever learns "client authentication failed"; [`AssertionError`] says which
//! check failed, for the log.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use moka::sync::Cache;
use moka::Expiry;
use ring::digest;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::auth::jwt::{b64url_decode, MAX_TOKEN_LEN};
use crate::auth::{unix_now, CLOCK_SKEW_LEEWAY_SECS};

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest accepted assertion lifetime, in seconds (CAMARA Security and Interoperability
/// Profile, "Client Authentication").
pub const MAX_LIFETIME_SECS: u64 = 300;
/// The algorithms a client may sign with, as published in the discovery document.
pub const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::ES256,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];
/// Upper bound on remembered `jti`s: one entry is 32 bytes plus moka's overhead, and each
/// lives at most [`MAX_LIFETIME_SECS`] plus the leeway.
const REPLAY_CAPACITY: u64 = 200_000;
/// Longest wait for a client's `jwks_uri`.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest accepted `jwks_uri` document.
const MAX_JWKS_BYTES: usize = 64 * 1024;

/// How a registered client may authenticate at the token endpoint (`auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// `client_secret_basic` or `client_secret_post` only.
    ClientSecret,
    /// `private_key_jwt` only (the CAMARA profile's one method).
    PrivateKeyJwt,
    /// Either; for a client migrating from its secret to keys.
    Any,
}

impl AuthMethod {
    /// Whether a client secret is accepted.
    pub fn allows_secret(self) -> bool {
        matches!(self, AuthMethod::ClientSecret | AuthMethod::Any)
    }

    /// Whether a client assertion is accepted.
    pub fn allows_assertion(self) -> bool {
        matches!(self, AuthMethod::PrivateKeyJwt | AuthMethod::Any)
    }
}

/// Which check refused an assertion: for the log only, the client sees `invalid_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssertionError {
    /// Not a compact JWS with JSON header and claims, or too long.
    #[error("malformed assertion")]
    Malformed,
    /// `alg` is not one of [`ALGORITHMS`] (`none` and HS* included).
    #[error("algorithm not accepted")]
    Algorithm,
    /// No key of the client has the `kid`, or none fits the algorithm.
    #[error("no matching client key")]
    UnknownKey,
    /// The key under `kid` is of another type (or curve) than `alg` needs.
    #[error("key type does not match the algorithm")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// `iss` or `sub` is missing or not the client id.
    #[error("iss/sub is not the client id")]
    Issuer,
    /// `aud` contains neither the token endpoint nor the issuer.
    #[error("wrong audience")]
    Audience,
    /// `exp` is past.
    #[error("expired")]
    Expired,
    /// `nbf` or `iat` is in the future.
    #[error("not yet valid")]
    NotYetValid,
    /// A required claim is absent or of the wrong type.
    #[error("missing or invalid {0} claim")]
    MissingClaim(&'static str),
    /// The lifetime exceeds [`MAX_LIFETIME_SECS`].
    #[error("lifetime over 300 s")]
    Lifetime,
    /// The `jti` was already used.
    #[error("replayed jti")]
    Replayed,
    /// The client's `jwks_uri` could not be fetched and nothing is cached.
    #[error("client keys unavailable")]
    KeysUnavailable,
}

/// The client an assertion claims to come from (`sub`, else `iss`), read before any
/// signature check to find the keys and the failure budget; nothing else is trusted yet.
pub fn claimed_client(assertion: &str) -> Result<String, AssertionError> {
    #[derive(Deserialize)]
    struct Claimed {
        iss: Option<String>,
        sub: Option<String>,
    }
    if assertion.len() > MAX_TOKEN_LEN {
        return Err(AssertionError::Malformed);
    }
    let claimed: Claimed = jsonwebtoken::dangerous::insecure_decode_claims(assertion)
        .map_err(|_| AssertionError::Malformed)?;
    claimed
        .sub
        .or(claimed.iss)
        .filter(|id| !id.is_empty())
        .ok_or(AssertionError::MissingClaim("sub"))
}

/// A client's public keys: given in the configuration, or fetched from its `jwks_uri`.
#[derive(Debug, Clone)]
pub enum ClientKeys {
    /// `jwks` / `jwks_file`.
    Static(Arc<JwkSet>),
    /// `jwks_uri`, cached.
    Remote(Arc<RemoteJwks>),
}

impl ClientKeys {
    /// Parses a JWK Set and checks every key is usable for one of [`ALGORITHMS`], so a typo
    /// in the configuration stops the start rather than every token request.
    pub fn parse_set(json: &str) -> Result<JwkSet, String> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| format!("not a JWK Set: {e}"))?;
        if set.keys.is_empty() {
            return Err("the JWK Set has no key".to_owned());
        }
        for jwk in &set.keys {
            if !ALGORITHMS.iter().any(|alg| key_fits(jwk, *alg)) {
                return Err(format!(
                    "key {:?} is not an EC P-256, RSA or Ed25519 public key",
                    jwk.common.key_id.as_deref().unwrap_or("(no kid)")
                ));
            }
            DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
        }
        Ok(set)
    }

    /// Keys given inline.
    pub fn from_json(json: &str) -> Result<ClientKeys, String> {
        Ok(ClientKeys::Static(Arc::new(ClientKeys::parse_set(json)?)))
    }

    /// Keys fetched from `uri`, at most once per `min_refresh` and at least once per `max_age`.
    pub fn remote(uri: String, max_age: Duration, min_refresh: Duration) -> ClientKeys {
        ClientKeys::Remote(Arc::new(RemoteJwks {
            uri,
            max_age,
            min_refresh,
            state: tokio::sync::Mutex::new(RemoteState::default()),
        }))
    }

    /// The current key set; for a `jwks_uri`, refreshed when stale or when `kid` is unknown
    /// (within the refresh interval).
    pub async fn current(&self, kid: Option<&str>) -> Result<Arc<JwkSet>, AssertionError> {
        match self {
            ClientKeys::Static(set) => Ok(Arc::clone(set)),
            ClientKeys::Remote(remote) => remote.current(kid).await,
        }
    }
}

/// A client's `jwks_uri` and what was last fetched from it.
#[derive(Debug)]
pub struct RemoteJwks {
    uri: String,
    max_age: Duration,
    min_refresh: Duration,
    /// A tokio mutex, held across the fetch: concurrent requests of one client wait for one
    /// fetch instead of starting their own.
    state: tokio::sync::Mutex<RemoteState>,
}

#[derive(Debug, Default)]
struct RemoteState {
    keys: Option<(Arc<JwkSet>, Instant)>,
    attempted: Option<Instant>,
    fetches: u64,
}

impl RemoteJwks {
    async fn current(&self, kid: Option<&str>) -> Result<Arc<JwkSet>, AssertionError> {
        let mut state = self.state.lock().await;
        let stale = match &state.keys {
            None => true,
            Some((set, fetched)) => {
                fetched.elapsed() >= self.max_age
                    || kid.is_some_and(|kid| {
                        !set.keys
                            .iter()
                            .any(|k| k.common.key_id.as_deref() == Some(kid))
                    })
            }
        };
        let may_fetch = state
            .attempted
            .is_none_or(|at| at.elapsed() >= self.min_refresh);
        if stale && may_fetch {
            state.attempted = Some(Instant::now());
            state.fetches += 1;
            match fetch_jwks(&self.uri).await {
                Ok(set) => state.keys = Some((Arc::new(set), Instant::now())),
                // The previous keys (if any) stay in use: the client's server being down
                // must not lock out a client whose key did not change.
                Err(e) => {
                    tracing::warn!(uri = %self.uri, error = %e, "client jwks_uri fetch failed")
                }
            }
        }
        state
            .keys
            .as_ref()
            .map(|(set, _)| Arc::clone(set))
            .ok_or(AssertionError::KeysUnavailable)
    }

    /// How many fetches were started (tests check the refresh bound with it).
    pub async fn fetches(&self) -> u64 {
        self.state.lock().await.fetches
    }
}

/// GETs a JWK Set with the same HTTP client stack as the external issuers (reqwest on
/// rustls/ring); no redirect is followed and at most [`MAX_JWKS_BYTES`] are read.
async fn fetch_jwks(uri: &str) -> Result<JwkSet, String> {
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let mut response = client
        .get(uri)
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let text = std::str::from_utf8(&body).map_err(|_| "body is not UTF-8".to_owned())?;
    ClientKeys::parse_set(text)
}

/// A fresh P-256 public key as a decoding key; `None` if the system random generator fails
/// (then unknown clients are merely refused faster).
fn decoy_key() -> Option<DecodingKey> {
    use ring::signature::KeyPair as _;
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let der = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).ok()?;
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, der.as_ref(), &rng).ok()?;
    let point = pair.public_key().as_ref();
    let x = crate::auth::jwt::b64url_encode(point.get(1..33)?);
    let y = crate::auth::jwt::b64url_encode(point.get(33..65)?);
    DecodingKey::from_ec_components(&x, &y).ok()
}

/// Whether `jwk` is a key `alg` can use: the family, and for EC and OKP the curve; a JWK that
/// names its own `alg` must name this one.
fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    if jwk
        .common
        .key_algorithm
        .is_some_and(|named| named.to_string() != format!("{alg:?}"))
    {
        return false;
    }
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return false;
    }
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::RSA(_), Algorithm::RS256 | Algorithm::PS256) => true,
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => {
            okp.curve == EllipticCurve::Ed25519
        }
        _ => false,
    }
}

/// Checks assertions for one token endpoint and remembers their `jti`s.
pub struct AssertionVerifier {
    /// The `aud` values accepted: the token endpoint URL and the issuer.
    audiences: Vec<String>,
    /// A P-256 key nobody holds: assertions naming an unknown client are verified against it,
    /// so they cost one ES256 verification like a registered client's, and response times do
    /// not tell registered client ids apart (the secret path's decoy, for assertions).
    decoy: Option<DecodingKey>,
    /// SHA-256 of (client id, jti) → the assertion's `exp`.
    seen: Cache<[u8; 32], u64>,
}

impl std::fmt::Debug for AssertionVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionVerifier")
            .field("audiences", &self.audiences)
            .field("seen", &self.seen.entry_count())
            .finish()
    }
}

/// Keeps a `jti` until its assertion could no longer be accepted.
struct UntilAssertionExpiry;

impl Expiry<[u8; 32], u64> for UntilAssertionExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        exp: &u64,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            exp.saturating_add(CLOCK_SKEW_LEEWAY_SECS)
                .saturating_sub(unix_now()),
        ))
    }
}

impl AssertionVerifier {
    /// A verifier accepting `aud` = `token_endpoint` or `issuer`.
    pub fn new(token_endpoint: String, issuer: String) -> AssertionVerifier {
        AssertionVerifier {
            audiences: vec![token_endpoint, issuer],
            decoy: decoy_key(),
            seen: Cache::builder()
                .max_capacity(REPLAY_CAPACITY)
                .expire_after(UntilAssertionExpiry)
                .build(),
        }
    }

    /// Runs every check of the module doc on `assertion` for `client_id` against `keys`;
    /// `Ok` spends the `jti`. CPU-bound (RSA verification): call it off the async workers.
    pub fn verify(
        &self,
        assertion: &str,
        client_id: &str,
        keys: &JwkSet,
    ) -> Result<(), AssertionError> {
        if assertion.len() > MAX_TOKEN_LEN {
            return Err(AssertionError::Malformed);
        }
        // The alg is read by hand first: the library's header type refuses `none` as
        // malformed, and the log should say "algorithm" for it.
        let raw_header: Map<String, Value> = assertion
            .split('.')
            .next()
            .and_then(|h| b64url_decode(h).ok())
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(AssertionError::Malformed)?;
        let named = raw_header.get("alg").and_then(Value::as_str);
        if !ALGORITHMS
            .iter()
            .any(|a| Some(format!("{a:?}").as_str()) == named)
        {
            return Err(AssertionError::Algorithm);
        }
        let header =
            jsonwebtoken::decode_header(assertion).map_err(|_| AssertionError::Malformed)?;
        let alg = header.alg;
        if header.crit.is_some() {
            return Err(AssertionError::Malformed);
        }
        let candidates: Vec<&Jwk> = match header.kid.as_deref() {
            Some(kid) => {
                let named: Vec<&Jwk> = keys
                    .keys
                    .iter()
                    .filter(|k| k.common.key_id.as_deref() == Some(kid))
                    .collect();
                if named.is_empty() {
                    return Err(AssertionError::UnknownKey);
                }
                let fitting: Vec<&Jwk> = named.into_iter().filter(|k| key_fits(k, alg)).collect();
                if fitting.is_empty() {
                    return Err(AssertionError::KeyMismatch);
                }
                fitting
            }
            None => keys.keys.iter().filter(|k| key_fits(k, alg)).collect(),
        };
        if candidates.is_empty() {
            return Err(AssertionError::UnknownKey);
        }

        let mut validation = Validation::new(alg);
        // Claims are checked below, by hand, so each failure is named; the library checks
        // only the algorithm and the signature.
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let mut verified = None;
        for jwk in candidates {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            if key.family() != alg.family() {
                continue;
            }
            if let Ok(data) =
                jsonwebtoken::decode::<Map<String, Value>>(assertion, &key, &validation)
            {
                verified = Some(data.claims);
                break;
            }
        }
        let claims = verified.ok_or(AssertionError::Signature)?;
        let exp = self.check_claims(&claims, client_id)?;

        let jti = match claims.get("jti") {
            Some(Value::String(jti)) if !jti.is_empty() => jti,
            _ => return Err(AssertionError::MissingClaim("jti")),
        };
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(client_id.as_bytes());
        ctx.update(&[0]);
        ctx.update(jti.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        // entry().or_insert is atomic: of two concurrent uses of one jti, exactly one is fresh.
        if !self.seen.entry(key).or_insert(exp).is_fresh() {
            return Err(AssertionError::Replayed);
        }
        Ok(())
    }

    /// The work of a signature check against the decoy key, for an assertion whose client is
    /// unknown or may not use assertions; the outcome is always a refusal.
    pub fn verify_decoy(&self, assertion: &str) {
        if assertion.len() > MAX_TOKEN_LEN {
            return;
        }
        if let Some(decoy) = &self.decoy {
            let mut validation = Validation::new(Algorithm::ES256);
            validation.required_spec_claims = HashSet::new();
            validation.validate_exp = false;
            validation.validate_aud = false;
            std::hint::black_box(
                jsonwebtoken::decode::<Map<String, Value>>(assertion, decoy, &validation).is_ok(),
            );
        }
    }

    /// The claim checks after the signature; returns `exp`.
    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        client_id: &str,
    ) -> Result<u64, AssertionError> {
        let text = |name: &'static str| match claims.get(name) {
            Some(Value::String(s)) => Ok(s.as_str()),
            _ => Err(AssertionError::MissingClaim(name)),
        };
        let time = |name: &'static str| match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or(AssertionError::MissingClaim(name)),
        };
        if text("iss")? != client_id || text("sub")? != client_id {
            return Err(AssertionError::Issuer);
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(aud)) => self.audiences.iter().any(|a| a == aud),
            Some(Value::Array(auds)) => auds.iter().any(|aud| {
                aud.as_str()
                    .is_some_and(|aud| self.audiences.iter().any(|a| a == aud))
            }),
            _ => return Err(AssertionError::MissingClaim("aud")),
        };
        if !aud_ok {
            return Err(AssertionError::Audience);
        }
        let now = unix_now();
        let exp = time("exp")?.ok_or(AssertionError::MissingClaim("exp"))?;
        if exp.saturating_add(CLOCK_SKEW_LEEWAY_SECS) <= now {
            return Err(AssertionError::Expired);
        }
        let iat = time("iat")?;
        for not_before in [time("nbf")?, iat].into_iter().flatten() {
            if not_before > now.saturating_add(CLOCK_SKEW_LEEWAY_SECS) {
                return Err(AssertionError::NotYetValid);
            }
        }
        // The profile measures from iat when present, else from receipt.
        if exp.saturating_sub(iat.unwrap_or(now)) > MAX_LIFETIME_SECS {
            return Err(AssertionError::Lifetime);
        }
        Ok(exp)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "assertion_tests.rs"]
mod tests;
