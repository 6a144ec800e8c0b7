//! Unit tests of token minting and validation.

use std::time::Duration;

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde_json::{json, Value};

use crate::auth::jwt::{b64url_decode, b64url_encode};
use crate::auth::{
    AuthError, ClientSecret, IssuerSettings, Principal, RegisteredClient, TokenError, TokenIssuer,
    SEND_VALIDATE_SCOPE,
};

const ISSUER: &str = "http://127.0.0.1:8080";
const AUDIENCE: &str = "otp-gateway";

fn settings() -> IssuerSettings {
    IssuerSettings {
        signing_keys: Vec::new(),
        issuer: format!("{ISSUER}/"),
        audience: AUDIENCE.to_owned(),
        token_ttl: Duration::from_secs(300),
        clients: vec![
            RegisteredClient {
                token_ttl: None,
                id: "alice".to_owned(),
                auth_method: crate::auth::AuthMethod::ClientSecret,
                keys: None,
                secret: Some(ClientSecret::parse("alice-secret").unwrap()),
                scopes: vec![SEND_VALIDATE_SCOPE.to_owned(), "extra".to_owned()],
            },
            RegisteredClient {
                token_ttl: None,
                id: "bob".to_owned(),
                auth_method: crate::auth::AuthMethod::ClientSecret,
                keys: None,
                secret: Some(
                    ClientSecret::parse(&ClientSecret::hash("bob-secret", 1_000).unwrap()).unwrap(),
                ),
                scopes: vec![SEND_VALIDATE_SCOPE.to_owned()],
            },
        ],
    }
}

fn issuer() -> TokenIssuer {
    TokenIssuer::new(settings()).unwrap()
}

fn now() -> u64 {
    crate::auth::unix_now()
}

/// Claims as the issuer would produce them, valid for a minute.
fn claims() -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "client_id": "alice",
        "iat": now, "nbf": now, "exp": now + 60, "scope": SEND_VALIDATE_SCOPE,
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    if let Some(map) = claims.as_object_mut() {
        map.remove(key);
    }
    claims
}

/// Builds a token from raw header JSON, payload JSON and signature bytes.
fn raw_token(header: &Value, payload: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64url_encode(serde_json::to_vec(header).unwrap()),
        b64url_encode(serde_json::to_vec(payload).unwrap()),
        b64url_encode(signature)
    )
}

#[test]
fn issue_then_validate() {
    let issuer = issuer();
    let all = format!("{SEND_VALIDATE_SCOPE} extra");
    let issued = issuer.issue("alice", "alice-secret", Some(&all)).unwrap();
    assert_eq!(issued.expires_in, 300);
    assert_eq!(issued.scope, format!("{SEND_VALIDATE_SCOPE} extra"));
    let principal = issuer
        .validator()
        .validate(issued.access_token.expose())
        .unwrap();
    assert_eq!(principal.client_id, "alice");
    assert!(principal.has_scope(SEND_VALIDATE_SCOPE));
    assert!(principal.has_scope("extra"));
    assert!(!format!("{issued:?}").contains(issued.access_token.expose()));
}

#[test]
fn issued_claims_and_header() {
    let issuer = issuer();
    let issued = issuer
        .issue("bob", "bob-secret", Some(SEND_VALIDATE_SCOPE))
        .unwrap();
    let parts: Vec<&str> = issued.access_token.expose().split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&b64url_decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], issuer.kid());
    let claims: Value = serde_json::from_slice(&b64url_decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["client_id"], "bob");
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["scope"], SEND_VALIDATE_SCOPE);
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["nbf"].as_u64().unwrap(), iat);
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 300);
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
}

#[test]
fn sign_validate_round_trip() {
    let issuer = issuer();
    let token = issuer.sign(&claims()).unwrap();
    let principal = issuer.validator().validate(&token).unwrap();
    assert_eq!(principal.client_id, "alice");
    assert_eq!(principal.scopes, vec![SEND_VALIDATE_SCOPE.to_owned()]);
}

