//! JWT access tokens of an external issuer (RFC 9068 profile, RFC 8725 practice).
//!
//! Order of the checks: `alg` against the issuer's list (`none` and HS* cannot even be named:
//! `jsonwebtoken` has no `none`, and HS* is never configurable); the key the `kid` names, of
//! the type `alg` needs (an unknown `kid` triggers one rate-limited JWKS refresh); the
//! signature, `iss`, `aud`, `exp` and `nbf` by `jsonwebtoken` with the issuer's leeway; then
//! `iat`, the client id claim and the scopes here.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Algorithm, Validation};
use serde_json::{Map, Value};

use super::jwks::{JwksCache, KeyType, Lookup};
use super::{Rejected, Vouched};
use crate::auth::{unix_now, Principal};
use crate::config::IssuerConfig;

/// Verifies `token` for `config` with the keys of `jwks`.
pub async fn verify(
    token: &str,
    config: &IssuerConfig,
    jwks: &JwksCache,
) -> Result<Vouched, Rejected> {
    let header = decode_header(token).map_err(|_| Rejected::Malformed("bad JOSE header"))?;
    let alg = header.alg;
    if !config
        .algorithms
        .iter()
        .any(|a| Some(a.as_str()) == alg_name(alg))
    {
        return Err(Rejected::UnsupportedAlgorithm);
    }
    let key_type = KeyType::for_alg(alg).ok_or(Rejected::UnsupportedAlgorithm)?;
    if !jwks.is_loaded() {
        // The refresh task keeps trying; asking here too makes the first request after the IdP
        // comes back succeed without waiting for the task (still rate-limited).
        jwks.refresh("keys not loaded").await;
        if !jwks.is_loaded() {
            return Err(Rejected::Unavailable("keys not loaded".into()));
        }
    }
    let kid = header.kid.as_deref();
    let key = match jwks.current().find(kid, key_type) {
        Lookup::Found(k) => k,
        Lookup::WrongType => return Err(Rejected::KeyMismatch),
        Lookup::Missing => {
            jwks.refresh("unknown kid").await;
            match jwks.current().find(kid, key_type) {
                Lookup::Found(k) => k,
                Lookup::WrongType => return Err(Rejected::KeyMismatch),
                Lookup::Missing => return Err(Rejected::UnknownKey),
            }
        }
    };
    if key.alg.as_deref().is_some_and(|a| Some(a) != alg_name(alg)) {
        return Err(Rejected::KeyMismatch);
    }

    let mut validation = Validation::new(alg);
    validation.algorithms = vec![alg];
    validation.leeway = config.leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_issuer(&[config.issuer.as_str()]);
    validation.set_audience(&[config.audience.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let data =
        decode::<Map<String, Value>>(token, &key.key, &validation).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => Rejected::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                Rejected::UnsupportedAlgorithm
            }
            ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_) => Rejected::KeyMismatch,
            ErrorKind::ExpiredSignature => Rejected::Expired,
            ErrorKind::ImmatureSignature => Rejected::NotYetValid,
            ErrorKind::InvalidIssuer => Rejected::WrongIssuer,
            ErrorKind::InvalidAudience => Rejected::WrongAudience,
            ErrorKind::MissingRequiredClaim(c) => match c.as_str() {
                "exp" => Rejected::MissingClaim("exp"),
                "iss" => Rejected::WrongIssuer,
                _ => Rejected::WrongAudience,
            },
            _ => Rejected::Malformed("undecodable token"),
        })?;
    let (principal, exp) = check_claims(&data.claims, config, unix_now())?;
    Ok(Vouched {
        principal,
        valid_until: exp.saturating_add(config.leeway.as_secs()),
        kid: key.kid.clone(),
    })
}

/// The name of an accepted algorithm.
fn alg_name(alg: Algorithm) -> Option<&'static str> {
    match alg {
        Algorithm::RS256 => Some("RS256"),
        Algorithm::PS256 => Some("PS256"),
        Algorithm::ES256 => Some("ES256"),
        Algorithm::EdDSA => Some("EdDSA"),
        _ => None,
    }
}

