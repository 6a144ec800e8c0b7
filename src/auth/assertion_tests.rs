//! Unit tests of `private_key_jwt`: real assertions signed in the test with fresh EC P-256 and
//! Ed25519 keys (ring) and a committed test-only RSA key, against the issuer's token path.

use std::sync::Arc;
use std::time::Duration;

use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};
use serde_json::{json, Value};

use super::*;
use crate::auth::jwt::{b64url_decode, b64url_encode, generate_pkcs8, pkcs8_pem};
use crate::auth::{
    ClientAuth, ClientSecret, IssuerSettings, RegisteredClient, TokenError, TokenIssuer,
    SEND_VALIDATE_SCOPE,
};

const ISSUER: &str = "https://gw.example";
const TOKEN_ENDPOINT: &str = "https://gw.example/oauth2/token";
/// PKCS#8 RSA-2048 key made for these tests with `openssl genpkey`; never used elsewhere.
const TEST_RSA_PEM: &str = include_str!("testdata/test-only-rsa-2048.pem");

/// A client's private key, signing with ring.
enum TestKey {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

impl TestKey {
    fn ec() -> TestKey {
        let rng = SystemRandom::new();
        let der = generate_pkcs8().unwrap();
        TestKey::Ec(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng).unwrap())
    }

    fn ed() -> TestKey {
        let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        TestKey::Ed(Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap())
    }

    fn rsa() -> TestKey {
        TestKey::Rsa(RsaKeyPair::from_pkcs8(&pem_der(TEST_RSA_PEM)).unwrap())
    }

    /// The public key as a JWK under `kid`.
    fn jwk(&self, kid: &str) -> Value {
        match self {
            TestKey::Ec(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": kid,
                       "x": b64url_encode(&p[1..33]), "y": b64url_encode(&p[33..65])})
            }
            TestKey::Ed(k) => json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                                     "x": b64url_encode(k.public_key().as_ref())}),
            TestKey::Rsa(k) => {
                let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA", "kid": kid, "n": b64url_encode(&c.n), "e": b64url_encode(&c.e)})
            }
        }
    }

    /// A compact JWS over `header` and `claims` as given (the alg is the caller's choice).
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64url_encode(header.to_string()),
            b64url_encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let signature = match (self, header["alg"].as_str()) {
            (TestKey::Ec(k), _) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            (TestKey::Ed(k), _) => k.sign(input.as_bytes()).as_ref().to_vec(),
            (TestKey::Rsa(k), alg) => {
                let padding: &dyn ring::signature::RsaEncoding = if alg == Some("PS256") {
                    &RSA_PSS_SHA256
                } else {
                    &RSA_PKCS1_SHA256
                };
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(padding, &rng, input.as_bytes(), &mut sig).unwrap();
                sig
            }
        };
        format!("{input}.{}", b64url_encode(signature))
    }
}

fn jwks(keys: &[Value]) -> ClientKeys {
    ClientKeys::from_json(&json!({ "keys": keys }).to_string()).unwrap()
}

/// Valid claims of an assertion by `client`, alive for a minute.
fn claims(client: &str) -> Value {
    let now = unix_now();
    json!({"iss": client, "sub": client, "aud": TOKEN_ENDPOINT, "iat": now, "exp": now + 60,
           "jti": uuid::Uuid::new_v4().to_string()})
}

fn header(alg: &str, kid: &str) -> Value {
    json!({"alg": alg, "typ": "JWT", "kid": kid})
}

fn client(id: &str, method: AuthMethod, keys: Option<ClientKeys>) -> RegisteredClient {
    RegisteredClient {
        id: id.to_owned(),
        secret: method
            .allows_secret()
            .then(|| ClientSecret::parse(&format!("{id}-secret")).unwrap()),
        auth_method: method,
        keys,
        scopes: vec![SEND_VALIDATE_SCOPE.to_owned()],
        token_ttl: None,
    }
}