#[test]
fn client_authentication_failures() {
    let issuer = issuer();
    for (id, secret) in [
        ("alice", "wrong"),
        ("alice", ""),
        ("bob", "alice-secret"),
        ("bob", "wrong"),
        ("mallory", "alice-secret"),
        ("", ""),
    ] {
        assert!(
            matches!(
                issuer.issue(id, secret, Some(SEND_VALIDATE_SCOPE)),
                Err(TokenError::InvalidClient)
            ),
            "{id}/{secret}"
        );
    }
    assert!(issuer
        .issue("bob", "bob-secret", Some(SEND_VALIDATE_SCOPE))
        .is_ok());
}

#[test]
fn scope_selection() {
    let issuer = issuer();
    let t = issuer
        .issue("alice", "alice-secret", Some("extra"))
        .unwrap();
    assert_eq!(t.scope, "extra");
    let t = issuer
        .issue("alice", "alice-secret", Some("extra extra  extra"))
        .unwrap();
    assert_eq!(t.scope, "extra");
    // The scope is required: absent or blank is invalid_scope (no default grant).
    for blank in [None, Some(""), Some("  ")] {
        assert!(matches!(
            issuer.issue("alice", "alice-secret", blank),
            Err(TokenError::InvalidScope)
        ));
    }
    assert!(matches!(
        issuer.issue("bob", "bob-secret", Some("extra")),
        Err(TokenError::InvalidScope)
    ));
    assert!(matches!(
        issuer.issue(
            "bob",
            "bob-secret",
            Some(&format!("{SEND_VALIDATE_SCOPE} admin"))
        ),
        Err(TokenError::InvalidScope)
    ));
}

#[test]
fn scope_less_token_has_no_scopes() {
    let issuer = issuer();
    let token = issuer.sign(&without(claims(), "scope")).unwrap();
    let principal = issuer.validator().validate(&token).unwrap();
    assert!(principal.scopes.is_empty());
    assert!(!principal.has_scope(SEND_VALIDATE_SCOPE));
}

