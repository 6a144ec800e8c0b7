//! `[[auth.issuers]]`: external identity providers whose access tokens the API accepts, beside
//! (or, with `auth.embedded = false`, instead of) the embedded issuer.

use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::domain::Secret;

/// Algorithms an external token may be signed with; `none` and the HMAC family never are (a
/// resource server shares no secret with the IdP, and HS* with a public key is the classic
/// key-confusion forgery).
pub const SUPPORTED_ALGORITHMS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];

/// The claim that names the calling client in an external token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientIdClaim {
    /// `client_id` (RFC 9068 §2.2).
    #[default]
    ClientId,
    /// `azp` (authorised party, e.g. Keycloak).
    Azp,
    /// `sub` (client-credentials tokens whose subject is the client).
    Sub,
}

impl ClientIdClaim {
    /// The claim name.
    pub fn name(self) -> &'static str {
        match self {
            ClientIdClaim::ClientId => "client_id",
            ClientIdClaim::Azp => "azp",
            ClientIdClaim::Sub => "sub",
        }
    }
}

/// One `[[auth.issuers]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerEntry {
    /// Short name: the `issuer` label of the metrics and the log field; default `issuer<N>`
    /// (its position, from 0).
    #[serde(default)]
    pub name: Option<String>,
    /// The IdP's issuer identifier; a token's `iss` must equal it.
    pub issuer: String,
    /// OpenID Connect / RFC 8414 discovery document; default
    /// `<issuer>/.well-known/openid-configuration` when `jwks_uri` is not given.
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// The IdP's JWKS, when discovery is not used.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The `aud` the gateway's tokens carry at this IdP (a string or one element of an array).
    pub audience: String,
    /// Accepted `alg`s, a subset of [`SUPPORTED_ALGORITHMS`] (default: all of them).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// The claim the scopes are read from (a space-separated string or an array); default
    /// `scope`, else `scp`.
    #[serde(default)]
    pub scope_claim: Option<String>,
    /// The claim naming the client.
    #[serde(default)]
    pub client_id_claim: ClientIdClaim,
    /// Clock tolerance for `exp`, `nbf` and `iat` (at most 5 minutes).
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// How often the JWKS is fetched again without an unknown `kid` asking for it.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh_interval: Duration,
    /// The least time between two JWKS fetches, whatever asks for them: a flood of tokens with
    /// random `kid`s costs the IdP at most one request per interval.
    #[serde(default = "default_jwks_min", with = "humantime_serde")]
    pub jwks_min_interval: Duration,
    /// Timeout of every request to the IdP.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// RFC 7662 endpoint for opaque tokens; default: `introspection_endpoint` of the discovery
    /// document when introspection credentials are configured.
    #[serde(default)]
    pub introspection_url: Option<String>,
    /// The gateway's client id at the IdP, for introspection (HTTP Basic).
    #[serde(default)]
    pub introspection_client_id: Option<String>,
    /// Its secret.
    #[serde(default)]
    pub introspection_client_secret: Option<Secret>,
    /// The longest an introspection answer is trusted before asking again (revocation takes
    /// at most this long to be seen); never beyond the token's `exp`.
    #[serde(default = "default_introspection_ttl", with = "humantime_serde")]
    pub introspection_cache_ttl: Duration,
    /// Accept only clients that have an `[[auth.clients]]` entry; by default any client the
    /// IdP vouches for is served, with default per-client settings when it has no entry.
    #[serde(default)]
    pub registered_clients_only: bool,
}

fn default_leeway() -> Duration {
    Duration::from_secs(crate::auth::CLOCK_SKEW_LEEWAY_SECS)
}
fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}
fn default_jwks_min() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_introspection_ttl() -> Duration {
    Duration::from_secs(60)
}

/// How the JWKS is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Read `jwks_uri` (and `introspection_endpoint`) from this discovery document.
    Discovery(String),
    /// This JWKS URL.
    Jwks(String),
}

/// Introspection endpoint and the gateway's credentials there.
#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    /// Explicit endpoint; `None` means "from discovery".
    pub url: Option<String>,
    /// The gateway's client id at the IdP.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// Upper bound on how long an answer is cached.
    pub cache_ttl: Duration,
}

/// One external issuer after validation.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Metrics label and log name.
    pub name: String,
    /// Expected `iss`, exactly as configured.
    pub issuer: String,
    /// Where the keys come from.
    pub keys: KeySource,
    /// Expected audience.
    pub audience: String,
    /// Accepted algorithms (names from [`SUPPORTED_ALGORITHMS`]).
    pub algorithms: Vec<String>,
    /// Scope claim override.
    pub scope_claim: Option<String>,
    /// Client id claim.
    pub client_id_claim: ClientIdClaim,
    /// Clock tolerance.
    pub leeway: Duration,
    /// Periodic JWKS refresh.
    pub jwks_refresh_interval: Duration,
    /// Minimum JWKS refetch interval.
    pub jwks_min_interval: Duration,
    /// IdP request timeout.
    pub timeout: Duration,
    /// Introspection, when configured.
    pub introspection: Option<IntrospectionConfig>,
    /// Only `[[auth.clients]]` ids are accepted.
    pub registered_clients_only: bool,
}

