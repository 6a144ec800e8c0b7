//! RFC 7662 introspection of opaque access tokens, with the `oauth2` crate's introspection
//! request (HTTP Basic client authentication with the gateway's own credentials at the IdP).
//!
//! An active answer must name this issuer (when it carries `iss`) and this audience (when it
//! carries `aud`); the client is read from the issuer's client id claim (`client_id`, `azp` or
//! `sub` of the answer). It is reused until `exp`, but never longer than
//! `introspection_cache_ttl`, so a revocation at the IdP is seen within that time.
//!
//! A flood of made-up opaque tokens must not become a flood at the IdP: at most
//! [`MAX_IN_FLIGHT`] introspections per issuer run at once (the others wait their turn, within
//! the issuer's `timeout`, then answer 401 like an IdP that cannot be reached), and a token the
//! IdP called inactive is answered from memory for [`REFUSED_FOR`].

use std::time::{Duration, Instant};

use moka::sync::Cache;
use ring::digest;
use tokio::sync::Semaphore;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenResponse, BasicTokenType,
};
use oauth2::{
    AccessToken, Client, ClientId, ClientSecret, EndpointNotSet, EndpointSet, IntrospectionUrl,
    StandardRevocableToken, StandardTokenIntrospectionResponse, TokenIntrospectionResponse,
};
use serde::{Deserialize, Serialize};

use super::{Rejected, Vouched};
use crate::auth::{unix_now, Principal};
use crate::config::{ClientIdClaim, IntrospectionConfig, IssuerConfig};
use crate::metrics::AuthMetrics;

/// Answer fields beyond RFC 7662's that the client id may be read from.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ExtraFields {
    /// Authorised party.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
}

impl oauth2::ExtraTokenFields for ExtraFields {}

/// The introspection answer.
pub type Answer = StandardTokenIntrospectionResponse<ExtraFields, BasicTokenType>;

type IntrospectionClient = Client<
    BasicErrorResponse,
    BasicTokenResponse,
    Answer,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
>;

/// Introspections of one issuer running at once, at most.
pub const MAX_IN_FLIGHT: usize = 16;
/// How long an inactive answer is reused.
pub const REFUSED_FOR: Duration = Duration::from_secs(10);
/// Inactive answers remembered at most (32 bytes each).
const REFUSED_CAPACITY: u64 = 100_000;

/// Introspects tokens at one IdP.
pub struct Introspector {
    name: String,
    issuer: String,
    audience: String,
    client_id_claim: ClientIdClaim,
    client_id: String,
    client_secret: crate::domain::Secret,
    cache_ttl: u64,
    http: reqwest::Client,
    metrics: AuthMetrics,
    in_flight: Semaphore,
    wait: Duration,
    /// SHA-256 of tokens the IdP called inactive, for [`REFUSED_FOR`].
    refused: Cache<[u8; 32], ()>,
}

impl Introspector {
    /// The introspector of `issuer`.
    pub fn new(
        issuer: &IssuerConfig,
        settings: &IntrospectionConfig,
        http: reqwest::Client,
        metrics: AuthMetrics,
    ) -> Introspector {
        Introspector {
            name: issuer.name.clone(),
            issuer: issuer.issuer.clone(),
            audience: issuer.audience.clone(),
            client_id_claim: issuer.client_id_claim,
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            cache_ttl: settings.cache_ttl.as_secs(),
            http,
            metrics,
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            wait: issuer.timeout,
            refused: Cache::builder()
                .max_capacity(REFUSED_CAPACITY)
                .time_to_live(REFUSED_FOR)
                .build(),
        }
    }