#[test]
fn scp_array_and_sub_fallback() {
    let issuer = issuer();
    let c = without(without(claims(), "scope"), "client_id");
    let c = with(c, "scp", json!(["a", "b"]));
    let principal = issuer
        .validator()
        .validate(&issuer.sign(&c).unwrap())
        .unwrap();
    assert_eq!(principal.client_id, "alice");
    assert_eq!(principal.scopes, vec!["a".to_owned(), "b".to_owned()]);

    let c = without(without(claims(), "client_id"), "sub");
    assert!(matches!(
        issuer.validator().validate(&issuer.sign(&c).unwrap()),
        Err(AuthError::MissingClaim(_))
    ));
    let c = with(claims(), "scope", json!(["not", "a", "string"]));
    assert!(matches!(
        issuer.validator().validate(&issuer.sign(&c).unwrap()),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn tampered_payload_or_signature_is_rejected() {
    let issuer = issuer();
    let validator = issuer.validator();
    let token = issuer.sign(&claims()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();

    let forged = with(claims(), "client_id", json!("mallory"));
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url_encode(serde_json::to_vec(&forged).unwrap()),
        parts[2]
    );
    assert!(matches!(
        validator.validate(&tampered),
        Err(AuthError::BadSignature)
    ));

    let mut signature = b64url_decode(parts[2]).unwrap();
    signature[10] ^= 0x01;
    let tampered = format!("{}.{}.{}", parts[0], parts[1], b64url_encode(&signature));
    assert!(matches!(
        validator.validate(&tampered),
        Err(AuthError::BadSignature)
    ));

    // Truncated and empty signatures.
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        b64url_encode(&signature[..63])
    );
    assert!(matches!(
        validator.validate(&tampered),
        Err(AuthError::BadSignature)
    ));
    let tampered = format!("{}.{}.", parts[0], parts[1]);
    assert!(matches!(
        validator.validate(&tampered),
        Err(AuthError::BadSignature)
    ));

    // The original still validates: failures did not poison anything.
    assert!(validator.validate(&token).is_ok());
}

#[test]
fn algorithms_other_than_es256_are_refused_before_the_signature() {
    let issuer = issuer();
    let validator = issuer.validator();
    let payload = claims();
    let header = |alg: &str| json!({"alg": alg, "typ": "at+jwt", "kid": issuer.kid()});

    // alg none with an empty signature.
    let none = raw_token(&header("none"), &payload, b"");
    assert!(matches!(
        validator.validate(&none),
        Err(AuthError::UnsupportedAlgorithm)
    ));
    let none_upper = raw_token(&header("NONE"), &payload, b"");
    assert!(matches!(
        validator.validate(&none_upper),
        Err(AuthError::UnsupportedAlgorithm)
    ));

    // HS256 keyed with the public key (the algorithm-confusion attack): the
    // MAC is genuinely valid for that key.
    let jwks = issuer.jwks();
    let jwk = &jwks["keys"][0];
    let mut public_point = vec![0x04];
    public_point.extend(b64url_decode(jwk["x"].as_str().unwrap()).unwrap());
    public_point.extend(b64url_decode(jwk["y"].as_str().unwrap()).unwrap());
    let input = format!(
        "{}.{}",
        b64url_encode(serde_json::to_vec(&header("HS256")).unwrap()),
        b64url_encode(serde_json::to_vec(&payload).unwrap())
    );
    let mac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &public_point);
    let mac = ring::hmac::sign(&mac_key, input.as_bytes());
    let hs256 = format!("{input}.{}", b64url_encode(mac.as_ref()));
    assert!(matches!(
        validator.validate(&hs256),
        Err(AuthError::UnsupportedAlgorithm)
    ));

    // RS256 / ES384 / lower-case / missing / non-string alg with a junk signature.
    for alg in [
        json!("RS256"),
        json!("ES384"),
        json!("es256"),
        json!(null),
        json!(256),
    ] {
        let h = json!({"alg": alg, "typ": "at+jwt", "kid": issuer.kid()});
        let token = raw_token(&h, &payload, &[7u8; 256]);
        assert!(
            matches!(
                validator.validate(&token),
                Err(AuthError::UnsupportedAlgorithm)
            ),
            "{alg}"
        );
    }
    let no_alg = raw_token(&json!({"typ": "at+jwt"}), &payload, &[7u8; 64]);
    assert!(matches!(
        validator.validate(&no_alg),
        Err(AuthError::UnsupportedAlgorithm)
    ));

    // An ES256 signature taken from a real token does not make a forged
    // header acceptable either: the header is part of the signed input.
    let real = issuer.sign(&payload).unwrap();
    let real_sig = b64url_decode(real.rsplit('.').next().unwrap()).unwrap();
    let rs = raw_token(&header("RS256"), &payload, &real_sig);
    assert!(matches!(
        validator.validate(&rs),
        Err(AuthError::UnsupportedAlgorithm)
    ));
}

#[test]
fn expired_token_is_rejected() {
    let issuer = issuer();
    let validator = issuer.validator();
    let now = now();
    let token = issuer
        .sign(&with(
            with(claims(), "exp", json!(now - 10)),
            "iat",
            json!(now - 100),
        ))
        .unwrap();
    assert!(matches!(
        validator.validate(&token),
        Err(AuthError::Expired)
    ));
    assert!(!validator.is_cached(&token));

    let c = without(claims(), "exp");
    assert!(matches!(
        validator.validate(&issuer.sign(&c).unwrap()),
        Err(AuthError::MissingClaim("exp"))
    ));
    let c = with(claims(), "exp", json!("tomorrow"));
    assert!(matches!(
        validator.validate(&issuer.sign(&c).unwrap()),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn leeway_on_expiry() {
    let issuer = issuer();
    let validator = issuer.validator();
    let now = now();
    // Expired 2 s ago: within the 5 s clock-skew leeway.
    let token = issuer.sign(&with(claims(), "exp", json!(now - 2))).unwrap();
    assert!(validator.validate_at(&token, now).is_ok());
    assert!(matches!(
        validator.validate_at(&token, now + 3),
        Err(AuthError::Expired)
    ));
}

#[test]
fn cached_token_still_expires() {
    let issuer = issuer();
    let validator = issuer.validator();
    let now = now();
    let token = issuer
        .sign(&with(claims(), "exp", json!(now + 60)))
        .unwrap();
    assert!(validator.validate_at(&token, now).is_ok());
    assert!(validator.is_cached(&token));
    // A clone shares the cache.
    let clone = validator.clone();
    assert!(clone.is_cached(&token));
    assert!(clone.validate_at(&token, now + 30).is_ok());
    // Past exp + leeway the cached entry must not be honoured.
    assert!(matches!(
        clone.validate_at(&token, now + 66),
        Err(AuthError::Expired)
    ));
    assert!(matches!(
        validator.validate_at(&token, now + 600),
        Err(AuthError::Expired)
    ));
    // Also with the real clock: a token at the edge of its lifetime.
    let edge = issuer
        .sign(&with(
            with(claims(), "exp", json!(now)),
            "iat",
            json!(now - 60),
        ))
        .unwrap();
    assert!(validator.validate_at(&edge, now).is_ok());
    assert!(matches!(
        validator.validate_at(&edge, now + 5),
        Err(AuthError::Expired)
    ));
}

#[test]
fn future_tokens_are_not_yet_valid() {
    let issuer = issuer();
    let validator = issuer.validator();
    let now = now();
    let nbf = issuer
        .sign(&with(claims(), "nbf", json!(now + 60)))
        .unwrap();
    assert!(matches!(
        validator.validate(&nbf),
        Err(AuthError::NotYetValid)
    ));
    let iat = issuer
        .sign(&with(claims(), "iat", json!(now + 60)))
        .unwrap();
    assert!(matches!(
        validator.validate(&iat),
        Err(AuthError::NotYetValid)
    ));
    let slight = issuer.sign(&with(claims(), "nbf", json!(now + 2))).unwrap();
    assert!(validator.validate(&slight).is_ok());
    let fractional = issuer
        .sign(&with(claims(), "iat", json!(now as f64 - 0.5)))
        .unwrap();
    assert!(validator.validate(&fractional).is_ok());
}

#[test]
fn wrong_issuer_is_rejected() {
    let issuer = issuer();
    let validator = issuer.validator();
    for iss in [
        json!("http://evil.example"),
        json!(format!("{ISSUER}/")),
        json!([ISSUER]),
        json!(null),
    ] {
        let token = issuer.sign(&with(claims(), "iss", iss.clone())).unwrap();
        assert!(
            matches!(validator.validate(&token), Err(AuthError::WrongIssuer)),
            "{iss}"
        );
    }
    let token = issuer.sign(&without(claims(), "iss")).unwrap();
    assert!(matches!(
        validator.validate(&token),
        Err(AuthError::WrongIssuer)
    ));
}

#[test]
fn audience_checks() {
    let issuer = issuer();
    let validator = issuer.validator();
    for aud in [
        json!("someone-else"),
        json!(["a", "b"]),
        json!([]),
        json!(7),
    ] {
        let token = issuer.sign(&with(claims(), "aud", aud.clone())).unwrap();
        assert!(
            matches!(validator.validate(&token), Err(AuthError::WrongAudience)),
            "{aud}"
        );
    }
    let token = issuer.sign(&without(claims(), "aud")).unwrap();
    assert!(matches!(
        validator.validate(&token),
        Err(AuthError::WrongAudience)
    ));
    let token = issuer
        .sign(&with(claims(), "aud", json!(["other", AUDIENCE])))
        .unwrap();
    assert!(validator.validate(&token).is_ok());
}

#[test]
fn token_from_another_issuer_instance_is_rejected() {
    let ours = issuer();
    let theirs = issuer();
    assert_ne!(ours.kid(), theirs.kid());
    let token = theirs
        .issue("alice", "alice-secret", Some(SEND_VALIDATE_SCOPE))
        .unwrap();
    assert!(matches!(
        ours.validator().validate(token.access_token.expose()),
        Err(AuthError::UnknownKey)
    ));

    // Same claims re-labelled with our kid: the signature gives it away.
    let parts: Vec<&str> = token.access_token.expose().split('.').collect();
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": ours.kid()});
    let relabelled = format!(
        "{}.{}.{}",
        b64url_encode(serde_json::to_vec(&header).unwrap()),
        parts[1],
        parts[2]
    );
    assert!(matches!(
        ours.validator().validate(&relabelled),
        Err(AuthError::BadSignature)
    ));
    // Without a kid the single key is used, and still does not verify.
    let header = json!({"alg": "ES256", "typ": "at+jwt"});
    let kidless = format!(
        "{}.{}.{}",
        b64url_encode(serde_json::to_vec(&header).unwrap()),
        parts[1],
        parts[2]
    );
    assert!(matches!(
        ours.validator().validate(&kidless),
        Err(AuthError::BadSignature)
    ));
}

#[test]
fn garbage_never_panics() {
    let issuer = issuer();
    let validator = issuer.validator();
    let valid = issuer.sign(&claims()).unwrap();
    let huge = "a".repeat(1 << 20);
    let huge_dots = format!("{0}.{0}.{0}", "A".repeat(5_000));
    let mut inputs: Vec<String> = [
        "",
        ".",
        "..",
        "...",
        "a",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "!!!.@@@.###",
        "e30.e30.e30",
        "e30=.e30.",
        "bnVsbA.bnVsbA.AA",
        "W10.W10.AA",
        "\u{00e9}\u{00e9}.\u{00e9}.\u{00e9}",
        "Bearer x.y.z",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    inputs.push(huge);
    inputs.push(huge_dots);
    inputs.push(format!("{valid}."));
    inputs.push(format!(".{valid}"));
    inputs.push(format!(" {valid}"));
    inputs.push(valid.replace('.', ".."));
    // Every prefix of a valid token.
    for n in 0..valid.len() {
        inputs.push(valid[..n].to_owned());
    }
    for input in &inputs {
        assert!(validator.validate(input).is_err(), "accepted {input:?}");
    }
    assert!(validator.validate(&valid).is_ok());
}

#[test]
fn jwks_rebuilds_a_verifying_key() {
    let issuer = issuer();
    let jwks = issuer.jwks();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let jwk = &keys[0];
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwk["alg"], "ES256");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["kid"], issuer.kid());
    assert!(jwk.get("d").is_none(), "private key leaked");
    let x = b64url_decode(jwk["x"].as_str().unwrap()).unwrap();
    let y = b64url_decode(jwk["y"].as_str().unwrap()).unwrap();
    assert_eq!(x.len(), 32);
    assert_eq!(y.len(), 32);

    let mut point = vec![0x04];
    point.extend(&x);
    point.extend(&y);
    let token = issuer
        .issue("alice", "alice-secret", Some(SEND_VALIDATE_SCOPE))
        .unwrap()
        .access_token;
    let (input, signature) = token.expose().rsplit_once('.').unwrap();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(input.as_bytes(), &b64url_decode(signature).unwrap())
        .unwrap();
}

#[test]
fn discovery_document_fields() {
    let issuer = issuer();
    let doc = issuer.discovery_document();
    assert_eq!(doc["issuer"], ISSUER);
    assert_eq!(doc["token_endpoint"], format!("{ISSUER}/oauth2/token"));
    assert_eq!(doc["jwks_uri"], format!("{ISSUER}/oauth2/jwks"));
    assert_eq!(doc["grant_types_supported"], json!(["client_credentials"]));
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert_eq!(doc["response_types_supported"], json!(["token"]));
    assert_eq!(
        doc["scopes_supported"],
        json!(["extra", SEND_VALIDATE_SCOPE])
    );
}

#[test]
fn settings_are_checked() {
    let mut s = settings();
    s.issuer = "/".to_owned();
    assert!(matches!(TokenIssuer::new(s), Err(AuthError::Config(_))));
    let mut s = settings();
    s.audience.clear();
    assert!(TokenIssuer::new(s).is_err());
    let mut s = settings();
    s.token_ttl = Duration::from_millis(500);
    assert!(TokenIssuer::new(s).is_err());
    let mut s = settings();
    let dup = s.clients[0].clone();
    s.clients.push(dup);
    assert!(TokenIssuer::new(s).is_err());
    let mut s = settings();
    s.clients[0].scopes.push("two words".to_owned());
    assert!(TokenIssuer::new(s).is_err());
    let mut s = settings();
    s.clients[0].id.clear();
    assert!(TokenIssuer::new(s).is_err());
    let mut s = settings();
    s.clients.clear();
    let empty = TokenIssuer::new(s).unwrap();
    assert!(matches!(
        empty.issue("alice", "alice-secret", Some(SEND_VALIDATE_SCOPE)),
        Err(TokenError::InvalidClient)
    ));
}

#[test]
fn debug_output_hides_secrets() {
    let s = settings();
    let shown = format!("{s:?}");
    assert!(!shown.contains("alice-secret"));
    let issuer = TokenIssuer::new(s).unwrap();
    assert!(format!("{issuer:?}").contains(ISSUER));
}

#[test]
fn principal_scope_check() {
    let p = Principal {
        client_id: "c".into(),
        scopes: vec![SEND_VALIDATE_SCOPE.into()],
    };
    assert!(p.has_scope(SEND_VALIDATE_SCOPE));
    assert!(!p.has_scope("one-time-password-sms:SEND-VALIDATE"));
    assert!(!p.has_scope(""));
}

#[test]
fn shared_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<TokenIssuer>();
    assert_send_sync::<crate::auth::TokenValidator>();
    assert_send_sync::<ClientSecret>();
}

#[test]
fn long_client_ids_are_cut_for_logs() {
    assert_eq!(super::issuer::loggable("abc"), "abc");
    let long = "\u{e9}".repeat(100);
    assert_eq!(super::issuer::loggable(&long).chars().count(), 64);
}

/// Order n of the P-256 group, big-endian (SEC 2 §2.4.2), written out independently of the
/// implementation so the tests check it rather than mirror it.
const P256_N: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
];

/// n − s on 32-byte big-endian integers (s < n).
fn n_minus(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = (d + 256 * borrow) as u8;
    }
    out
}

