//! `private_key_jwt` at `POST /oauth2/token` over real HTTP: assertions signed in the test with
//! `jsonwebtoken` (the library a Rust API consumer would use) and a fresh P-256 key; a client
//! whose keys are served at a `jwks_uri` by a real HTTP server started here; signing-key
//! rotation from PEM files.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use otp_gateway::config::ClientEntry;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use crate::helpers::*;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client's P-256 key pair.
struct ClientKey {
    pkcs8: Vec<u8>,
    public: Vec<u8>,
    kid: String,
}

impl ClientKey {
    fn new(kid: &str) -> ClientKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).unwrap();
        ClientKey {
            public: pair.public_key().as_ref().to_vec(),
            pkcs8,
            kid: kid.to_owned(),
        }
    }

    fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&self.public[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&self.public[33..65]),
        }]})
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&self.pkcs8)).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(client: &str, aud: &str) -> Value {
    let now = now();
    json!({"iss": client, "sub": client, "aud": aud, "iat": now, "exp": now + 60,
           "jti": uuid::Uuid::new_v4().to_string()})
}

fn demo() -> ClientEntry {
    ClientEntry {
        id: "demo".into(),
        secret: "demo-secret".into(),
        scopes: vec![SCOPE.into()],
        ..Default::default()
    }
}

fn jwt_client(id: &str, jwks: Option<&Value>, jwks_uri: Option<String>) -> ClientEntry {
    ClientEntry {
        id: id.into(),
        scopes: vec![SCOPE.into()],
        jwks: jwks.map(Value::to_string),
        jwks_uri,
        ..Default::default()
    }
}

/// POSTs a token request with form `body`; returns (status, WWW-Authenticate, JSON body).
async fn token_request(app: &TestApp, body: String) -> (u16, Option<String>, Value) {
    let mut res = app
        .client
        .post(format!("{}/oauth2/token", app.api))
        .content_type("application/x-www-form-urlencoded")
        .send_body(body)
        .await
        .unwrap();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = serde_json::from_slice(&res.body().await.unwrap()).unwrap_or(Value::Null);
    (res.status().as_u16(), challenge, body)
}

fn assertion_form(assertion: &str) -> String {
    format!(
        "grant_type=client_credentials&scope={SCOPE}&client_assertion_type={}&client_assertion={assertion}",
        JWT_BEARER.replace(':', "%3A")
    )
}

#[actix_web::test]
async fn a_valid_assertion_gets_a_token_that_works_on_send_code_and_its_replay_is_invalid_client() {
    let key = ClientKey::new("app-key-1");
    let jwks = key.jwks();
    let mut app = spawn_app_with(|s| {
        s.auth.clients = vec![demo(), jwt_client("jwt-app", Some(&jwks), None)];
    })
    .await;
    let aud = format!("{}/oauth2/token", app.issuer.issuer());
    let assertion = key.sign(&claims("jwt-app", &aud));

    let (status, _, body) = token_request(&app, assertion_form(&assertion)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], SCOPE);
    assert_eq!(body["token_type"], "Bearer");
    app.token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.send_code("+34600000951").await.status, 200);

    let (status, challenge, replayed) = token_request(&app, assertion_form(&assertion)).await;
    assert_eq!(status, 401);
    assert!(challenge.is_some(), "a 401 carries WWW-Authenticate");
    assert_eq!(replayed["error"], "invalid_client");

    // Every assertion failure reads the same: the response never says which check failed.
    let mut long = claims("jwt-app", &aud);
    long["exp"] = json!(now() + 3600);
    let mut wrong_aud = claims("jwt-app", &aud);
    wrong_aud["aud"] = json!("https://elsewhere.example/token");
    for bad in [key.sign(&long), key.sign(&wrong_aud)] {
        let (status, _, body) = token_request(&app, assertion_form(&bad)).await;
        assert_eq!(status, 401);
        assert_eq!(body, replayed);
    }
}