    /// Asks the IdP at `endpoint` (None: discovery has not found it yet).
    pub async fn introspect(
        &self,
        token: &str,
        endpoint: Option<String>,
    ) -> Result<Vouched, Rejected> {
        let endpoint = endpoint
            .ok_or_else(|| Rejected::Unavailable("no introspection endpoint yet".into()))?;
        let mut key = [0u8; 32];
        key.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
        if self.refused.contains_key(&key) {
            return Err(Rejected::Inactive);
        }
        let _permit = tokio::time::timeout(self.wait, self.in_flight.acquire())
            .await
            .map_err(|_| Rejected::Unavailable("too many introspections in flight".into()))?
            .map_err(|_| Rejected::Unavailable("introspection closed".into()))?;
        let url = IntrospectionUrl::new(endpoint)
            .map_err(|e| Rejected::Unavailable(format!("introspection endpoint: {e}")))?;
        let client: IntrospectionClient = Client::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.client_secret.expose().to_owned()))
            .set_introspection_url(url);
        let access = AccessToken::new(token.to_owned());
        let started = Instant::now();
        let answer = client
            .introspect(&access)
            .set_token_type_hint("access_token")
            .request_async(&self.http)
            .await;
        self.metrics
            .introspection_seconds
            .with_label_values(&[self.name.as_str()])
            .observe(started.elapsed().as_secs_f64());
        // The error's text can quote the IdP's answer but never the token.
        let answer = answer.map_err(|e| Rejected::Unavailable(format!("introspection: {e}")))?;
        let verdict = self.judge(&answer, unix_now());
        if matches!(verdict, Err(Rejected::Inactive)) {
            self.refused.insert(key, ());
        }
        verdict
    }

    /// The rules an answer must meet.
    pub fn judge(&self, answer: &Answer, now: u64) -> Result<Vouched, Rejected> {
        if !answer.active() {
            return Err(Rejected::Inactive);
        }
        if answer.iss().is_some_and(|iss| iss != self.issuer) {
            return Err(Rejected::WrongIssuer);
        }
        if answer
            .aud()
            .is_some_and(|aud| !aud.contains(&self.audience))
        {
            return Err(Rejected::WrongAudience);
        }
        let exp = answer
            .exp()
            .map(|t| u64::try_from(t.timestamp()).unwrap_or(0));
        if exp.is_some_and(|exp| exp <= now) {
            return Err(Rejected::Expired);
        }
        if answer
            .nbf()
            .is_some_and(|t| u64::try_from(t.timestamp()).unwrap_or(u64::MAX) > now)
        {
            return Err(Rejected::NotYetValid);
        }
        let client_id = match self.client_id_claim {
            ClientIdClaim::ClientId => answer.client_id().map(|c| c.as_str().to_owned()),
            ClientIdClaim::Azp => answer.extra_fields().azp.clone(),
            ClientIdClaim::Sub => answer.sub().map(str::to_owned),
        }
        .filter(|c| !c.is_empty())
        .ok_or(Rejected::MissingClaim(self.client_id_claim.name()))?;
        let scopes = answer
            .scopes()
            .map(|s| s.iter().map(|s| s.as_str().to_owned()).collect())
            .unwrap_or_default();
        let ceiling = now.saturating_add(self.cache_ttl);
        Ok(Vouched {
            principal: Principal { client_id, scopes },
            valid_until: exp.map_or(ceiling, |e| e.min(ceiling)),
            kid: None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::KeySource;

    fn introspector(claim: ClientIdClaim) -> Introspector {
        let issuer = IssuerConfig {
            name: "idp".into(),
            issuer: "https://idp.example".into(),
            keys: KeySource::Jwks("https://idp.example/jwks".into()),
            audience: "urn:otp".into(),
            algorithms: vec!["RS256".into()],
            scope_claim: None,
            client_id_claim: claim,
            leeway: Duration::from_secs(5),
            jwks_refresh_interval: Duration::from_secs(300),
            jwks_min_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            introspection: None,
            registered_clients_only: false,
        };
        let settings = IntrospectionConfig {
            url: None,
            client_id: "gw".into(),
            client_secret: crate::domain::Secret::new("s3cret-s3cret"),
            cache_ttl: Duration::from_secs(60),
        };
        Introspector::new(
            &issuer,
            &settings,
            reqwest::Client::new(),
            AuthMetrics::detached(),
        )
    }

    fn answer(v: serde_json::Value) -> Answer {
        serde_json::from_value(v).unwrap()
    }

    /// A stand-in IdP (the real oidc-provider cannot report how many introspections it serves
    /// at once): answers every request `{"active": false}` after 100 ms, counting requests and
    /// the most it held at once.
    async fn slow_idp() -> (String, std::sync::Arc<[std::sync::atomic::AtomicUsize; 3]>) {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/introspect", listener.local_addr().unwrap());
        // requests, in flight now, most in flight
        let stats = std::sync::Arc::new([(); 3].map(|_| std::sync::atomic::AtomicUsize::new(0)));
        let s = std::sync::Arc::clone(&stats);
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let s = std::sync::Arc::clone(&s);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut got = Vec::new();
                    // Head and a small form body: read until the body's length is in.
                    loop {
                        let Ok(n) = tcp.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&got).to_lowercase();
                        if let Some(head_end) = text.find("\r\n\r\n") {
                            let len = text
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if got.len() >= head_end + 4 + len {
                                break;
                            }
                        }
                    }
                    s[0].fetch_add(1, SeqCst);
                    let now = s[1].fetch_add(1, SeqCst) + 1;
                    s[2].fetch_max(now, SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    s[1].fetch_sub(1, SeqCst);
                    let body = r#"{"active":false}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tcp.write_all(answer.as_bytes()).await;
                });
            }
        });
        (url, stats)
    }

    #[tokio::test]
    async fn a_flood_of_made_up_tokens_reaches_the_idp_a_few_at_a_time_and_once_each() {
        use std::sync::atomic::Ordering::SeqCst;
        let (url, stats) = slow_idp().await;
        let i = std::sync::Arc::new(introspector(ClientIdClaim::ClientId));
        let flood: Vec<_> = (0..64)
            .map(|n| {
                let i = std::sync::Arc::clone(&i);
                let url = url.clone();
                tokio::spawn(async move { i.introspect(&format!("opaque-{n}"), Some(url)).await })
            })
            .collect();
        for task in flood {
            assert_eq!(task.await.unwrap().unwrap_err(), Rejected::Inactive);
        }
        assert_eq!(stats[0].load(SeqCst), 64);
        let most = stats[2].load(SeqCst);
        assert!(most <= MAX_IN_FLIGHT, "{most} introspections at once");
        // A refused token comes back: answered from memory.
        assert_eq!(
            i.introspect("opaque-7", Some(url)).await.unwrap_err(),
            Rejected::Inactive
        );
        assert_eq!(stats[0].load(SeqCst), 64, "the IdP was not asked again");
    }

    #[test]
    fn an_active_answer_is_cached_until_exp_but_no_longer_than_the_ttl() {
        let now = 1_000_000;
        let i = introspector(ClientIdClaim::ClientId);
        let a = answer(
            serde_json::json!({"active": true, "client_id": "app", "exp": now + 30,
            "scope": "one-time-password-sms:send-validate x", "aud": "urn:otp", "iss": "https://idp.example"}),
        );
        let v = i.judge(&a, now).unwrap();
        assert_eq!(v.principal.client_id, "app");
        assert!(v.principal.has_scope("one-time-password-sms:send-validate"));
        assert_eq!(v.valid_until, now + 30);
        let a = answer(serde_json::json!({"active": true, "client_id": "app", "exp": now + 3600}));
        assert_eq!(i.judge(&a, now).unwrap().valid_until, now + 60);
    }

    #[test]
    fn inactive_foreign_and_expired_answers_are_refused() {
        let now = 1_000_000;
        let i = introspector(ClientIdClaim::ClientId);
        let cases = [
            (serde_json::json!({"active": false}), Rejected::Inactive),
            (
                serde_json::json!({"active": true, "client_id": "a", "iss": "https://other.example"}),
                Rejected::WrongIssuer,
            ),
            (
                serde_json::json!({"active": true, "client_id": "a", "aud": ["urn:other"]}),
                Rejected::WrongAudience,
            ),
            (
                serde_json::json!({"active": true, "client_id": "a", "exp": now - 1}),
                Rejected::Expired,
            ),
            (
                serde_json::json!({"active": true, "sub": "a"}),
                Rejected::MissingClaim("client_id"),
            ),
        ];
        for (a, want) in cases {
            assert_eq!(i.judge(&answer(a.clone()), now).unwrap_err(), want, "{a}");
        }
        let azp = introspector(ClientIdClaim::Azp);
        let a = answer(serde_json::json!({"active": true, "azp": "party", "client_id": "x"}));
        assert_eq!(azp.judge(&a, now).unwrap().principal.client_id, "party");
    }
}