/// s ≤ n / 2, i.e. 2·s < n (s·2 computed with its carry).
fn is_low(s: &[u8]) -> bool {
    let mut doubled = [0u8; 33];
    let mut carry = 0u16;
    for i in (0..32).rev() {
        let v = u16::from(s[i]) * 2 + carry;
        doubled[i + 1] = (v & 0xFF) as u8;
        carry = v >> 8;
    }
    doubled[0] = carry as u8;
    let mut n = [0u8; 33];
    n[1..].copy_from_slice(&P256_N);
    doubled < n
}

/// The token with its signature's s replaced by n − s: the other valid ECDSA encoding.
fn with_negated_s(token: &str) -> String {
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut signature = b64url_decode(signature).unwrap();
    let negated = n_minus(&signature[32..]);
    signature[32..].copy_from_slice(&negated);
    format!("{input}.{}", b64url_encode(&signature))
}

#[test]
fn issued_signatures_have_a_low_s() {
    let issuer = issuer();
    for _ in 0..64 {
        let token = issuer.sign(&claims()).unwrap();
        let signature = b64url_decode(token.rsplit_once('.').unwrap().1).unwrap();
        assert!(is_low(&signature[32..]), "high s issued");
    }
}

#[test]
fn a_high_s_signature_is_rejected() {
    let issuer = issuer();
    let validator = issuer.validator();
    for _ in 0..16 {
        let token = issuer.sign(&claims()).unwrap();
        let other = with_negated_s(&token);
        // Exactly one of the two encodings has a low s; only that one is accepted, so each
        // token has one spelling (and one cache entry).
        let signature = b64url_decode(token.rsplit_once('.').unwrap().1).unwrap();
        let (low, high) = if is_low(&signature[32..]) {
            (token, other)
        } else {
            (other, token)
        };
        assert!(matches!(
            validator.validate(&high),
            Err(AuthError::BadSignature)
        ));
        assert!(!validator.is_cached(&high));
        assert!(validator.validate(&low).is_ok());
    }
}

