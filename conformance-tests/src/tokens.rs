//! Access tokens for the system under test: static, or OAuth2 client credentials through the
//! `oauth2` crate (client_secret_basic, client_secret_post or private_key_jwt). Each role's
//! token is fetched once and reused; the expired one is fetched first and waited out.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

use crate::env::{AuthConfig, TokenSource};

/// The client-assertion type of RFC 7523.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A fetched token and when it stops being valid (if the server said).
#[derive(Clone)]
struct Held {
    token: String,
    expires_at: Option<Instant>,
}

/// The roles a scenario can ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A client the environment names under `[auth.named]`.
    Named(String),
    /// Carries the API's scope.
    Valid,
    /// Lacks the scope.
    WithoutScope,
    /// Expired.
    Expired,
    /// Another client.
    OtherClient,
}

/// Fetches and caches tokens.
pub struct Tokens {
    config: AuthConfig,
    agent: ureq::Agent,
    valid: Option<Held>,
    without_scope: Option<Held>,
    other_client: Option<Held>,
    named: std::collections::HashMap<String, Held>,
    expired: Option<(Held, Duration)>,
}

impl Tokens {
    /// Prepares the roles; the expired token (when it comes from the server) is fetched now so
    /// its lifetime runs out while other scenarios run.
    pub fn new(config: AuthConfig, agent: ureq::Agent) -> Result<Tokens, String> {
        let mut t = Tokens {
            config,
            agent,
            valid: None,
            without_scope: None,
            other_client: None,
            named: std::collections::HashMap::new(),
            expired: None,
        };
        if let Some(exp) = t.config.expired.clone() {
            let held = fetch(&exp.source, &t.agent)?;
            t.expired = Some((
                held,
                exp.wait_after_expiry.unwrap_or(Duration::from_secs(6)),
            ));
        }
        Ok(t)
    }

    /// The token for a role, fetching it on first use.
    pub fn get(&mut self, role: Role) -> Result<String, String> {
        let (slot, source) = match &role {
            Role::Named(name) => {
                let source =
                    self.config.named.get(name).ok_or_else(|| {
                        format!("the environment has no [auth.named.{name}] token")
                    })?;
                if let Some(h) = self.named.get(name) {
                    if h.expires_at
                        .is_none_or(|at| at > Instant::now() + Duration::from_secs(5))
                    {
                        return Ok(h.token.clone());
                    }
                }
                let held = fetch(source, &self.agent)?;
                self.named.insert(name.clone(), held.clone());
                return Ok(held.token);
            }
            Role::Valid => (&mut self.valid, Some(&self.config.valid)),
            Role::WithoutScope => (&mut self.without_scope, self.config.without_scope.as_ref()),
            Role::OtherClient => (&mut self.other_client, self.config.other_client.as_ref()),
            Role::Expired => {
                let (held, wait) = self
                    .expired
                    .as_ref()
                    .ok_or("the environment has no [auth.expired] token")?;
                if let Some(at) = held.expires_at {
                    let ready = at + *wait;
                    let now = Instant::now();
                    if ready > now {
                        std::thread::sleep(ready - now);
                    }
                }
                return Ok(held.token.clone());
            }
        };
        let source = source.ok_or_else(|| format!("the environment has no token for {role:?}"))?;
        if let Some(h) = slot {
            if h.expires_at
                .is_none_or(|at| at > Instant::now() + Duration::from_secs(5))
            {
                return Ok(h.token.clone());
            }
        }
        let held = fetch(source, &self.agent)?;
        *slot = Some(held.clone());
        Ok(held.token)
    }
}

fn fetch(source: &TokenSource, agent: &ureq::Agent) -> Result<Held, String> {
    match source {
        TokenSource::Static { token } => Ok(Held {
            token: token.clone(),
            expires_at: None,
        }),
        TokenSource::ClientCredentials {
            token_url,
            client_id,
            client_secret,
            method,
            private_key_file,
            key_id,
            scope,
        } => {
            let url = TokenUrl::new(token_url.clone()).map_err(|e| format!("token_url: {e}"))?;
            let mut client = BasicClient::new(ClientId::new(client_id.clone()))
                .set_token_uri(url)
                .set_auth_type(AuthType::BasicAuth);
            let mut assertion = None;
            match method.as_str() {
                "basic" | "post" => {
                    let secret = client_secret
                        .clone()
                        .ok_or_else(|| format!("client {client_id}: client_secret missing"))?;
                    client = client.set_client_secret(ClientSecret::new(secret));
                    if method == "post" {
                        client = client.set_auth_type(AuthType::RequestBody);
                    }
                }
                "private_key_jwt" => {
                    let key = private_key_file
                        .as_ref()
                        .ok_or_else(|| format!("client {client_id}: private_key_file missing"))?;
                    client = client.set_auth_type(AuthType::RequestBody);
                    assertion = Some(client_assertion(
                        client_id,
                        token_url,
                        key,
                        key_id.as_deref(),
                    )?);
                }
                other => return Err(format!("unknown client auth method {other:?}")),
            }
            let mut req = client.exchange_client_credentials();
            if let Some(scope) = scope {
                for s in scope.split_whitespace() {
                    req = req.add_scope(Scope::new(s.to_string()));
                }
            }
            if let Some(a) = assertion {
                req = req
                    .add_extra_param("client_assertion_type", JWT_BEARER)
                    .add_extra_param("client_assertion", a);
            }
            let started = Instant::now();
            let token = req
                .request(agent)
                .map_err(|e| format!("token request for client {client_id} failed: {e}"))?;
            Ok(Held {
                token: token.access_token().secret().clone(),
                expires_at: token.expires_in().map(|d| started + d),
            })
        }
    }
}