fn issuer_with(clients: Vec<RegisteredClient>) -> Arc<TokenIssuer> {
    Arc::new(
        TokenIssuer::new(IssuerSettings {
            issuer: ISSUER.to_owned(),
            audience: "otp-gateway".to_owned(),
            token_ttl: Duration::from_secs(300),
            clients,
            signing_keys: Vec::new(),
        })
        .unwrap(),
    )
}

async fn present(issuer: &Arc<TokenIssuer>, assertion: String) -> Result<String, TokenError> {
    let auth = ClientAuth::Assertion {
        assertion,
        client_id: None,
    };
    Arc::clone(issuer)
        .issue_bounded(auth, Some(SEND_VALIDATE_SCOPE.to_owned()))
        .await
        .map(|t| t.access_token.expose().to_owned())
}

/// One client per key type, each registered with its own key under kid "k1".
struct Fixture {
    issuer: Arc<TokenIssuer>,
    ec: TestKey,
    ed: TestKey,
    rsa: TestKey,
}

fn fixture() -> Fixture {
    let (ec, ed, rsa) = (TestKey::ec(), TestKey::ed(), TestKey::rsa());
    let issuer = issuer_with(vec![
        client(
            "ec-app",
            AuthMethod::PrivateKeyJwt,
            Some(jwks(&[ec.jwk("k1")])),
        ),
        client(
            "ed-app",
            AuthMethod::PrivateKeyJwt,
            Some(jwks(&[ed.jwk("k1")])),
        ),
        client(
            "rsa-app",
            AuthMethod::PrivateKeyJwt,
            Some(jwks(&[rsa.jwk("k1")])),
        ),
        client("both-app", AuthMethod::Any, Some(jwks(&[ec.jwk("k1")]))),
        client("secret-app", AuthMethod::ClientSecret, None),
    ]);
    Fixture {
        issuer,
        ec,
        ed,
        rsa,
    }
}

#[actix_web::test]
async fn valid_assertions_of_every_algorithm_get_a_token_that_validates() {
    let f = fixture();
    for (client, key, alg) in [
        ("ec-app", &f.ec, "ES256"),
        ("ed-app", &f.ed, "EdDSA"),
        ("rsa-app", &f.rsa, "RS256"),
        ("rsa-app", &f.rsa, "PS256"),
    ] {
        let token = present(&f.issuer, key.sign(&header(alg, "k1"), &claims(client)))
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        let principal = f.issuer.validator().validate(&token).unwrap();
        assert_eq!(principal.client_id, client);
        assert!(principal.has_scope(SEND_VALIDATE_SCOPE));
    }
}

#[actix_web::test]
async fn aud_may_be_the_issuer_or_an_array_and_kid_may_be_omitted() {
    let f = fixture();
    let mut c = claims("ec-app");
    c["aud"] = json!(ISSUER);
    assert!(present(&f.issuer, f.ec.sign(&header("ES256", "k1"), &c))
        .await
        .is_ok());
    let mut c = claims("ec-app");
    c["aud"] = json!(["https://other.example", TOKEN_ENDPOINT]);
    assert!(present(&f.issuer, f.ec.sign(&header("ES256", "k1"), &c))
        .await
        .is_ok());
    let mut c = claims("ec-app");
    c.as_object_mut().unwrap().remove("iat");
    assert!(present(&f.issuer, f.ec.sign(&json!({"alg": "ES256"}), &c))
        .await
        .is_ok());
}

#[actix_web::test]
async fn a_replayed_jti_is_refused() {
    let f = fixture();
    let assertion = f.ec.sign(&header("ES256", "k1"), &claims("ec-app"));
    assert!(present(&f.issuer, assertion.clone()).await.is_ok());
    assert!(matches!(
        present(&f.issuer, assertion).await,
        Err(TokenError::InvalidClient)
    ));
    // The same jti in a new, otherwise valid assertion is a replay too.
    let mut c = claims("ec-app");
    let jti = c["jti"].clone();
    assert!(present(&f.issuer, f.ec.sign(&header("ES256", "k1"), &c))
        .await
        .is_ok());
    c["exp"] = json!(unix_now() + 30);
    c["jti"] = jti;
    assert!(matches!(
        present(&f.issuer, f.ec.sign(&header("ES256", "k1"), &c)).await,
        Err(TokenError::InvalidClient)
    ));
}