/// The configured form of a PBKDF2 secret with a `len`-byte derived key (two SHA-256 blocks
/// for 64 bytes, which doubles the work per iteration).
fn pbkdf2_config(secret: &str, iterations: u32, len: usize) -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    let salt = [7u8; 16];
    let mut derived = vec![0u8; len];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(iterations).unwrap(),
        &salt,
        secret.as_bytes(),
        &mut derived,
    );
    format!(
        "pbkdf2-sha256${iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(derived)
    )
}

#[test]
fn every_secret_and_the_decoy_cost_the_same_after_load() {
    let mut s = settings();
    // alice is plain, bob 1000 iterations × 1 block; carol 300 iterations × 2 blocks.
    s.clients.push(RegisteredClient {
        token_ttl: None,
        id: "carol".to_owned(),
        auth_method: crate::auth::AuthMethod::ClientSecret,
        keys: None,
        secret: Some(ClientSecret::parse(&pbkdf2_config("carol-secret", 300, 64)).unwrap()),
        scopes: vec![SEND_VALIDATE_SCOPE.to_owned()],
    });
    let issuer = TokenIssuer::new(s).unwrap();
    let (clients, decoy) = issuer.secret_costs();
    assert_eq!(clients.len(), 3);
    for cost in &clients {
        assert_eq!(*cost, 1_000, "{clients:?}");
    }
    assert_eq!(decoy, 1_000);
    // Equal cost, same answers.
    for (id, secret) in [
        ("alice", "alice-secret"),
        ("bob", "bob-secret"),
        ("carol", "carol-secret"),
    ] {
        assert!(
            issuer.issue(id, secret, Some(SEND_VALIDATE_SCOPE)).is_ok(),
            "{id}"
        );
        assert!(matches!(
            issuer.issue(id, "wrong", Some(SEND_VALIDATE_SCOPE)),
            Err(TokenError::InvalidClient)
        ));
    }
}