/// An RFC 7523 client assertion signed with the client's P-256 key (ES256).
pub fn client_assertion(
    client_id: &str,
    audience: &str,
    key_file: &Path,
    key_id: Option<&str>,
) -> Result<String, String> {
    let raw = std::fs::read(key_file).map_err(|e| format!("{}: {e}", key_file.display()))?;
    let der = pem_to_der(&raw).unwrap_or(raw);
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
        .map_err(|e| format!("{}: not a PKCS#8 P-256 key ({e})", key_file.display()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut header = json!({"alg": "ES256", "typ": "JWT"});
    if let Some(kid) = key_id {
        header["kid"] = json!(kid);
    }
    let claims = json!({
        "iss": client_id, "sub": client_id, "aud": audience,
        "iat": now, "exp": now + 60, "jti": uuid::Uuid::new_v4().to_string(),
    });
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let sig = key
        .sign(&rng, input.as_bytes())
        .map_err(|_| "signing the client assertion failed".to_string())?;
    Ok(format!("{input}.{}", b64.encode(sig.as_ref())))
}

fn pem_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(raw).ok()?;
    if !text.contains("-----BEGIN") {
        return None;
    }
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::env::TokenSource;
    use ring::signature::{KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    #[test]
    fn client_assertion_is_an_es256_jwt_the_public_key_verifies() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let dir = std::env::temp_dir().join(format!("cc-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        let file = dir.join("key.pem");
        std::fs::write(&file, pem).unwrap();
        let jwt = client_assertion("app", "https://as.example/token", &file, Some("k1")).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "app");
        assert_eq!(claims["aud"], "https://as.example/token");
        let header: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["kid"], "k1");
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref());
        let signed = format!("{}.{}", parts[0], parts[1]);
        public
            .verify(signed.as_bytes(), &b64.decode(parts[2]).unwrap())
            .unwrap();
    }

    /// The CI's private_key_jwt environment names a key file (relative to itself) whose public
    /// half is the one ci/gateway.toml registers for every `*-jwt` client under the same kid.
    #[test]
    fn the_ci_private_key_jwt_environment_signs_with_the_key_the_ci_gateway_registers() {
        let ci = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci");
        let env = crate::env::Environment::load(&ci.join("env-private-key-jwt.toml")).unwrap();
        let TokenSource::ClientCredentials {
            private_key_file: Some(file),
            key_id: Some(kid),
            client_id,
            ..
        } = &env.auth.valid
        else {
            panic!("auth.valid is not a private_key_jwt client");
        };
        assert!(
            file.is_absolute() || file.starts_with(&ci),
            "{}",
            file.display()
        );
        let jwt = client_assertion(client_id, "http://gw/oauth2/token", file, Some(kid)).unwrap();

        let gateway: toml::Value =
            toml::from_str(&std::fs::read_to_string(ci.join("gateway.toml")).unwrap()).unwrap();
        let clients = gateway["auth"]["clients"].as_array().unwrap();
        let jwt_clients: Vec<&toml::Value> = clients
            .iter()
            .filter(|c| c["id"].as_str().unwrap().ends_with("-jwt"))
            .collect();
        assert_eq!(jwt_clients.len(), 5);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        for c in jwt_clients {
            let jwks: serde_json::Value =
                serde_json::from_str(c["jwks"].as_str().unwrap()).unwrap();
            let key = &jwks["keys"][0];
            assert_eq!(key["kid"], kid.as_str());
            let mut point = vec![4u8];
            point.extend(b64.decode(key["x"].as_str().unwrap()).unwrap());
            point.extend(b64.decode(key["y"].as_str().unwrap()).unwrap());
            let (input, sig) = jwt.rsplit_once('.').unwrap();
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
                .verify(input.as_bytes(), &b64.decode(sig).unwrap())
                .unwrap();
        }
    }
}
