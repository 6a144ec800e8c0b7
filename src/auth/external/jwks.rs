//! Discovery and the JWKS of one external issuer.
//!
//! The key set is replaced whole on each successful fetch. Fetches happen in the background
//! (every `jwks_refresh_interval`) and when a token names a `kid` the set lacks, but never two
//! within `jwks_min_interval` of each other, whatever asked: concurrent misses wait on one
//! lock and then find the attempt too recent. Failed attempts count too, so an IdP that is down
//! is not hammered either. Until the first success the issuer is not ready.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::{IssuerConfig, KeySource};
use crate::metrics::AuthMetrics;

/// The most keys kept from one JWKS: a hostile or broken IdP cannot make lookups costly.
const MAX_KEYS: usize = 64;
/// The largest JWKS or discovery document read.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;
const TARGET: &str = "otp_gateway::auth";

/// The key families `alg`s need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `kty: RSA`, for RS256 and PS256.
    Rsa,
    /// `kty: EC` on P-256, for ES256.
    EcP256,
    /// `kty: OKP` on Ed25519, for EdDSA.
    Ed25519,
}

impl KeyType {
    /// The key type an algorithm needs; `None` for algorithms never accepted.
    pub fn for_alg(alg: Algorithm) -> Option<KeyType> {
        match alg {
            Algorithm::RS256 | Algorithm::PS256 => Some(KeyType::Rsa),
            Algorithm::ES256 => Some(KeyType::EcP256),
            Algorithm::EdDSA => Some(KeyType::Ed25519),
            _ => None,
        }
    }
}

/// One usable public key.
pub struct PublicKey {
    /// `kid`, when the JWKS gave one.
    pub kid: Option<String>,
    /// Its type.
    pub key_type: KeyType,
    /// `alg` pinned by the JWKS, if any: the token's must then equal it.
    pub alg: Option<String>,
    /// The key for `jsonwebtoken`.
    pub key: DecodingKey,
}

/// A parsed key set.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<PublicKey>>,
    without_kid: Vec<Arc<PublicKey>>,
}

impl KeySet {
    /// Parses a JWKS document, skipping keys that are not usable signature keys (encryption
    /// keys, other curves, malformed members) rather than failing the whole set.
    pub fn parse(doc: &[u8]) -> Result<KeySet, String> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_slice(doc).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let mut set = KeySet::default();
        for value in doc.keys.into_iter().take(MAX_KEYS) {
            let Ok(jwk) = serde_json::from_value::<RawJwk>(value) else {
                continue;
            };
            let Some(key) = jwk.into_key() else { continue };
            let key = Arc::new(key);
            match &key.kid {
                Some(kid) => {
                    set.by_kid.insert(kid.clone(), key);
                }
                None => set.without_kid.push(key),
            }
        }
        Ok(set)
    }

    /// The key for a token's `kid` (or, without one, the only key of the right type).
    pub fn find(&self, kid: Option<&str>, key_type: KeyType) -> Lookup {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                Some(k) if k.key_type == key_type => Lookup::Found(Arc::clone(k)),
                Some(_) => Lookup::WrongType,
                None => Lookup::Missing,
            },
            None => {
                let mut fitting = self
                    .by_kid
                    .values()
                    .chain(self.without_kid.iter())
                    .filter(|k| k.key_type == key_type);
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Lookup::Found(Arc::clone(k)),
                    _ => Lookup::Missing,
                }
            }
        }
    }

    /// Whether a key with this `kid` is in the set.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// The `kid`s of the set.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.by_kid.keys().map(String::as_str)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.by_kid.len() + self.without_kid.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The outcome of a key lookup.