#[test]
fn plain_secrets_alone_are_hashed_with_the_default_cost() {
    let mut s = settings();
    s.clients.retain(|c| c.id == "alice");
    let issuer = TokenIssuer::new(s).unwrap();
    let (clients, decoy) = issuer.secret_costs();
    assert_eq!(clients, vec![100_000]);
    assert_eq!(decoy, 100_000);
    assert!(issuer
        .issue("alice", "alice-secret", Some(SEND_VALIDATE_SCOPE))
        .is_ok());
}

#[test]
fn tokens_of_clients_not_configured_are_rejected() {
    let issuer = issuer();
    let validator = issuer.validator();
    for id in ["mallory", "Alice", ""] {
        let c = with(with(claims(), "client_id", json!(id)), "sub", json!(id));
        assert!(
            validator.validate(&issuer.sign(&c).unwrap()).is_err(),
            "accepted {id:?}"
        );
    }
    // A configured client still passes, and is allowed only the scopes it still holds.
    let principal = validator
        .validate(&issuer.sign(&claims()).unwrap())
        .unwrap();
    assert!(validator.permits(&principal, SEND_VALIDATE_SCOPE));
    let bob = with(
        with(claims(), "client_id", json!("bob")),
        "scope",
        json!("extra"),
    );
    let principal = validator.validate(&issuer.sign(&bob).unwrap()).unwrap();
    assert!(principal.has_scope("extra"));
    assert!(!validator.permits(&principal, "extra"));
}