/// The checks `jsonwebtoken` does not make: `iat` not in the future, the client id and the
/// scopes. Returns the principal and `exp`.
pub fn check_claims(
    claims: &Map<String, Value>,
    config: &IssuerConfig,
    now: u64,
) -> Result<(Principal, u64), Rejected> {
    let exp = numeric(claims, "exp")?.ok_or(Rejected::MissingClaim("exp"))?;
    let horizon = now.saturating_add(config.leeway.as_secs());
    if numeric(claims, "iat")?.is_some_and(|iat| iat > horizon) {
        return Err(Rejected::NotYetValid);
    }
    let claim = config.client_id_claim.name();
    let client_id = match claims.get(claim) {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(Value::String(_)) | None => return Err(Rejected::MissingClaim(claim)),
        Some(_) => return Err(Rejected::Malformed("client id claim is not a string")),
    };
    let scopes = scopes(claims, config.scope_claim.as_deref())?;
    Ok((Principal { client_id, scopes }, exp))
}

/// A NumericDate claim (seconds, possibly fractional).
fn numeric(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, Rejected> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => match (v.as_u64(), v.as_f64()) {
            (Some(n), _) => Ok(Some(n)),
            // Truncation is the intent: a leeway of seconds makes fractions moot.
            (None, Some(f)) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
            _ => Err(Rejected::Malformed("time claim is not a NumericDate")),
        },
    }
}

/// Scopes from the configured claim, else `scope` (space-separated, RFC 9068 §2.2.3) or `scp`
/// (an array, as Azure AD and Okta write it); a string or an array is taken from either.
pub fn scopes(claims: &Map<String, Value>, claim: Option<&str>) -> Result<Vec<String>, Rejected> {
    let value = match claim {
        Some(name) => claims.get(name),
        None => claims.get("scope").or_else(|| claims.get("scp")),
    };
    match value {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s
            .split(' ')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or(Rejected::Malformed("scope entry is not a string"))
            })
            .collect(),
        Some(_) => Err(Rejected::Malformed(
            "scope claim is neither string nor array",
        )),
    }
}

/// How long an answer stays usable from `now`.
pub fn remaining(valid_until: u64, now: u64) -> Duration {
    Duration::from_secs(valid_until.saturating_sub(now))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::{ClientIdClaim, IssuerConfig, KeySource};

    fn config() -> IssuerConfig {
        IssuerConfig {
            name: "idp".into(),
            issuer: "https://idp.example".into(),
            keys: KeySource::Jwks("https://idp.example/jwks".into()),
            audience: "otp".into(),
            algorithms: vec!["ES256".into()],
            scope_claim: None,
            client_id_claim: ClientIdClaim::ClientId,
            leeway: Duration::from_secs(5),
            jwks_refresh_interval: Duration::from_secs(300),
            jwks_min_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            introspection: None,
            registered_clients_only: false,
        }
    }

    fn map(v: serde_json::Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn scopes_come_from_scope_or_scp_or_the_configured_claim() {
        let c = map(json!({"scope": "a  b", "scp": ["x"]}));
        assert_eq!(scopes(&c, None).unwrap(), ["a", "b"]);
        let c = map(json!({"scp": ["x", "y"]}));
        assert_eq!(scopes(&c, None).unwrap(), ["x", "y"]);
        let c = map(json!({"roles": "r1 r2", "scope": "a"}));
        assert_eq!(scopes(&c, Some("roles")).unwrap(), ["r1", "r2"]);
        assert!(scopes(&map(json!({"scp": [1]})), None).is_err());
        assert!(scopes(&map(json!({})), None).unwrap().is_empty());
    }

    #[test]
    fn the_client_id_claim_is_per_issuer_and_iat_in_the_future_is_refused() {
        let now = 1_000_000;
        let claims =
            map(json!({"exp": now + 60, "iat": now, "client_id": "c1", "azp": "a1", "sub": "s1"}));
        let mut cfg = config();
        assert_eq!(check_claims(&claims, &cfg, now).unwrap().0.client_id, "c1");
        cfg.client_id_claim = ClientIdClaim::Azp;
        assert_eq!(check_claims(&claims, &cfg, now).unwrap().0.client_id, "a1");
        cfg.client_id_claim = ClientIdClaim::Sub;
        assert_eq!(check_claims(&claims, &cfg, now).unwrap().0.client_id, "s1");
        let no_azp = map(json!({"exp": now + 60, "client_id": "c1"}));
        cfg.client_id_claim = ClientIdClaim::Azp;
        assert_eq!(
            check_claims(&no_azp, &cfg, now).unwrap_err(),
            Rejected::MissingClaim("azp")
        );
        let future = map(json!({"exp": now + 600, "iat": now + 60, "client_id": "c1"}));
        assert_eq!(
            check_claims(&future, &config(), now).unwrap_err(),
            Rejected::NotYetValid
        );
        let within_leeway = map(json!({"exp": now + 600, "iat": now + 4, "client_id": "c1"}));
        assert!(check_claims(&within_leeway, &config(), now).is_ok());
    }
}
