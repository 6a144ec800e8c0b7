//! RFC 7662 introspection of opaque access tokens, with the `oauth2` crate's introspection
//! request (HTTP Basic client authentication with the gateway's own credentials at the IdP).
//!
//! An active answer must name this issuer (when it carries `iss`) and this audience (when it
//! carries `aud`); the client is read from the issuer's client id claim (`client_id`, `azp` or
//! `sub` of the answer). It is reused until `exp`, but never longer than
//! `introspection_cache_ttl`, so a revocation at the IdP is seen within that time.

use std::time::Instant;

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
        self.judge(&answer, unix_now())
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