#[test]
fn iteration_counts_above_the_cap_are_refused_naming_the_key() {
    use crate::config::{ClientEntry, ConfigError, Settings};
    let entry = |secret: String| ClientEntry {
        id: "heavy".into(),
        secret: secret.as_str().into(),
        scopes: vec![SEND_VALIDATE_SCOPE.into()],
        token_ttl: None,
        rate_limit: None,
        ..Default::default()
    };
    let salt = "AAAAAAAAAAAAAAAAAAAAAA==";
    let hash = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let mut s = Settings::default();
    s.auth.clients = vec![entry(format!("pbkdf2-sha256$2000000${salt}${hash}"))];
    match s.validate() {
        Err(ConfigError::Invalid { key, reason }) => {
            assert!(key.starts_with("auth.clients"), "{key}");
            assert!(reason.contains("1000000"), "{reason}");
        }
        other => panic!("accepted 2000000 iterations: {other:?}"),
    }
    let mut s = Settings::default();
    s.auth.clients = vec![entry(format!("pbkdf2-sha256$1000000${salt}${hash}"))];
    assert!(s.validate().is_ok());
    let mut s = Settings::default();
    s.auth.failed_attempts_total = 0;
    assert!(
        matches!(s.validate(), Err(ConfigError::Invalid { key, .. }) if key == "auth.failed_attempts_total")
    );
    let mut s = Settings::default();
    s.auth.failed_attempts_per_client = 0;
    assert!(
        matches!(s.validate(), Err(ConfigError::Invalid { key, .. }) if key == "auth.failed_attempts_per_client")
    );
    assert!(ClientSecret::hash("x", 1_000_001).is_err());
}