#[actix_web::test]
async fn a_private_key_jwt_only_client_is_refused_with_a_secret_and_a_request_without_scope_is_invalid_scope(
) {
    let key = ClientKey::new("k");
    let jwks = key.jwks();
    let app = spawn_app_with(|s| {
        s.auth.clients = vec![demo(), jwt_client("jwt-only", Some(&jwks), None)];
    })
    .await;
    // No secret configured: whatever is presented, basic or post, is invalid_client.
    for secret in ["", "jwt-only-secret"] {
        let (status, _, body) = token_request(
            &app,
            format!("grant_type=client_credentials&scope={SCOPE}&client_id=jwt-only&client_secret={secret}x"),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
    }
    let aud = app.issuer.issuer().to_owned();
    let form = assertion_form(&key.sign(&claims("jwt-only", &aud)))
        .replace(&format!("&scope={SCOPE}"), "");
    let (status, _, body) = token_request(&app, form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    // An assertion next to a secret is two methods at once.
    let form = format!(
        "{}&client_secret=demo-secret",
        assertion_form(&key.sign(&claims("jwt-only", &aud)))
    );
    let (status, _, body) = token_request(&app, form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

/// A JWKS endpoint of the client's own, counting its hits; the test can change the set.
async fn serve_jwks(jwks: Value) -> (String, Arc<AtomicUsize>, Arc<Mutex<Value>>) {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let hits = Arc::new(AtomicUsize::new(0));
    let published = Arc::new(Mutex::new(jwks));
    let (counter, set) = (Arc::clone(&hits), Arc::clone(&published));
    let server = HttpServer::new(move || {
        let (counter, set) = (Arc::clone(&counter), Arc::clone(&set));
        App::new().route(
            "/jwks.json",
            web::get().to(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let jwks = set.lock().unwrap().clone();
                async move { HttpResponse::Ok().json(jwks) }
            }),
        )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    (format!("http://{addr}/jwks.json"), hits, published)
}

#[actix_web::test]
async fn keys_at_a_jwks_uri_are_cached_refreshed_for_a_rotated_key_and_a_kid_flood_does_not_refetch(
) {
    let key = ClientKey::new("remote-1");
    let (uri, hits, published) = serve_jwks(key.jwks()).await;
    let app = spawn_app_with(|s| {
        s.auth.clients = vec![demo(), jwt_client("remote-app", None, Some(uri))];
        s.auth.client_jwks_min_refresh = std::time::Duration::from_secs(1);
        // The failure budget would stop the flood first; this test is about the refresh bound.
        s.auth.failed_attempts_per_client = 1000;
        s.auth.failed_attempts_total = 1000;
    })
    .await;
    let aud = format!("{}/oauth2/token", app.issuer.issuer());
    let strangers: Vec<ClientKey> = (0..20)
        .map(|i| ClientKey::new(&format!("random-{i}")))
        .collect();
    // Floods unknown kids and checks the fetches it caused. A loaded machine may make the flood
    // outlast the interval, so the bound is one fetch per whole interval elapsed since the last
    // fetch (`since`), which is what the setting promises; on a quick run that is none.
    let flood = |since: std::time::Instant| {
        let (app, aud, strangers, hits) = (&app, &aud, &strangers, &hits);
        async move {
            let before = hits.load(Ordering::SeqCst);
            for stranger in strangers {
                let form = assertion_form(&stranger.sign(&claims("remote-app", aud)));
                assert_eq!(token_request(app, form).await.0, 401);
            }
            let caused = hits.load(Ordering::SeqCst) - before;
            let allowed = since.elapsed().as_secs() as usize;
            assert!(
                caused <= allowed,
                "{caused} fetches in {:?}",
                since.elapsed()
            );
        }
    };
    let first = std::time::Instant::now();
    for _ in 0..3 {
        let (status, _, body) =
            token_request(&app, assertion_form(&key.sign(&claims("remote-app", &aud)))).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the key set is cached");
    flood(first).await;

    // The client rotates its key; past the interval, the new kid triggers one refetch.
    let rotated = ClientKey::new("remote-2");
    *published.lock().unwrap() = rotated.jwks();
    actix_web::rt::time::sleep(std::time::Duration::from_millis(1100)).await;
    let before = hits.load(Ordering::SeqCst);
    let second = std::time::Instant::now();
    let (status, _, body) = token_request(
        &app,
        assertion_form(&rotated.sign(&claims("remote-app", &aud))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before + 1,
        "the new kid was fetched"
    );
    flood(second).await;
    // The retired key is gone from the refreshed set.
    let (status, _, _) =
        token_request(&app, assertion_form(&key.sign(&claims("remote-app", &aud)))).await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn with_two_signing_keys_the_jwks_lists_both_and_new_tokens_carry_the_newest_kid() {
    let dir = std::env::temp_dir().join(format!("otpgw-rotation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = |name: &str| {
        let path = dir.join(name);
        let der = otp_gateway::auth::jwt::generate_pkcs8().unwrap();
        std::fs::write(&path, otp_gateway::auth::jwt::pkcs8_pem(&der)).unwrap();
        path
    };
    let (old, new) = (pem("old.pem"), pem("new.pem"));
    let before = spawn_app_with(|s| s.auth.signing_key_files = vec![old.clone()]).await;
    let old_kid = before.issuer.kid().to_owned();
    let old_token = before.token.clone();
    let mut during =
        spawn_app_with(|s| s.auth.signing_key_files = vec![old.clone(), new.clone()]).await;
    let new_kid = during.issuer.kid().to_owned();
    assert_ne!(old_kid, new_kid);

    let jwks = during
        .request(
            awc::http::Method::GET,
            &format!("{}/oauth2/jwks", during.api),
        )
        .await
        .json();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [old_kid.as_str(), new_kid.as_str()]);
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(during.token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], new_kid.as_str());

    // The old key's token still works while the key is listed.
    during.token = old_token.clone();
    assert_eq!(during.send_code("+34600000952").await.status, 200);
    // After the retirement (old key removed), it is unauthenticated.
    let mut after = spawn_app_with(|s| s.auth.signing_key_files = vec![new.clone()]).await;
    after.token = old_token;
    after
        .send_code("+34600000953")
        .await
        .assert_error(401, "UNAUTHENTICATED");
}

#[actix_web::test]
async fn the_log_names_the_failed_check_without_the_assertion() {
    crate::log_capture::start();
    let key = ClientKey::new("logged-key");
    let jwks = key.jwks();
    let app = spawn_app_with(|s| {
        s.auth.clients = vec![demo(), jwt_client("logged-app", Some(&jwks), None)];
    })
    .await;
    let aud = format!("{}/oauth2/token", app.issuer.issuer());
    let mut long = claims("logged-app", &aud);
    long["exp"] = json!(now() + 301);
    let too_long = key.sign(&long);
    let (status, _, _) = token_request(&app, assertion_form(&too_long)).await;
    assert_eq!(status, 401);
    let log = crate::log_capture::text();
    let line = log
        .lines()
        .find(|l| l.contains("logged-app") && l.contains("client assertion refused"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{log}"));
    assert!(line.contains("lifetime over 300 s"), "{line}");
    for part in too_long.split('.') {
        assert!(!log.contains(part), "the log holds a part of the assertion");
    }
}