pub enum Lookup {
    /// The key.
    Found(Arc<PublicKey>),
    /// The `kid` exists but names a key of another type.
    WrongType,
    /// No such key.
    Missing,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

impl RawJwk {
    fn into_key(self) -> Option<PublicKey> {
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let (key_type, key) = match (self.kty.as_str(), self.crv.as_deref()) {
            ("RSA", _) => (
                KeyType::Rsa,
                DecodingKey::from_rsa_components(self.n.as_deref()?, self.e.as_deref()?).ok()?,
            ),
            ("EC", Some("P-256")) => (
                KeyType::EcP256,
                DecodingKey::from_ec_components(self.x.as_deref()?, self.y.as_deref()?).ok()?,
            ),
            ("OKP", Some("Ed25519")) => (
                KeyType::Ed25519,
                DecodingKey::from_ed_components(self.x.as_deref()?).ok()?,
            ),
            _ => return None,
        };
        Some(PublicKey {
            kid: self.kid,
            key_type,
            alg: self.alg,
            key,
        })
    }
}

/// What runs when a new key set arrives.
type KeySetListener = Box<dyn Fn(&KeySet) + Send + Sync>;

/// Fetch bookkeeping, behind the async lock that serialises fetches.
#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    jwks_uri: Option<String>,
}

/// The keys of one issuer and how they are kept fresh.
pub struct JwksCache {
    name: String,
    issuer: String,
    source: KeySource,
    refresh_interval: Duration,
    min_interval: Duration,
    http: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    loaded: AtomicBool,
    /// From discovery (or none).
    introspection_endpoint: RwLock<Option<String>>,
    fetch: tokio::sync::Mutex<FetchState>,
    metrics: AuthMetrics,
    /// Called with the new set after each successful fetch (the token cache drops tokens whose
    /// key is gone).
    on_change: RwLock<Option<KeySetListener>>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    #[serde(default)]
    introspection_endpoint: Option<String>,
}

impl JwksCache {
    /// An empty cache for `config`.
    pub fn new(config: &IssuerConfig, http: reqwest::Client, metrics: AuthMetrics) -> JwksCache {
        let explicit = config.introspection.as_ref().and_then(|i| i.url.clone());
        JwksCache {
            name: config.name.clone(),
            issuer: config.issuer.clone(),
            source: config.keys.clone(),
            refresh_interval: config.jwks_refresh_interval,
            min_interval: config.jwks_min_interval,
            http,
            keys: RwLock::new(Arc::new(KeySet::default())),
            loaded: AtomicBool::new(false),
            introspection_endpoint: RwLock::new(explicit),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            metrics,
            on_change: RwLock::new(None),
        }
    }