/// Each case names the check it must trip, verified directly on the verifier so a refusal for
/// the wrong reason (say, a bad signature instead of the lifetime) fails the test.
#[test]
fn every_bad_assertion_is_refused_by_the_check_it_breaks() {
    let (ec, rsa, ed) = (TestKey::ec(), TestKey::rsa(), TestKey::ed());
    let set: JwkSet =
        serde_json::from_value(json!({"keys": [ec.jwk("k1"), rsa.jwk("rsa")]})).unwrap();
    let verifier = AssertionVerifier::new(TOKEN_ENDPOINT.to_owned(), ISSUER.to_owned());
    let now = unix_now();
    let h = header("ES256", "k1");
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut c = claims("app");
        f(&mut c);
        c
    };
    let tampered = {
        let good = ec.sign(&h, &claims("app"));
        let parts: Vec<&str> = good.split('.').collect();
        let mut c: Value = serde_json::from_slice(&b64url_decode(parts[1]).unwrap()).unwrap();
        c["sub"] = json!("app");
        c["scope"] = json!("admin");
        format!("{}.{}.{}", parts[0], b64url_encode(c.to_string()), parts[2])
    };
    // HS256 keyed with the client's public key (the classic algorithm-confusion forgery).
    let hs256 = {
        let input = format!(
            "{}.{}",
            b64url_encode(json!({"alg": "HS256", "kid": "k1"}).to_string()),
            b64url_encode(claims("app").to_string())
        );
        let secret = ec.jwk("k1").to_string();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = ring::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", b64url_encode(tag.as_ref()))
    };
    let unsigned = format!(
        "{}.{}.",
        b64url_encode(json!({"alg": "none"}).to_string()),
        b64url_encode(claims("app").to_string())
    );
    let cases: Vec<(&str, String, AssertionError)> = vec![
        ("alg none", unsigned, AssertionError::Algorithm),
        (
            "HS256 with the public key",
            hs256,
            AssertionError::Algorithm,
        ),
        ("tampered payload", tampered, AssertionError::Signature),
        (
            "signed by another key under the kid",
            TestKey::ec().sign(&h, &claims("app")),
            AssertionError::Signature,
        ),
        (
            "ES256 header on the RSA key's kid",
            ec.sign(&header("ES256", "rsa"), &claims("app")),
            AssertionError::KeyMismatch,
        ),
        (
            "EdDSA header on the EC key's kid",
            ed.sign(&header("EdDSA", "k1"), &claims("app")),
            AssertionError::KeyMismatch,
        ),
        (
            "unknown kid",
            ec.sign(&header("ES256", "k9"), &claims("app")),
            AssertionError::UnknownKey,
        ),
        (
            "lifetime over 300 s",
            ec.sign(&h, &edit(&|c| c["exp"] = json!(now + 301))),
            AssertionError::Lifetime,
        ),
        (
            "lifetime over 300 s without iat",
            ec.sign(
                &h,
                &edit(&|c| {
                    c["exp"] = json!(now + 400);
                    c.as_object_mut().unwrap().remove("iat");
                }),
            ),
            AssertionError::Lifetime,
        ),
        (
            "expired",
            ec.sign(
                &h,
                &edit(&|c| {
                    c["iat"] = json!(now - 120);
                    c["exp"] = json!(now - 60);
                }),
            ),
            AssertionError::Expired,
        ),
        (
            "issued in the future",
            ec.sign(
                &h,
                &edit(&|c| {
                    c["iat"] = json!(now + 60);
                    c["exp"] = json!(now + 120);
                }),
            ),
            AssertionError::NotYetValid,
        ),
        (
            "no exp",
            ec.sign(
                &h,
                &edit(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
            AssertionError::MissingClaim("exp"),
        ),
        (
            "no jti",
            ec.sign(
                &h,
                &edit(&|c| {
                    c.as_object_mut().unwrap().remove("jti");
                }),
            ),
            AssertionError::MissingClaim("jti"),
        ),
        (
            "wrong aud",
            ec.sign(
                &h,
                &edit(&|c| c["aud"] = json!("https://other.example/token")),
            ),
            AssertionError::Audience,
        ),
        (
            "iss is another client",
            ec.sign(&h, &edit(&|c| c["iss"] = json!("mallory"))),
            AssertionError::Issuer,
        ),
        (
            "sub is another client",
            ec.sign(&h, &edit(&|c| c["sub"] = json!("mallory"))),
            AssertionError::Issuer,
        ),
        ("not a JWT", "a.b".to_owned(), AssertionError::Malformed),
    ];
    for (name, assertion, expected) in cases {
        assert_eq!(
            verifier.verify(&assertion, "app", &set),
            Err(expected),
            "{name}"
        );
    }
    // The baseline passes, so the refusals above are the edits' doing.
    assert_eq!(
        verifier.verify(&ec.sign(&h, &claims("app")), "app", &set),
        Ok(())
    );
}

#[actix_web::test]
async fn refusals_at_the_token_path_are_all_invalid_client() {
    let f = fixture();
    let mut wrong_aud = claims("ec-app");
    wrong_aud["aud"] = json!("https://other.example");
    let mut long = claims("ec-app");
    long["exp"] = json!(unix_now() + 3600);
    for assertion in [
        f.ec.sign(&header("ES256", "k1"), &wrong_aud),
        f.ec.sign(&header("ES256", "k1"), &long),
        // ec-app's claims signed with ed-app's key.
        f.ed.sign(&header("EdDSA", "k1"), &claims("ec-app")),
        // A client without keys, and an unknown one.
        f.ec.sign(&header("ES256", "k1"), &claims("secret-app")),
        f.ec.sign(&header("ES256", "k1"), &claims("ghost")),
        "not-a-jwt".to_owned(),
    ] {
        assert!(matches!(
            present(&f.issuer, assertion).await,
            Err(TokenError::InvalidClient)
        ));
    }
}

#[actix_web::test]
async fn the_body_client_id_must_name_the_assertions_client() {
    let f = fixture();
    let auth = |client_id: &str| ClientAuth::Assertion {
        assertion: f.ec.sign(&header("ES256", "k1"), &claims("ec-app")),
        client_id: Some(client_id.to_owned()),
    };
    let scope = || Some(SEND_VALIDATE_SCOPE.to_owned());
    assert!(Arc::clone(&f.issuer)
        .issue_bounded(auth("ec-app"), scope())
        .await
        .is_ok());
    assert!(matches!(
        Arc::clone(&f.issuer)
            .issue_bounded(auth("both-app"), scope())
            .await,
        Err(TokenError::InvalidClient)
    ));
}

#[actix_web::test]
async fn a_private_key_jwt_only_client_cannot_use_a_secret_and_an_any_client_can_use_both() {
    let f = fixture();
    let secret = |id: &str, secret: &str| ClientAuth::Secret {
        id: id.to_owned(),
        secret: secret.to_owned(),
    };
    let scope = || Some(SEND_VALIDATE_SCOPE.to_owned());
    // ec-app has no secret at all; any string is refused.
    assert!(matches!(
        Arc::clone(&f.issuer)
            .issue_bounded(secret("ec-app", "ec-app-secret"), scope())
            .await,
        Err(TokenError::InvalidClient)
    ));
    assert!(Arc::clone(&f.issuer)
        .issue_bounded(secret("both-app", "both-app-secret"), scope())
        .await
        .is_ok());
    assert!(present(
        &f.issuer,
        f.ec.sign(&header("ES256", "k1"), &claims("both-app"))
    )
    .await
    .is_ok());
}

#[actix_web::test]
async fn an_assertion_without_scope_is_invalid_scope_after_authentication() {
    let f = fixture();
    let auth = ClientAuth::Assertion {
        assertion: f.ec.sign(&header("ES256", "k1"), &claims("ec-app")),
        client_id: None,
    };
    assert!(matches!(
        Arc::clone(&f.issuer).issue_bounded(auth, None).await,
        Err(TokenError::InvalidScope)
    ));
}

#[test]
fn key_sets_that_cannot_sign_assertions_are_refused_at_load() {
    for bad in [
        json!({"keys": []}),
        json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
        json!({"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]}),
        json!({"nokeys": 1}),
    ] {
        assert!(ClientKeys::parse_set(&bad.to_string()).is_err(), "{bad}");
    }
    assert!(ClientKeys::parse_set(&json!({"keys": [TestKey::ec().jwk("a")]}).to_string()).is_ok());
}

#[test]
fn a_jwk_naming_another_alg_or_use_does_not_fit() {
    let mut jwk = TestKey::ec().jwk("k");
    let parse = |v: &Value| serde_json::from_value::<Jwk>(v.clone()).unwrap();
    assert!(key_fits(&parse(&jwk), Algorithm::ES256));
    assert!(!key_fits(&parse(&jwk), Algorithm::RS256));
    jwk["use"] = json!("enc");
    assert!(!key_fits(&parse(&jwk), Algorithm::ES256));
    let mut rsa = TestKey::rsa().jwk("r");
    rsa["alg"] = json!("PS256");
    assert!(key_fits(&parse(&rsa), Algorithm::PS256));
    assert!(!key_fits(&parse(&rsa), Algorithm::RS256));
}

#[test]
fn rotation_publishes_every_key_signs_with_the_last_and_accepts_the_older() {
    let (old, new) = (
        pkcs8_pem(&generate_pkcs8().unwrap()),
        pkcs8_pem(&generate_pkcs8().unwrap()),
    );
    let with_keys = |keys: &[&String]| {
        TokenIssuer::new(IssuerSettings {
            issuer: ISSUER.to_owned(),
            audience: "otp-gateway".to_owned(),
            token_ttl: Duration::from_secs(300),
            clients: vec![client("secret-app", AuthMethod::ClientSecret, None)],
            signing_keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
        })
        .unwrap()
    };
    let before = with_keys(&[&old]);
    let during = with_keys(&[&old, &new]);
    let after = with_keys(&[&new]);
    let issue = |i: &TokenIssuer| {
        i.issue("secret-app", "secret-app-secret", Some(SEND_VALIDATE_SCOPE))
            .unwrap()
            .access_token
            .expose()
            .to_owned()
    };
    let kid_of = |token: &str| {
        let header: Value =
            serde_json::from_slice(&b64url_decode(token.split('.').next().unwrap()).unwrap())
                .unwrap();
        header["kid"].as_str().unwrap().to_owned()
    };
    let old_token = issue(&before);
    let new_token = issue(&during);
    assert_eq!(kid_of(&old_token), before.kid());
    assert_eq!(kid_of(&new_token), during.kid());
    assert_ne!(during.kid(), before.kid(), "the newest (last) key signs");
    assert_eq!(during.kid(), after.kid());
    let published: Vec<String> = during.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        published,
        vec![before.kid().to_owned(), during.kid().to_owned()]
    );
    // While listed, the old key's tokens validate; once removed, they do not.
    assert!(during.validator().validate(&old_token).is_ok());
    assert!(during.validator().validate(&new_token).is_ok());
    assert!(after.validator().validate(&old_token).is_err());
    assert!(after.validator().validate(&new_token).is_ok());
}

#[test]
fn discovery_lists_the_methods_and_algorithms_the_clients_can_use() {
    let f = fixture();
    let doc = f.issuer.discovery_document();
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt"
        ])
    );
    assert_eq!(
        doc["token_endpoint_auth_signing_alg_values_supported"],
        json!(["ES256", "RS256", "PS256", "EdDSA"])
    );
    let secrets_only = issuer_with(vec![client("s", AuthMethod::ClientSecret, None)]);
    let doc = secrets_only.discovery_document();
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert!(doc
        .get("token_endpoint_auth_signing_alg_values_supported")
        .is_none());
    let jwt_only = issuer_with(vec![client(
        "j",
        AuthMethod::PrivateKeyJwt,
        Some(jwks(&[TestKey::ec().jwk("k")])),
    )]);
    assert_eq!(
        jwt_only.discovery_document()["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
}