#[test]
fn request_limits_are_checked_naming_the_key() {
    use crate::config::{ConfigError, Settings};
    let mut s = Settings::default();
    s.http.request_timeout = Duration::from_millis(50);
    assert!(
        matches!(s.validate(), Err(ConfigError::Invalid { key, .. }) if key == "http.request_timeout")
    );
    let mut s = Settings::default();
    s.http.max_connections = 0;
    assert!(
        matches!(s.validate(), Err(ConfigError::Invalid { key, .. }) if key == "http.max_connections")
    );
    let s = Settings::default();
    assert_eq!(s.http.request_timeout, Duration::from_secs(10));
    assert!(s.validate().is_ok());
}

/// The verified-token cache is shared with the external issuers (one lookup per request), so
/// an entry an external issuer vouched for must not pass the embedded issuer's own checks,
/// which the admin guard relies on.
#[test]
fn an_externally_vouched_cache_entry_is_not_an_embedded_token() {
    let validator = issuer().validator();
    let token = raw_token(
        &json!({"alg": "ES256", "typ": "at+jwt"}),
        &claims(),
        b"not a signature",
    );
    validator.cache().insert(
        &token,
        crate::auth::validator::CachedToken {
            principal: std::sync::Arc::new(Principal {
                client_id: "alice".into(),
                scopes: vec![crate::auth::ADMIN_SCOPE.into()],
            }),
            valid_until: now() + 300,
            issuer: Some(0),
            kid: None,
        },
    );
    assert!(validator.cache().contains(&token));
    assert!(validator.validate(&token).is_err());
}
