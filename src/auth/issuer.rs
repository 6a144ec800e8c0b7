//! The gateway's authorisation server: signing keys, registered clients, client
//! authentication (secret or `private_key_jwt`), token minting (client-credentials grant) and
//! the published metadata documents.
//!
//! Key rotation: the issuer holds an ordered list of signing keys (`auth.signing_key_files`).
//! The LAST one is the newest and signs every new token; all of them are published in the
//! JWKS and accepted on presented tokens. To rotate, append a new key and restart (replica by
//! replica); once the longest token lifetime has passed, remove the oldest and restart again.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use crate::auth::assertion::{
    self, AssertionError, AssertionVerifier, AuthMethod, ClientKeys, ALGORITHMS,
};
use crate::auth::jwt::{SigningKey, VerifyingKey};
use crate::auth::secret::DEFAULT_ITERATIONS;
use crate::auth::throttle::{AttemptGuard, AttemptLimits};
use crate::auth::{unix_now, AuthError, ClientSecret, TokenValidator, SEND_VALIDATE_SCOPE};
use crate::domain::Secret;

/// A client allowed to obtain tokens.
#[derive(Debug, Clone)]
pub struct RegisteredClient {
    /// OAuth2 client id.
    pub id: String,
    /// The client's secret (its `Debug` output is redacted); `None` for a client that
    /// authenticates with `private_key_jwt` only.
    pub secret: Option<ClientSecret>,
    /// Which authentication methods the client may use.
    pub auth_method: AuthMethod,
    /// The client's public keys for `private_key_jwt`.
    pub keys: Option<ClientKeys>,
    /// Scopes the client may request.
    pub scopes: Vec<String>,
    /// Lifetime of this client's tokens, when it differs from the issuer's (short-lived
    /// tokens for test or high-risk clients).
    pub token_ttl: Option<Duration>,
}

/// What [`TokenIssuer::new`] needs.
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    /// Issuer identifier and base URL, e.g. `http://127.0.0.1:8080`; a
    /// trailing slash is removed.
    pub issuer: String,
    /// Value put in (and required of) the `aud` claim.
    pub audience: String,
    /// Lifetime of issued tokens (whole seconds, at least one).
    pub token_ttl: Duration,
    /// Clients allowed to obtain tokens.
    pub clients: Vec<RegisteredClient>,
    /// PKCS#8 (DER or PEM) signing keys, oldest first: the last signs new tokens, all
    /// validate. Empty generates one for this process only.
    pub signing_keys: Vec<Vec<u8>>,
}

/// How a token request authenticated its client, as parsed from the request.
#[derive(Clone)]
pub enum ClientAuth {
    /// `client_secret_basic` or `client_secret_post`.
    Secret {
        /// The presented client id.
        id: String,
        /// The presented secret.
        secret: String,
    },
    /// `private_key_jwt` (RFC 7523).
    Assertion {
        /// The `client_assertion` JWT.
        assertion: String,
        /// The optional body `client_id`, which must then name the assertion's client.
        client_id: Option<String>,
    },
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::Secret { id, .. } => f
                .debug_struct("Secret")
                .field("id", id)
                .finish_non_exhaustive(),
            ClientAuth::Assertion { client_id, .. } => f
                .debug_struct("Assertion")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
        }
    }
}

/// A freshly minted access token.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The signed JWT (a bearer credential: never printed).
    pub access_token: Secret,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Granted scopes, space-separated.
    pub scope: String,
}

/// Failure of a token request, one variant per RFC 6749 §5.2 error code used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// `invalid_request`: missing or repeated parameter, wrong content type,
    /// several authentication methods, ….
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// `invalid_client`: unknown client, wrong secret or no authentication.
    #[error("client authentication failed")]
    InvalidClient,
    /// `unsupported_grant_type`: anything but `client_credentials`.
    #[error("only the client_credentials grant type is supported")]
    UnsupportedGrantType,
    /// `invalid_scope`: a requested scope is unknown or not granted to the client.
    #[error("requested scope is invalid or not granted to this client")]
    InvalidScope,
    /// `temporarily_unavailable` (429): too many failed client authentications for this
    /// client id or overall; no secret was checked.
    #[error("too many failed client authentications; retry later")]
    TooManyAttempts {
        /// When a new attempt may be admitted.
        retry_after: Duration,
    },
    /// `server_error`: the token could not be produced.
    #[error("the token could not be issued")]
    Server(#[from] AuthError),
}