/// https, or http to a loopback host (a local IdP or a test): keys fetched over plain HTTP
/// from elsewhere could be swapped by anyone on the path.
fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(invalid(key, "must be an absolute http(s) URL"));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let hostname = if host.starts_with('[') {
        host.split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default().to_owned()
    };
    if hostname.is_empty() {
        return Err(invalid(key, "has no host"));
    }
    let loopback = hostname == "localhost"
        || hostname
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match scheme {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(invalid(
            key,
            "must use https (http only to a loopback host)",
        )),
        _ => Err(invalid(key, "must be an http(s) URL")),
    }
}

impl IssuerEntry {
    fn validate(self, index: usize) -> Result<IssuerConfig, ConfigError> {
        let key = |field: &str| format!("auth.issuers[{index}].{field}");
        let name = self.name.unwrap_or_else(|| format!("issuer{index}"));
        if name.is_empty()
            || name.len() > 32
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                &key("name"),
                "1 to 32 characters of [A-Za-z0-9_-] (it is a metrics label)",
            ));
        }
        if self.issuer.trim().is_empty() {
            return Err(invalid(&key("issuer"), "must not be empty"));
        }
        check_url(&key("issuer"), &self.issuer)?;
        let keys = match (self.jwks_uri, self.discovery_url) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    &key("jwks_uri"),
                    "give either jwks_uri or discovery_url, not both",
                ))
            }
            (Some(jwks), None) => {
                check_url(&key("jwks_uri"), &jwks)?;
                KeySource::Jwks(jwks)
            }
            (None, Some(discovery)) => {
                check_url(&key("discovery_url"), &discovery)?;
                KeySource::Discovery(discovery)
            }
            (None, None) => KeySource::Discovery(format!(
                "{}/.well-known/openid-configuration",
                self.issuer.trim_end_matches('/')
            )),
        };
        if self.audience.is_empty() {
            return Err(invalid(&key("audience"), "must not be empty"));
        }
        let algorithms = if self.algorithms.is_empty() {
            SUPPORTED_ALGORITHMS
                .iter()
                .map(|a| (*a).to_owned())
                .collect()
        } else {
            self.algorithms
        };
        if let Some(bad) = algorithms
            .iter()
            .find(|a| !SUPPORTED_ALGORITHMS.contains(&a.as_str()))
        {
            return Err(invalid(
                &key("algorithms"),
                format!("{bad} is not accepted; use RS256, PS256, ES256 or EdDSA"),
            ));
        }
        if self.scope_claim.as_deref().is_some_and(str::is_empty) {
            return Err(invalid(&key("scope_claim"), "must not be empty"));
        }
        if self.leeway > Duration::from_secs(300) {
            return Err(invalid(&key("leeway"), "must be at most 5m"));
        }
        if self.jwks_min_interval < Duration::from_millis(100) {
            return Err(invalid(&key("jwks_min_interval"), "must be at least 100ms"));
        }
        if self.jwks_refresh_interval < self.jwks_min_interval {
            return Err(invalid(
                &key("jwks_refresh_interval"),
                "must be at least jwks_min_interval",
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid(&key("timeout"), "must be positive"));
        }
        if let Some(url) = &self.introspection_url {
            check_url(&key("introspection_url"), url)?;
        }
        let introspection =
            match (
                self.introspection_client_id,
                self.introspection_client_secret,
            ) {
                (Some(client_id), Some(client_secret)) if !client_id.is_empty() => {
                    if self.introspection_url.is_none() && matches!(keys, KeySource::Jwks(_)) {
                        return Err(invalid(
                            &key("introspection_url"),
                            "needed when the IdP is not found by discovery",
                        ));
                    }
                    Some(IntrospectionConfig {
                        url: self.introspection_url,
                        client_id,
                        client_secret,
                        cache_ttl: self.introspection_cache_ttl,
                    })
                }
                (None, None) if self.introspection_url.is_none() => None,
                _ => return Err(invalid(
                    &key("introspection_client_id"),
                    "introspection needs introspection_client_id and introspection_client_secret",
                )),
            };
        Ok(IssuerConfig {
            name,
            issuer: self.issuer,
            keys,
            audience: self.audience,
            algorithms,
            scope_claim: self.scope_claim,
            client_id_claim: self.client_id_claim,
            leeway: self.leeway,
            jwks_refresh_interval: self.jwks_refresh_interval,
            jwks_min_interval: self.jwks_min_interval,
            timeout: self.timeout,
            introspection,
            registered_clients_only: self.registered_clients_only,
        })
    }
}

