//! External identity providers (`[[auth.issuers]]`) against a real OpenID Connect provider that
//! nobody here wrote: npm `oidc-provider`, run by `scripts/oidc/provider.mjs` on 127.0.0.1 on a
//! free port (installed by `scripts/test` with `npm ci --prefix scripts/oidc`; without it these
//! tests fail and say so). Its JWT access tokens (every accepted algorithm) and its introspected
//! opaque tokens work; other audiences, missing scopes, revoked tokens and rotated keys are
//! refused; and the attack matrix below forges tokens with the IdP's own keys (the script
//! writes them to a file) to reach each check behind the signature.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use otp_gateway::config::IssuerEntry;
use serde_json::{json, Value};

use crate::helpers::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const AUDIENCE: &str = "urn:otp-gateway";
const VALIDATE: &str = "/one-time-password-sms/v1/validate-code";
/// The configured minimum JWKS refetch interval of these tests.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A running oidc-provider; killed on drop.
struct Idp {
    child: Child,
    port: u16,
    keys: PathBuf,
    jwks_hits: Arc<AtomicUsize>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Idp {
    fn start() -> Idp {
        let port = free_port();
        let keys = std::env::temp_dir().join(format!(
            "otpgw-oidc-keys-{}-{port}.json",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&keys);
        Idp::spawn(port, keys, false)
    }

    fn spawn(port: u16, keys: PathBuf, rotate: bool) -> Idp {
        let root = Path::new(ROOT);
        assert!(
            root.join("scripts/oidc/node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: run `npm ci --prefix scripts/oidc` (as scripts/test does)"
        );
        let mut cmd = Command::new("node");
        cmd.arg(root.join("scripts/oidc/provider.mjs"))
            .args(["--port", &port.to_string(), "--keys"])
            .arg(&keys);
        if rotate {
            cmd.arg("--rotate");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node for oidc-provider: {e}"));
        let stdout = child.stdout.take().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match line.trim() {
                    "READY" => {
                        let _ = tx.send(());
                    }
                    "JWKS_HIT" => {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
        });
        let idp = Idp {
            child,
            port,
            keys,
            jwks_hits: hits,
        };
        rx.recv_timeout(Duration::from_secs(20))
            .expect("oidc-provider did not start");
        idp
    }

    /// Stops this provider and starts one with fresh keys on the same port.
    fn rotate(mut self) -> Idp {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (port, keys) = (self.port, self.keys.clone());
        std::mem::forget(self);
        Idp::spawn(port, keys, true)
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }

    /// A signing key of the IdP: (kid, private PEM, public PEM).
    fn key(&self, kind: &str) -> (String, String, String) {
        let keys: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.keys).unwrap()).unwrap();
        let k = keys
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["type"] == kind)
            .unwrap();
        (
            k["jwk"]["kid"].as_str().unwrap().to_owned(),
            k["pem"].as_str().unwrap().to_owned(),
            k["public_pem"].as_str().unwrap().to_owned(),
        )
    }

    async fn token_for(&self, client: &str, resource: &str, scope: &str) -> String {
        let mut res = awc::Client::new()
            .post(format!("{}/token", self.issuer()))
            .basic_auth(client, format!("{client}-secret-0123456789"))
            .send_form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", scope),
            ])
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
        assert_eq!(res.status(), 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn token(&self, resource: &str) -> String {
        self.token_for("app", resource, SCOPE).await
    }

    async fn revoke(&self, token: &str) {
        let res = awc::Client::new()
            .post(format!("{}/token/revocation", self.issuer()))
            .basic_auth("app", "app-secret-0123456789")
            .send_form(&[("token", token)])
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    /// Claims the IdP would put in an access token for the gateway.
    fn claims(&self, exp_offset: i64) -> Value {
        let now = now();
        json!({"iss": self.issuer(), "aud": AUDIENCE, "client_id": "app", "sub": "app",
               "iat": now - 10, "exp": now + exp_offset, "scope": SCOPE,
               "jti": uuid::Uuid::new_v4().to_string()})
    }

    /// `claims` signed with the IdP's own RSA key (as if it had issued them).
    fn forge(&self, claims: &Value) -> String {
        let (kid, pem, _) = self.key("rsa");
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid);
        encode(
            &header,
            claims,
            &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn entry(idp_issuer: &str, extra: Value) -> IssuerEntry {
    let mut v = json!({
        "name": "idp",
        "issuer": idp_issuer,
        "audience": AUDIENCE,
        "jwks_min_interval": "1s",
        "introspection_client_id": "gateway",
        "introspection_client_secret": "gateway-secret-0123456789",
        "introspection_cache_ttl": "1s",
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

async fn gateway_for(idp: &Idp, extra: Value) -> TestApp {
    let e = entry(&idp.issuer(), extra);
    let app = spawn_app_with(move |s| s.auth.issuers = vec![e]).await;
    wait_ready(&app).await;
    app
}

async fn readiness(app: &TestApp) -> (u16, Value) {
    let r = app
        .request(
            awc::http::Method::GET,
            &format!("{}/health/ready", app.admin),
        )
        .await;
    (r.status.as_u16(), r.json())
}

async fn wait_ready(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = readiness(app).await;
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// validate-code for an id that does not exist: 404 means the token was accepted.
async fn call(app: &TestApp, authorization: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend_from_slice(authorization);
    app.post_raw(
        VALIDATE,
        &headers,
        Some(
            &json!({"authenticationId": uuid::Uuid::new_v4().to_string(), "code": "123456"})
                .to_string(),
        ),
    )
    .await
}

async fn with_token(app: &TestApp, token: &str) -> Reply {
    let auth = format!("Bearer {token}");
    call(app, &[("Authorization", auth.as_str())]).await
}

fn assert_accepted(r: &Reply) {
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
}

/// 401 UNAUTHENTICATED with `error="invalid_token"` and the one generic message.
fn assert_invalid_token(r: &Reply) {
    r.assert_error(401, "UNAUTHENTICATED");
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Bearer error=\"invalid_token\"")
    );
    assert_eq!(
        r.json()["message"],
        "Request not authenticated due to missing, invalid, or expired credentials."
    );
}

/// The check that refused (or passed) a token, as the metrics count it: the response is the
/// same for every failure, so this is how a test knows *which* check fired.
async fn assert_outcome(app: &TestApp, issuer: &str, outcome: &str) {
    let metrics = app
        .request(awc::http::Method::GET, &format!("{}/metrics", app.admin))
        .await;
    let text = String::from_utf8(metrics.body).unwrap();
    let series =
        format!("otp_sms_token_validations_total{{issuer=\"{issuer}\",outcome=\"{outcome}\"}}");
    assert!(text.contains(&series), "no {series} in\n{text}");
}

#[actix_web::test]
async fn oidc_provider_jwts_of_every_accepted_algorithm_send_a_code() {
    let idp = Idp::start();
    let app = gateway_for(&idp, json!({})).await;
    for resource in [
        "urn:otp-gateway",
        "urn:otp-gateway:ps256",
        "urn:otp-gateway:es256",
        "urn:otp-gateway:eddsa",
    ] {
        let token = idp.token(resource).await;
        assert_accepted(&with_token(&app, &token).await);
    }
    // The whole flow with an external token: the SMS goes out under the IdP's client id.
    let token = idp.token("urn:otp-gateway:es256").await;
    let auth = format!("Bearer {token}");
    let r = app
        .post_raw(
            "/one-time-password-sms/v1/send-code",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            Some(&json!({"phoneNumber": "+34600000100", "message": MESSAGE}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let metrics = app
        .request(awc::http::Method::GET, &format!("{}/metrics", app.admin))
        .await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains("otp_sms_token_validations_total{issuer=\"idp\",outcome=\"valid\"} 5"),
        "{text}"
    );
    assert!(text.contains("otp_sms_jwks_refreshes_total{issuer=\"idp\",result=\"ok\"}"));
    assert!(text.contains("otp_sms_identity_provider_ready{issuer=\"idp\"} 1"));
}

#[actix_web::test]
async fn a_verified_external_token_is_cached_and_counted_as_a_cache_hit() {
    let idp = Idp::start();
    let app = gateway_for(&idp, json!({})).await;
    let token = idp.token("urn:otp-gateway").await;
    assert_accepted(&with_token(&app, &token).await);
    assert_accepted(&with_token(&app, &token).await);
    let metrics = app
        .request(awc::http::Method::GET, &format!("{}/metrics", app.admin))
        .await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains("{issuer=\"idp\",outcome=\"valid\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("{issuer=\"idp\",outcome=\"cached\"} 1"),
        "{text}"
    );
}

#[actix_web::test]
async fn a_token_for_another_audience_is_refused() {
    let idp = Idp::start();
    let app = gateway_for(&idp, json!({})).await;
    let token = idp.token("urn:other-api").await;
    assert_invalid_token(&with_token(&app, &token).await);
    assert_outcome(&app, "idp", "wrong_audience").await;
}

#[actix_web::test]
async fn a_token_without_the_scope_is_forbidden_with_insufficient_scope() {
    let idp = Idp::start();
    let app = gateway_for(&idp, json!({})).await;
    let token = idp
        .token_for("app-noscope", "urn:otp-gateway", "other:scope")
        .await;
    let r = with_token(&app, &token).await;
    r.assert_error(403, "PERMISSION_DENIED");
    assert_outcome(&app, "idp", "insufficient_scope").await;
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer error=\"insufficient_scope\""));
}

#[actix_web::test]
async fn introspected_opaque_tokens_work_and_revoked_ones_are_refused() {
    let idp = Idp::start();
    let app = gateway_for(&idp, json!({})).await;
    let token = idp.token("urn:otp-gateway:opaque").await;
    assert_eq!(token.matches('.').count(), 0, "an opaque token");
    assert_accepted(&with_token(&app, &token).await);

    let revoked = idp.token("urn:otp-gateway:opaque").await;
    idp.revoke(&revoked).await;
    assert_invalid_token(&with_token(&app, &revoked).await);
    assert_outcome(&app, "idp", "inactive").await;

    // A token revoked after use stops working once the cached answer ages out
    // (introspection_cache_ttl = 1s here).
    idp.revoke(&token).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_invalid_token(&with_token(&app, &token).await);

    assert_invalid_token(&with_token(&app, "not-a-token-the-idp-issued").await);
}

#[actix_web::test]
async fn after_the_idp_rotates_its_keys_new_tokens_work_and_old_kids_are_refused() {
    let idp = Idp::start();
    let app = gateway_for(&idp, json!({})).await;
    let old = idp.token("urn:otp-gateway").await;
    assert_accepted(&with_token(&app, &old).await);

    let idp = idp.rotate();
    tokio::time::sleep(MIN_INTERVAL + Duration::from_millis(100)).await;
    let new = idp.token("urn:otp-gateway").await;
    assert_accepted(&with_token(&app, &new).await);
    // The old token was cached as verified; its key left the JWKS, so it goes too.
    assert_invalid_token(&with_token(&app, &old).await);
    assert_outcome(&app, "idp", "unknown_key").await;
}

#[actix_web::test]
async fn an_idp_down_at_start_leaves_the_gateway_not_ready_until_it_comes_back() {
    let port = free_port();
    let e = entry(&format!("http://127.0.0.1:{port}"), json!({}));
    let app = spawn_app_with(move |s| s.auth.issuers = vec![e]).await;
    let (status, body) = readiness(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["identity_providers"], false);
    // Embedded tokens keep working meanwhile.
    assert_accepted(&with_token(&app, &app.token).await);

    let keys = std::env::temp_dir().join(format!(
        "otpgw-oidc-late-{}-{port}.json",
        std::process::id()
    ));
    let idp = Idp::spawn(port, keys, true);
    wait_ready(&app).await;
    assert_accepted(&with_token(&app, &idp.token("urn:otp-gateway").await).await);
}

#[actix_web::test]
async fn a_flood_of_unknown_kids_costs_the_idp_at_most_one_jwks_fetch_per_interval() {
    let idp = Idp::start();
    let app = gateway_for(&idp, json!({})).await;
    tokio::time::sleep(MIN_INTERVAL + Duration::from_millis(100)).await;
    let (_, pem, _) = idp.key("rsa");
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let before = idp.hits();
    let started = Instant::now();
    let mut refused = 0;
    for _ in 0..10 {
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let mut header = Header::new(Algorithm::RS256);
                header.kid = Some(uuid::Uuid::new_v4().to_string());
                let token = encode(&header, &idp.claims(300), &key).unwrap();
                let app = &app;
                async move { with_token(app, &token).await }
            })
            .collect();
        for r in futures::future::join_all(calls).await {
            assert_invalid_token(&r);
            refused += 1;
        }
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fetches = idp.hits() - before;
    let allowed = 1 + (elapsed.as_millis() / MIN_INTERVAL.as_millis()) as usize;
    assert_eq!(refused, 200);
    assert_outcome(&app, "idp", "unknown_key").await;
    assert!(fetches >= 1, "an unknown kid asks the IdP once");
    assert!(
        fetches <= allowed,
        "{fetches} JWKS fetches for 200 random kids in {elapsed:?} (allowed {allowed})"
    );
}

mod attacks {
    use super::*;

    async fn setup() -> (Idp, TestApp) {
        let idp = Idp::start();
        let app = gateway_for(&idp, json!({})).await;
        (idp, app)
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[actix_web::test]
    async fn alg_none_is_refused() {
        let (idp, app) = setup().await;
        let (kid, _, _) = idp.key("rsa");
        let token = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "kid": kid})),
            b64(&idp.claims(300))
        );
        assert_invalid_token(&with_token(&app, &token).await);
        assert_outcome(&app, "idp", "malformed").await;
    }

    #[actix_web::test]
    async fn hs256_signed_with_the_idps_public_key_is_refused() {
        let (idp, app) = setup().await;
        let (kid, _, public) = idp.key("rsa");
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid);
        let token = encode(
            &header,
            &idp.claims(300),
            &EncodingKey::from_secret(public.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_invalid_token(&with_token(&app, &token).await);
        assert_outcome(&app, "idp", "unsupported_algorithm").await;
    }

    #[actix_web::test]
    async fn a_kid_naming_a_key_of_another_type_is_refused() {
        let (idp, app) = setup().await;
        let (ec_kid, _, _) = idp.key("ec");
        let (_, rsa_pem, _) = idp.key("rsa");
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(ec_kid);
        let token = encode(
            &header,
            &idp.claims(300),
            &EncodingKey::from_rsa_pem(rsa_pem.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_invalid_token(&with_token(&app, &token).await);
        assert_outcome(&app, "idp", "key_mismatch").await;
    }

    #[actix_web::test]
    async fn a_tampered_payload_is_refused() {
        let (idp, app) = setup().await;
        let token = idp.token("urn:otp-gateway").await;
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["client_id"] = json!("someone-else");
        let tampered = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
        assert_invalid_token(&with_token(&app, &tampered).await);
        assert_outcome(&app, "idp", "bad_signature").await;
        assert_accepted(&with_token(&app, &token).await);
    }

    #[actix_web::test]
    async fn an_expired_token_is_refused() {
        let (idp, app) = setup().await;
        assert_invalid_token(&with_token(&app, &idp.forge(&idp.claims(-60))).await);
        assert_outcome(&app, "idp", "expired").await;
        // The same forgery route with a live exp passes: the refusal was the expiry.
        assert_accepted(&with_token(&app, &idp.forge(&idp.claims(300))).await);
    }

    #[actix_web::test]
    async fn a_token_not_yet_valid_is_refused() {
        let (idp, app) = setup().await;
        let mut claims = idp.claims(600);
        claims["nbf"] = json!(now() + 300);
        assert_invalid_token(&with_token(&app, &idp.forge(&claims)).await);
        assert_outcome(&app, "idp", "not_yet_valid").await;
        let mut claims = idp.claims(600);
        claims["iat"] = json!(now() + 300);
        assert_invalid_token(&with_token(&app, &idp.forge(&claims)).await);
    }

    #[actix_web::test]
    async fn a_wrong_issuer_is_refused() {
        let (idp, app) = setup().await;
        let mut claims = idp.claims(300);
        claims["iss"] = json!("https://evil.example");
        assert_invalid_token(&with_token(&app, &idp.forge(&claims)).await);
        assert_outcome(&app, "unknown", "wrong_issuer").await;
        claims["iss"] = json!(format!("{}/", idp.issuer()));
        assert_invalid_token(&with_token(&app, &idp.forge(&claims)).await);
    }

    #[actix_web::test]
    async fn a_wrong_audience_is_refused() {
        let (idp, app) = setup().await;
        let mut claims = idp.claims(300);
        claims["aud"] = json!(["urn:other-api", "urn:third"]);
        assert_invalid_token(&with_token(&app, &idp.forge(&claims)).await);
        assert_outcome(&app, "idp", "wrong_audience").await;
        claims["aud"] = json!(["urn:other-api", AUDIENCE]);
        assert_accepted(&with_token(&app, &idp.forge(&claims)).await);
    }

    #[actix_web::test]
    async fn an_oversized_token_is_refused() {
        let (idp, app) = setup().await;
        let mut claims = idp.claims(300);
        claims["padding"] = json!("x".repeat(9 * 1024));
        assert_invalid_token(&with_token(&app, &idp.forge(&claims)).await);
        assert_outcome(&app, "unknown", "malformed").await;
    }

    #[actix_web::test]
    async fn a_token_in_the_query_string_is_ignored() {
        let (idp, app) = setup().await;
        let token = idp.token("urn:otp-gateway").await;
        let r = app
            .post_raw(
                &format!("{VALIDATE}?access_token={token}"),
                &[("Content-Type", "application/json")],
                Some(&json!({"authenticationId": uuid::Uuid::new_v4().to_string(), "code": "123456"}).to_string()),
            )
            .await;
        r.assert_error(401, "UNAUTHENTICATED");
        assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
    }

    #[actix_web::test]
    async fn two_authorization_headers_are_refused() {
        let (idp, app) = setup().await;
        let token = idp.token("urn:otp-gateway").await;
        let auth = format!("Bearer {token}");
        let mut req = app
            .client
            .post(format!("{}{VALIDATE}", app.api))
            .insert_header(("Content-Type", "application/json"));
        req.headers_mut()
            .append(awc::http::header::AUTHORIZATION, auth.parse().unwrap());
        req.headers_mut()
            .append(awc::http::header::AUTHORIZATION, auth.parse().unwrap());
        let mut res = req
            .send_body(
                json!({"authenticationId": uuid::Uuid::new_v4().to_string(), "code": "123456"})
                    .to_string(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.headers().get("www-authenticate").unwrap(),
            "Bearer error=\"invalid_token\""
        );
        let body: Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
        assert_eq!(body["code"], "UNAUTHENTICATED");
    }

    #[actix_web::test]
    async fn a_lowercase_bearer_scheme_is_accepted() {
        let (idp, app) = setup().await;
        let token = idp.token("urn:otp-gateway").await;
        let auth = format!("bearer {token}");
        assert_accepted(&call(&app, &[("Authorization", auth.as_str())]).await);
    }
}

#[actix_web::test]
async fn an_external_client_shares_the_rate_limit_of_its_auth_clients_entry() {
    let idp = Idp::start();
    let e = entry(&idp.issuer(), json!({}));
    let app = spawn_app_with(move |s| {
        s.auth.issuers = vec![e];
        s.auth.clients = vec![
            serde_json::from_value(json!({"id": "demo", "secret": "demo-secret", "scopes": [SCOPE]}))
                .unwrap(),
            serde_json::from_value(json!({"id": "app", "secret": "unused-app-secret", "scopes": [SCOPE], "rate_limit": 1}))
                .unwrap(),
        ];
    })
    .await;
    wait_ready(&app).await;
    let token = idp.token("urn:otp-gateway").await;
    assert_accepted(&with_token(&app, &token).await);
    with_token(&app, &token)
        .await
        .assert_error(429, "TOO_MANY_REQUESTS");
}

#[actix_web::test]
async fn an_external_client_gets_the_tenant_profile_of_its_auth_clients_entry() {
    let idp = Idp::start();
    let e = entry(&idp.issuer(), json!({}));
    let app = spawn_app_with(move |s| {
        s.auth.issuers = vec![e];
        s.auth.clients = vec![
            serde_json::from_value(
                json!({"id": "demo", "secret": "demo-secret", "scopes": [SCOPE]}),
            )
            .unwrap(),
            serde_json::from_value(
                json!({"id": "app", "secret": "unused-app-secret", "scopes": [SCOPE],
                "tenant": {"allowed_prefixes": ["+44"], "sender_id": "IdpApp"}}),
            )
            .unwrap(),
        ];
    })
    .await;
    wait_ready(&app).await;
    let auth = format!("Bearer {}", idp.token("urn:otp-gateway").await);
    let send = |phone: &'static str| {
        let auth = auth.clone();
        let app = &app;
        async move {
            app.post_raw(
                "/one-time-password-sms/v1/send-code",
                &[
                    ("Authorization", auth.as_str()),
                    ("Content-Type", "application/json"),
                ],
                Some(&json!({"phoneNumber": phone, "message": MESSAGE}).to_string()),
            )
            .await
        }
    };
    send("+34600000801")
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED");
    assert_eq!(send("+447700900801").await.status, 200);
    assert_eq!(app.sim.messages_for("+447700900801")[0].source.0, "IdpApp");
}

#[actix_web::test]
async fn registered_clients_only_refuses_a_client_without_an_entry() {
    let idp = Idp::start();
    let app = gateway_for(&idp, json!({"registered_clients_only": true})).await;
    let token = idp.token("urn:otp-gateway").await;
    assert_invalid_token(&with_token(&app, &token).await);
    assert_outcome(&app, "idp", "unknown_client").await;
}

#[actix_web::test]
async fn with_the_embedded_issuer_off_its_endpoints_and_tokens_are_gone() {
    let idp = Idp::start();
    let e = entry(&idp.issuer(), json!({}));
    let mut settings = test_settings();
    settings.auth.issuers = vec![e];
    settings.auth.embedded = false;
    let config = settings.validate().unwrap();
    let app = otp_gateway::startup::Application::build(config)
        .await
        .unwrap();
    let api = format!("http://{}", app.api_addr());
    let issuer = app.issuer();
    let stop = app.stop_handle();
    tokio::spawn(app.run_until_stopped());
    let client = awc::Client::default();
    let res = client
        .post(format!("{api}/oauth2/token"))
        .basic_auth("demo", "demo-secret")
        .send_form(&[("grant_type", "client_credentials")])
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let now = now();
    let embedded = issuer
        .sign(
            &json!({"iss": issuer.issuer(), "aud": issuer.audience(), "client_id": "demo",
                       "sub": "demo", "iat": now, "exp": now + 300, "scope": SCOPE}),
        )
        .unwrap();
    for (token, want) in [(embedded, 401), (idp.token("urn:otp-gateway").await, 404)] {
        let res = client
            .post(format!("{api}{VALIDATE}"))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .insert_header(("Content-Type", "application/json"))
            .send_body(
                json!({"authenticationId": uuid::Uuid::new_v4().to_string(), "code": "123456"})
                    .to_string(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), want);
    }
    stop.stop();
}
