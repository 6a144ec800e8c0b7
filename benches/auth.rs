//! Figures for the external-issuer path (README, External identity providers): validate-code
//! req/s with an embedded token and with an oidc-provider token side by side (the token is
//! verified once, then served from the verified-token cache), and the cold-cache cost of one
//! external token per algorithm (signature and claim checks, measured in-process on
//! `BearerValidator::authorize`). oidc-provider (scripts/oidc, `npm ci --prefix scripts/oidc`)
//! runs on a free loopback port; everything shares this machine's two cores.
//!
//! Run: `cargo bench --bench auth`.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use otp_gateway::auth::external::ExternalIssuer;
use otp_gateway::auth::BearerValidator;
use otp_gateway::config::{IssuerEntry, Settings};
use otp_gateway::metrics::AuthMetrics;
use otp_gateway::startup::Application;
use serde_json::{json, Value};

const SCOPE: &str = "one-time-password-sms:send-validate";

async fn idp_token(client: &awc::Client, issuer: &str, resource: &str) -> String {
    let mut r = client
        .post(format!("{issuer}/token"))
        .basic_auth("app", "app-secret-0123456789")
        .send_form(&[
            ("grant_type", "client_credentials"),
            ("resource", resource),
            ("scope", SCOPE),
        ])
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&r.body().await.unwrap()).unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

async fn embedded_token(client: &awc::Client, api: &str) -> String {
    let mut r = client
        .post(format!("{api}/oauth2/token"))
        .basic_auth("demo", "demo-secret")
        .send_form(&[("grant_type", "client_credentials")])
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&r.body().await.unwrap()).unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

/// `n` validate-code calls over `conns` connections; each answers 404 (unknown id) after the
/// token and scope checks, so the figure is the request cost with that kind of token.
async fn validate_rps(api: &str, token: &str, n: usize, conns: usize) -> f64 {
    let auth = format!("Bearer {token}");
    let started = Instant::now();
    let per = n / conns;
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let (api, auth) = (api.to_owned(), auth.clone());
            async move {
                let client = awc::Client::builder()
                    .timeout(Duration::from_secs(20))
                    .finish();
                for _ in 0..per {
                    let r = client
                        .post(format!("{api}/one-time-password-sms/v1/validate-code"))
                        .insert_header(("Authorization", auth.as_str()))
                        .send_json(&json!({"authenticationId": uuid::Uuid::new_v4().to_string(), "code": "123456"}))
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 404);
                }
            }
        })
        .collect();
    futures::future::join_all(tasks).await;
    (per * conns) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let keys = std::env::temp_dir().join(format!("otpgw-bench-oidc-{port}.json"));
    let mut idp = Command::new("node")
        .arg(format!("{root}/scripts/oidc/provider.mjs"))
        .args(["--port", &port.to_string(), "--rotate", "--keys"])
        .arg(&keys)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node with scripts/oidc installed (npm ci --prefix scripts/oidc)");
    let mut lines = BufReader::new(idp.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        if line.trim() == "READY" {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let issuer = format!("http://127.0.0.1:{port}");
    let entry: IssuerEntry = serde_json::from_value(json!({
        "name": "bench", "issuer": issuer, "audience": "urn:otp-gateway"
    }))
    .unwrap();

    actix_web::rt::System::new().block_on(async {
        let mut s = Settings::default();
        s.http.listen = "127.0.0.1:0".parse().unwrap();
        s.admin.listen = "127.0.0.1:0".parse().unwrap();
        s.otp.hash_key = Some("bench-key-bench-key-bench-key-bench-key".into());
        s.auth.issuers = vec![entry.clone()];
        let config = s.validate().unwrap();
        let app = Application::build(config.clone()).await.unwrap();
        let api = format!("http://{}", app.api_addr());
        let stop = app.stop_handle();
        actix_web::rt::spawn(app.run_until_stopped());
        let client = awc::Client::default();
        let embedded = embedded_token(&client, &api).await;
        let external = idp_token(&client, &issuer, "urn:otp-gateway:es256").await;
        // Warm up both (the first external call also waits for the JWKS).
        tokio::time::sleep(Duration::from_millis(500)).await;
        validate_rps(&api, &embedded, 200, 8).await;
        validate_rps(&api, &external, 200, 8).await;
        for round in 1..=3 {
            let e = validate_rps(&api, &embedded, 4000, 32).await;
            let x = validate_rps(&api, &external, 4000, 32).await;
            println!(
                "round {round}: validate-code, 32 connections: embedded {e:>7.0} req/s   external (oidc-provider ES256) {x:>7.0} req/s"
            );
        }
        stop.stop();

        // Cold cache: a fresh token per call, verified in-process.
        let issuer_cfg = config.auth.issuers[0].clone();
        let external = ExternalIssuer::new(issuer_cfg, AuthMetrics::detached()).unwrap();
        assert!(external.jwks().refresh("bench").await);
        let validator =
            BearerValidator::new(None, String::new(), vec![external], Vec::<String>::new(), AuthMetrics::detached());
        for (alg, resource) in [
            ("RS256", "urn:otp-gateway"),
            ("PS256", "urn:otp-gateway:ps256"),
            ("ES256", "urn:otp-gateway:es256"),
            ("EdDSA", "urn:otp-gateway:eddsa"),
        ] {
            let mut tokens = Vec::new();
            for _ in 0..200 {
                tokens.push(idp_token(&client, &issuer, resource).await);
            }
            let started = Instant::now();
            for t in &tokens {
                validator.authorize(t, SCOPE).await.unwrap();
            }
            let cold = started.elapsed() / tokens.len() as u32;
            let started = Instant::now();
            for t in &tokens {
                validator.authorize(t, SCOPE).await.unwrap();
            }
            let warm = started.elapsed() / tokens.len() as u32;
            println!(
                "{alg}: first validation (cold cache) {:>7.1} µs/token, cached {:>5.1} µs/token",
                cold.as_secs_f64() * 1e6,
                warm.as_secs_f64() * 1e6
            );
        }
    });
    let _ = idp.kill();
    let _ = idp.wait();
    let _ = std::fs::remove_file(keys);
}