    /// Registers the callback run after each successful fetch.
    pub fn on_change(&self, f: impl Fn(&KeySet) + Send + Sync + 'static) {
        *self
            .on_change
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Box::new(f));
    }

    /// Whether a fetch ever succeeded.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// The current key set.
    pub fn current(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The introspection endpoint: configured, else from discovery once it succeeded.
    pub fn introspection_endpoint(&self) -> Option<String> {
        self.introspection_endpoint
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fetches now unless the last attempt was less than `jwks_min_interval` ago; true when a
    /// fetch ran and succeeded.
    pub async fn refresh(&self, why: &'static str) -> bool {
        let mut state = self.fetch.lock().await;
        if state
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.min_interval)
        {
            return false;
        }
        state.last_attempt = Some(Instant::now());
        match self.fetch_keys(&mut state).await {
            Ok(set) => {
                let n = set.len();
                if let Some(f) = &*self
                    .on_change
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                {
                    f(&set);
                }
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
                let was_loaded = self.loaded.swap(true, Ordering::AcqRel);
                self.record("ok");
                self.metrics
                    .issuer_ready
                    .with_label_values(&[self.name.as_str()])
                    .set(1);
                if was_loaded {
                    tracing::debug!(target: TARGET, issuer = %self.name, keys = n, why, "JWKS refreshed");
                } else {
                    tracing::info!(target: TARGET, issuer = %self.name, keys = n, why, "identity provider keys loaded");
                }
                true
            }
            Err(e) => {
                self.record("failed");
                tracing::warn!(target: TARGET, issuer = %self.name, why, error = %e, "JWKS fetch failed");
                false
            }
        }
    }

    fn record(&self, result: &str) {
        self.metrics
            .jwks_refreshes
            .with_label_values(&[self.name.as_str(), result])
            .inc();
    }

    async fn fetch_keys(&self, state: &mut FetchState) -> Result<KeySet, String> {
        let jwks_uri = match (&self.source, &state.jwks_uri) {
            (KeySource::Jwks(uri), _) => uri.clone(),
            (KeySource::Discovery(_), Some(uri)) => uri.clone(),
            (KeySource::Discovery(url), None) => {
                let body = self.get(url).await?;
                let doc: Discovery = serde_json::from_slice(&body)
                    .map_err(|e| format!("discovery document: {e}"))?;
                // OpenID Connect Discovery §4.3: the document must name the issuer configured.
                if doc.issuer != self.issuer {
                    return Err("discovery document names another issuer".into());
                }
                let mut endpoint = self
                    .introspection_endpoint
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                if endpoint.is_none() {
                    *endpoint = doc.introspection_endpoint;
                }
                drop(endpoint);
                state.jwks_uri = Some(doc.jwks_uri.clone());
                doc.jwks_uri
            }
        };
        let body = self.get(&jwks_uri).await?;
        let set = KeySet::parse(&body)?;
        if set.is_empty() {
            return Err("JWKS holds no usable signing key".into());
        }
        Ok(set)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut res = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("GET {url}: status {}", res.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("GET {url}: document too large"));
            }
        }
        Ok(body)
    }

    /// The refresh loop: retries every `jwks_min_interval` until the keys load, then refreshes
    /// every `jwks_refresh_interval`; ends when `stop` is cancelled.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            self.refresh("periodic").await;
            let pause = if self.is_loaded() {
                self.refresh_interval
            } else {
                self.min_interval
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // A P-256 public key and a 2048-bit RSA modulus are not needed to test the selection
    // rules: components only have to decode, which base64url of any bytes does.
    const EC: &str = r#"{"kty":"EC","crv":"P-256","kid":"ec1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    const RSA: &str = r#"{"kty":"RSA","kid":"rsa1","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}"#;

    #[test]
    fn a_kid_of_another_key_type_is_a_mismatch_not_a_miss() {
        let set = KeySet::parse(format!(r#"{{"keys":[{EC},{RSA}]}}"#).as_bytes()).unwrap();
        assert_eq!(set.len(), 2);
        assert!(matches!(
            set.find(Some("ec1"), KeyType::EcP256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.find(Some("ec1"), KeyType::Rsa),
            Lookup::WrongType
        ));
        assert!(matches!(
            set.find(Some("nope"), KeyType::Rsa),
            Lookup::Missing
        ));
        // Without a kid, only an unambiguous key of the right type is used.
        assert!(matches!(set.find(None, KeyType::Rsa), Lookup::Found(_)));
        assert!(matches!(set.find(None, KeyType::Ed25519), Lookup::Missing));
    }

    #[test]
    fn encryption_symmetric_and_unknown_keys_are_skipped_not_fatal() {
        let doc = format!(
            r#"{{"keys":[{{"kty":"oct","kid":"h","k":"c2VjcmV0"}},
            {{"kty":"RSA","use":"enc","kid":"e","n":"AQAB","e":"AQAB"}},
            {{"kty":"EC","crv":"P-521","kid":"p5","x":"AA","y":"AA"}},
            {{"kty":"RSA","kid":"broken"}}, {EC}]}}"#
        );
        let set = KeySet::parse(doc.as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.has_kid("ec1"));
        assert!(
            !set.has_kid("h"),
            "an HMAC secret in a JWKS is never a verification key"
        );
        assert!(KeySet::parse(b"not json").is_err());
    }
}