/// Validates every entry; names and issuer identifiers must be unique, and `embedded_issuer`
/// (when the embedded issuer is on) must not be claimed by an external entry.
pub(super) fn validate_issuers(
    entries: Vec<IssuerEntry>,
    embedded_issuer: Option<&str>,
) -> Result<Vec<IssuerConfig>, ConfigError> {
    let mut out: Vec<IssuerConfig> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let issuer = entry.validate(i)?;
        if out.iter().any(|o| o.name == issuer.name) || issuer.name == "embedded" {
            return Err(invalid(
                &format!("auth.issuers[{i}].name"),
                format!(
                    "{} is used twice (or is the reserved `embedded`)",
                    issuer.name
                ),
            ));
        }
        if out.iter().any(|o| o.issuer == issuer.issuer)
            || embedded_issuer.is_some_and(|e| e == issuer.issuer.trim_end_matches('/'))
        {
            return Err(invalid(
                &format!("auth.issuers[{i}].issuer"),
                "each issuer may be configured once (the embedded issuer's URL included)",
            ));
        }
        out.push(issuer);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(issuer: &str) -> IssuerEntry {
        toml_entry(&format!("issuer = \"{issuer}\"\naudience = \"otp\""))
    }

    fn toml_entry(text: &str) -> IssuerEntry {
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(text))
            .extract()
            .unwrap()
    }

    #[test]
    fn an_entry_defaults_to_discovery_below_the_issuer_and_every_supported_algorithm() {
        let c = validate_issuers(vec![entry("https://idp.example/realms/x/")], None).unwrap();
        assert_eq!(
            c[0].keys,
            KeySource::Discovery(
                "https://idp.example/realms/x/.well-known/openid-configuration".into()
            )
        );
        assert_eq!(c[0].name, "issuer0");
        assert_eq!(c[0].algorithms, SUPPORTED_ALGORITHMS);
        assert_eq!(c[0].client_id_claim, ClientIdClaim::ClientId);
        assert!(c[0].introspection.is_none());
    }

    #[test]
    fn plain_http_is_refused_except_to_a_loopback_host() {
        assert!(validate_issuers(vec![entry("http://127.0.0.1:9000")], None).is_ok());
        assert!(validate_issuers(vec![entry("http://localhost:9000/x")], None).is_ok());
        let err = validate_issuers(vec![entry("http://idp.example")], None).unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
        assert!(validate_issuers(vec![entry("http://[::1]:9000")], None).is_ok());
        assert!(validate_issuers(vec![entry("http://127.0.0.1.evil.example")], None).is_err());
        assert!(validate_issuers(vec![entry("ftp://127.0.0.1")], None).is_err());
    }

    #[test]
    fn hmac_and_none_are_not_configurable() {
        for alg in ["HS256", "none", "RS512"] {
            let mut e = entry("https://idp.example");
            e.algorithms = vec![alg.into()];
            let err = validate_issuers(vec![e], None).unwrap_err().to_string();
            assert!(err.contains("algorithms"), "{alg}: {err}");
        }
    }

    #[test]
    fn duplicate_names_issuers_and_the_embedded_url_are_refused() {
        let err = validate_issuers(
            vec![entry("https://a.example"), entry("https://a.example")],
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("issuers[1].issuer"), "{err}");
        let err = validate_issuers(
            vec![entry("https://gw.example")],
            Some("https://gw.example"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("issuer"), "{err}");
        let mut e = entry("https://b.example");
        e.name = Some("embedded".into());
        assert!(validate_issuers(vec![e], None).is_err());
        let mut e = entry("https://b.example");
        e.name = Some("a label with spaces".into());
        assert!(validate_issuers(vec![e], None).is_err());
    }

    #[test]
    fn introspection_needs_both_credentials_and_an_endpoint_source() {
        let e = toml_entry(
            "issuer = \"https://idp.example\"\naudience = \"otp\"\nintrospection_client_id = \"gw\"",
        );
        assert!(validate_issuers(vec![e], None).is_err());
        let e = toml_entry(
            "issuer = \"https://idp.example\"\naudience = \"otp\"\njwks_uri = \"https://idp.example/jwks\"\n\
             introspection_client_id = \"gw\"\nintrospection_client_secret = \"s3cret-s3cret\"",
        );
        let err = validate_issuers(vec![e], None).unwrap_err().to_string();
        assert!(err.contains("introspection_url"), "{err}");
        let e = toml_entry(
            "issuer = \"https://idp.example\"\naudience = \"otp\"\n\
             introspection_client_id = \"gw\"\nintrospection_client_secret = \"s3cret-s3cret\"\n\
             client_id_claim = \"azp\"\nleeway = \"30s\"",
        );
        let c = validate_issuers(vec![e], None).unwrap();
        let i = c[0].introspection.as_ref().unwrap();
        assert_eq!(i.client_id, "gw");
        assert!(i.url.is_none(), "taken from discovery");
        assert_eq!(c[0].client_id_claim, ClientIdClaim::Azp);
        assert_eq!(c[0].leeway, Duration::from_secs(30));
    }
}