impl TokenError {
    /// The RFC 6749 §5.2 `error` code.
    pub fn error_code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidClient => "invalid_client",
            TokenError::UnsupportedGrantType => "unsupported_grant_type",
            TokenError::InvalidScope => "invalid_scope",
            // RFC 6749 §4.1.2.1's code for an overloaded authorisation server; §5.2 has none.
            TokenError::TooManyAttempts { .. } => "temporarily_unavailable",
            TokenError::Server(_) => "server_error",
        }
    }

    /// HTTP status to answer with: 401 for client authentication failures
    /// (RFC 6749 §5.2), 429 past the failure budget, 500 for internal failures, else 400.
    pub fn status(&self) -> StatusCode {
        match self {
            TokenError::InvalidClient => StatusCode::UNAUTHORIZED,
            TokenError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            TokenError::Server(_) => StatusCode::INTERNAL_SERVER_ERROR,
            TokenError::InvalidRequest(_)
            | TokenError::UnsupportedGrantType
            | TokenError::InvalidScope => StatusCode::BAD_REQUEST,
        }
    }
}

/// Owns the ES256 signing keys (from files, or one generated in memory at start, whose
/// tokens then do not survive a restart), the registered clients and the token lifetime.
pub struct TokenIssuer {
    /// The newest key, which signs new tokens.
    signer: SigningKey,
    /// Public halves of every listed key, oldest first, for the JWKS and the validator.
    publics: Vec<VerifyingKey>,
    /// `private_key_jwt` checks and the `jti` replay cache.
    assertions: AssertionVerifier,
    issuer: String,
    audience: String,
    ttl_secs: u64,
    clients: HashMap<String, RegisteredClient>,
    /// Checked instead of a real secret for unknown client ids.
    decoy: ClientSecret,
    validator: TokenValidator,
    /// Failure budgets and the verification pool of [`TokenIssuer::issue_bounded`].
    guard: AttemptGuard,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kid", &self.kid())
            .field("keys", &self.publics.len())
            .field("ttl_secs", &self.ttl_secs)
            .field("clients", &self.clients.len())
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

/// An attacker-chosen client id cut to a sane length for logs; it is logged
/// with `?` so control characters are escaped rather than forging lines.
pub(crate) fn loggable(id: &str) -> &str {
    let end = id
        .char_indices()
        .nth(64)
        .map_or(id.len(), |(index, _)| index);
    id.get(..end).unwrap_or_default()
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

impl TokenIssuer {
    /// Generates the key pair and checks the settings (non-empty issuer and
    /// audience, TTL of at least a second, unique non-empty client ids,
    /// well-formed scopes).
    pub fn new(settings: IssuerSettings) -> Result<TokenIssuer, AuthError> {
        let issuer = settings.issuer.trim_end_matches('/').to_owned();
        if issuer.is_empty() {
            return Err(AuthError::Config("issuer must not be empty".to_owned()));
        }
        if settings.audience.is_empty() {
            return Err(AuthError::Config("audience must not be empty".to_owned()));
        }
        let ttl_secs = settings.token_ttl.as_secs();
        if ttl_secs == 0 {
            return Err(AuthError::Config(
                "token ttl must be at least one second".to_owned(),
            ));
        }
        // Every check must cost the same, or the response time tells registered ids (and
        // which of them have a clear secret) apart: clear secrets are hashed now and cheaper
        // hashes padded, to the most expensive configured hash (or the default cost), and the
        // decoy checked for unknown ids costs as much.
        let cost = settings
            .clients
            .iter()
            .filter_map(|c| c.secret.as_ref())
            .filter(|s| matches!(s, ClientSecret::Pbkdf2 { .. }))
            .map(ClientSecret::cost)
            .max()
            .unwrap_or(u64::from(DEFAULT_ITERATIONS));
        let mut clients = HashMap::with_capacity(settings.clients.len());
        for mut client in settings.clients {
            if client.id.is_empty() {
                return Err(AuthError::Config("client id must not be empty".to_owned()));
            }
            if let Some(bad) = client.scopes.iter().find(|s| !is_scope_token(s)) {
                return Err(AuthError::Config(format!(
                    "client {}: invalid scope {bad:?}",
                    client.id
                )));
            }
            if clients.contains_key(&client.id) {
                return Err(AuthError::Config(format!(
                    "client {} is registered twice",
                    client.id
                )));
            }
            if client.auth_method.allows_secret() && client.secret.is_none() {
                return Err(AuthError::Config(format!(
                    "client {}: client_secret allowed but no secret",
                    client.id
                )));
            }
            if client.auth_method.allows_assertion() && client.keys.is_none() {
                return Err(AuthError::Config(format!(
                    "client {}: private_key_jwt allowed but no keys",
                    client.id
                )));
            }
            client.secret = client.secret.map(|s| s.equalised(cost)).transpose()?;
            clients.insert(client.id.clone(), client);
        }
        let decoy = ClientSecret::decoy(clients.values().find_map(|c| c.secret.as_ref()));
        let mut keys = settings
            .signing_keys
            .iter()
            .map(|bytes| SigningKey::from_pkcs8(bytes))
            .collect::<Result<Vec<_>, _>>()?;
        let publics = keys
            .iter()
            .map(SigningKey::verifying_key)
            .collect::<Result<Vec<_>, _>>()?;
        let (signer, publics) = match keys.pop() {
            Some(newest) => (newest, publics),
            None => {
                let generated = SigningKey::generate()?;
                let public = generated.verifying_key()?;
                (generated, vec![public])
            }
        };
        let validator = TokenValidator::new(
            issuer.clone(),
            settings.audience.clone(),
            publics.clone(),
            clients.values().map(|c| (c.id.clone(), c.scopes.clone())),
        );
        Ok(TokenIssuer {
            assertions: AssertionVerifier::new(format!("{issuer}/oauth2/token"), issuer.clone()),
            signer,
            publics,
            issuer,
            audience: settings.audience,
            ttl_secs,
            clients,
            decoy,
            validator,
            guard: AttemptGuard::new(AttemptLimits::default()),
        })
    }

    /// The same issuer with other failure budgets (see [`AttemptLimits`]).
    pub fn with_attempt_limits(mut self, limits: AttemptLimits) -> TokenIssuer {
        self.guard = AttemptGuard::new(limits);
        self
    }

    /// The failure budgets in force.
    pub fn attempt_limits(&self) -> AttemptLimits {
        self.guard.limits()
    }

    /// Client authentication and token issuance as the token endpoint runs them: refused at
    /// once (429) when the client id or the whole endpoint is past its budget of failed
    /// authentications, and the secret or assertion checked on the bounded verification pool,
    /// off the async workers. A failed authentication spends one unit of both budgets; anything
    /// else spends nothing.
    pub async fn issue_bounded(
        self: Arc<Self>,
        auth: ClientAuth,
        requested_scope: Option<String>,
    ) -> Result<IssuedToken, TokenError> {
        // The budget is kept per presented client id; for an assertion that is its unverified
        // sub (or the body client_id, which must then agree).
        let client_id = match &auth {
            ClientAuth::Secret { id, .. } => id.clone(),
            ClientAuth::Assertion {
                assertion,
                client_id,
            } => match assertion::claimed_client(assertion) {
                Ok(claimed) if client_id.as_ref().is_none_or(|id| *id == claimed) => claimed,
                Ok(claimed) => {
                    tracing::info!(
                        client_id = ?loggable(&claimed),
                        "client assertion refused: body client_id names another client"
                    );
                    return Err(TokenError::InvalidClient);
                }
                Err(e) => {
                    tracing::info!(check = %e, "client assertion refused");
                    return Err(TokenError::InvalidClient);
                }
            },
        };
        let reservation = self.guard.admit(&client_id).map_err(|retry_after| {
            tracing::info!(
                client_id = ?loggable(&client_id),
                "token request refused: too many failed client authentications"
            );
            TokenError::TooManyAttempts { retry_after }
        })?;
        let outcome = match auth {
            ClientAuth::Secret { id, secret } => {
                self.run_on_pool(move |issuer| {
                    issuer.issue(&id, &secret, requested_scope.as_deref())
                })
                .await
            }
            ClientAuth::Assertion { assertion, .. } => {
                self.issue_for_assertion(client_id, assertion, requested_scope)
                    .await
            }
        };
        if !matches!(outcome, Err(TokenError::InvalidClient)) {
            self.guard.refund(reservation);
        }
        outcome
    }

    /// Runs `work` on the bounded verification pool, off the async workers.
    async fn run_on_pool<F>(self: &Arc<Self>, work: F) -> Result<IssuedToken, TokenError>
    where
        F: FnOnce(&TokenIssuer) -> Result<IssuedToken, TokenError> + Send + 'static,
    {
        // Waiters are bounded by the budgets: each holds a reservation.
        let permit = self
            .guard
            .pool()
            .acquire_owned()
            .await
            .map_err(|_| AuthError::Crypto("verification pool closed"))?;
        let issuer = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&issuer)
        })
        .await
        .map_err(|_| AuthError::Crypto("client verification failed to run"))?
    }

    /// `private_key_jwt`: finds the client and its keys (fetching a `jwks_uri` if need be),
    /// verifies the assertion on the pool and mints the token.
    async fn issue_for_assertion(
        self: &Arc<Self>,
        client_id: String,
        assertion: String,
        requested_scope: Option<String>,
    ) -> Result<IssuedToken, TokenError> {
        let refuse = |client_id: &str, check: AssertionError| {
            tracing::info!(client_id = ?loggable(client_id), check = %check, "client assertion refused");
            TokenError::InvalidClient
        };
        let keys = self.clients.get(&client_id).and_then(|client| {
            client
                .keys
                .as_ref()
                .filter(|_| client.auth_method.allows_assertion())
        });
        let Some(keys) = keys else {
            tracing::info!(
                client_id = ?loggable(&client_id),
                "client assertion from an unknown client or one not allowed private_key_jwt"
            );
            // As much work as a registered client's assertion (an ES256 check).
            return self
                .run_on_pool(move |issuer| {
                    issuer.assertions.verify_decoy(&assertion);
                    Err(TokenError::InvalidClient)
                })
                .await;
        };
        let kid = jsonwebtoken::decode_header(&assertion)
            .ok()
            .and_then(|h| h.kid);
        let set = keys
            .current(kid.as_deref())
            .await
            .map_err(|e| refuse(&client_id, e))?;
        self.run_on_pool(move |issuer| {
            issuer
                .assertions
                .verify(&assertion, &client_id, &set)
                .map_err(|e| refuse(&client_id, e))?;
            let client = issuer
                .clients
                .get(&client_id)
                .ok_or(TokenError::InvalidClient)?;
            issuer.mint(client, requested_scope.as_deref())
        })
        .await
    }

    /// What checking each registered client's secret costs, and what the decoy checked for
    /// unknown ids costs (see [`ClientSecret::cost`]).
    #[cfg(test)]
    pub(crate) fn secret_costs(&self) -> (Vec<u64>, u64) {
        let clients = self
            .clients
            .values()
            .filter_map(|c| c.secret.as_ref())
            .map(ClientSecret::cost)
            .collect();
        (clients, self.decoy.cost())
    }

    /// The issuer identifier (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience of issued tokens.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The key id of the signing key (the newest listed).
    pub fn kid(&self) -> &str {
        self.signer.kid()
    }

    /// Authenticates the client by its secret (constant time, unknown ids included) and
    /// returns a signed token for the requested scopes (required; each granted to the client).
    pub fn issue(
        &self,
        client_id: &str,
        secret: &str,
        requested_scope: Option<&str>,
    ) -> Result<IssuedToken, TokenError> {
        let client = match self.clients.get(client_id) {
            Some(client) => match client
                .secret
                .as_ref()
                .filter(|_| client.auth_method.allows_secret())
            {
                Some(known) if known.verify(secret) => client,
                Some(_) => {
                    tracing::info!(client_id, "token request with a wrong client secret");
                    return Err(TokenError::InvalidClient);
                }
                None => {
                    std::hint::black_box(self.decoy.verify(secret));
                    tracing::info!(
                        client_id,
                        "client secret presented by a private_key_jwt-only client"
                    );
                    return Err(TokenError::InvalidClient);
                }
            },
            None => {
                // Same work as for a known id; black_box keeps the optimiser
                // from dropping a computation whose result is unused.
                std::hint::black_box(self.decoy.verify(secret));
                tracing::info!(
                    client_id = ?loggable(client_id),
                    "token request from an unknown client"
                );
                return Err(TokenError::InvalidClient);
            }
        };

        self.mint(client, requested_scope)
    }

    /// Resolves the scopes of an authenticated client's request and signs its token. The
    /// scope is required (CAMARA: a token carries exactly what the consumer asked for):
    /// absent or blank → `invalid_scope`, as is any scope not granted to the client.
    fn mint(
        &self,
        client: &RegisteredClient,
        requested_scope: Option<&str>,
    ) -> Result<IssuedToken, TokenError> {
        let client_id = client.id.as_str();
        let scopes = match requested_scope.map(str::trim).filter(|s| !s.is_empty()) {
            None => {
                tracing::info!(client_id, "token request without a scope");
                return Err(TokenError::InvalidScope);
            }
            Some(requested) => {
                let mut granted: Vec<String> = Vec::new();
                for scope in requested.split(' ').filter(|s| !s.is_empty()) {
                    if !client.scopes.iter().any(|s| s == scope) {
                        tracing::info!(client_id, "token request for a scope not granted");
                        return Err(TokenError::InvalidScope);
                    }
                    if !granted.iter().any(|s| s == scope) {
                        granted.push(scope.to_owned());
                    }
                }
                granted
            }
        };
        let scope = scopes.join(" ");

        let ttl_secs = client
            .token_ttl
            .map_or(self.ttl_secs, |d| d.as_secs().max(1));
        let now = unix_now();
        let claims = json!({
            "iss": self.issuer,
            "sub": client.id,
            "client_id": client.id,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now.saturating_add(ttl_secs),
            "jti": uuid::Uuid::new_v4().to_string(),
            "scope": scope,
        });
        let access_token = self.sign(&claims)?;
        tracing::debug!(client_id, scope = %scope, "access token issued");
        Ok(IssuedToken {
            access_token: Secret::new(access_token),
            expires_in: ttl_secs,
            scope,
        })
    }

    /// Signs arbitrary claims with the issuer's key (tests use it to craft
    /// expired or scope-less tokens).
    pub fn sign(&self, claims: &Value) -> Result<String, AuthError> {
        self.signer.sign(claims)
    }

    /// A validator for this issuer's tokens; all validators of one issuer
    /// share the verified-token cache.
    pub fn validator(&self) -> TokenValidator {
        self.validator.clone()
    }

    /// OpenID Provider / OAuth2 authorisation-server metadata
    /// (served at `/.well-known/openid-configuration`).
    pub fn discovery_document(&self) -> Value {
        let scopes: BTreeSet<&str> = self
            .clients
            .values()
            .flat_map(|c| c.scopes.iter().map(String::as_str))
            .chain(std::iter::once(SEND_VALIDATE_SCOPE))
            .collect();
        let secrets = self.clients.values().any(|c| c.auth_method.allows_secret());
        let assertions = self
            .clients
            .values()
            .any(|c| c.auth_method.allows_assertion());
        let mut methods = Vec::new();
        if secrets {
            methods.extend(["client_secret_basic", "client_secret_post"]);
        }
        if assertions {
            methods.push("private_key_jwt");
        }
        let mut document = json!({
            "issuer": self.issuer,
            "token_endpoint": format!("{}/oauth2/token", self.issuer),
            "jwks_uri": format!("{}/oauth2/jwks", self.issuer),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": methods,
            "id_token_signing_alg_values_supported": ["ES256"],
            "scopes_supported": scopes,
            "response_types_supported": ["token"],
        });
        if assertions {
            let algs: Vec<String> = ALGORITHMS.iter().map(|a| format!("{a:?}")).collect();
            document["token_endpoint_auth_signing_alg_values_supported"] = json!(algs);
        }
        document
    }

    /// The JSON Web Key Set with every listed signing key, so tokens of an older key validate
    /// at resource servers too while it is listed.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.publics.iter().map(VerifyingKey::jwk).collect();
        json!({ "keys": keys })
    }
}
