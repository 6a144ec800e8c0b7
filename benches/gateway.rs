//! Figures for docs/PERFORMANCE.md: send-code and validate-code latency over 1,000
//! sequential requests, send-code throughput at 64 concurrent connections, and the memory a
//! pending code costs in the moka store; the HTTP figures once on the memory store and once on
//! a real redis-server (started on a free loopback port). The gateway, its SMSC simulator, Redis
//! and the load client share this machine (and its two cores), so the figures are conservative.
//!
//! Run: `cargo bench --bench gateway`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use otp_gateway::config::{Settings, StoreBackend};
use otp_gateway::domain::{Challenge, ChallengeId, ClientTag, PhoneNumber, Secret};
use otp_gateway::startup::Application;
use otp_gateway::store::redis::testkit::RedisServer;
use otp_gateway::store::{ChallengeStore, MemoryStore, SendQuota, SendQuotas};
use serde_json::{json, Value};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn report(name: &str, mut samples: Vec<Duration>, elapsed: Duration) {
    samples.sort();
    println!(
        "{name:<34} n={:<6} p50={:>8.3} ms  p99={:>8.3} ms  max={:>8.3} ms  {:>8.0} req/s",
        samples.len(),
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
        samples.len() as f64 / elapsed.as_secs_f64()
    );
}

async fn token(client: &awc::Client, api: &str) -> String {
    let mut r = client
        .post(format!("{api}/oauth2/token"))
        .basic_auth("demo", "demo-secret")
        .content_type("application/x-www-form-urlencoded")
        .send_body("grant_type=client_credentials&scope=one-time-password-sms:send-validate")
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&r.body().await.unwrap()).unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

async fn send(client: &awc::Client, api: &str, auth: &str, phone: &str) -> (Duration, String) {
    let started = Instant::now();
    let mut r = client
        .post(format!("{api}/one-time-password-sms/v1/send-code"))
        .insert_header(("Authorization", auth))
        .send_json(&json!({"phoneNumber": phone, "message": "{{code}} is your code"}))
        .await
        .unwrap();
    let body = r.body().await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    (took, v["authenticationId"].as_str().unwrap().to_string())
}

/// The HTTP figures with the store `s` is configured for; `label` prefixes every line.
async fn http_benchmarks(label: &str, store: impl FnOnce(&mut Settings)) {
    let mut s = Settings::default();
    store(&mut s);
    s.http.listen = "127.0.0.1:0".parse().unwrap();
    s.admin.listen = "127.0.0.1:0".parse().unwrap();
    s.otp.hash_key = Some("benchmark-key-benchmark-key-benchmark-key".into());
    s.smpp.embedded_receipt_delay = Duration::from_millis(50);
    s.log.level = "warn".into();
    let app = Application::build(s.validate().unwrap()).await.unwrap();
    let api = format!("http://{}", app.api_addr());
    let sim = app.simulator().unwrap();
    let stop = app.stop_handle();
    tokio::spawn(app.run_until_stopped());
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let auth = format!("Bearer {}", token(&client, &api).await);

    // Warm-up (connection set-up, first allocations).
    for i in 0..50 {
        send(&client, &api, &auth, &format!("+3469{i:08}")).await;
    }

    let n = 1000;
    let mut ids = Vec::with_capacity(n);
    let mut samples = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let phone = format!("+3460{i:08}");
        let (took, id) = send(&client, &api, &auth, &phone).await;
        samples.push(took);
        ids.push((phone, id));
    }
    report(
        &format!("{label}send-code, sequential"),
        samples,
        started.elapsed(),
    );

    let mut samples = Vec::with_capacity(n);
    let started = Instant::now();
    for (phone, id) in &ids {
        let text = sim.messages_for(phone)[0].text.clone();
        let code = text.split(' ').next().unwrap().to_string();
        let t = Instant::now();
        let r = client
            .post(format!("{api}/one-time-password-sms/v1/validate-code"))
            .insert_header(("Authorization", auth.as_str()))
            .send_json(&json!({"authenticationId": id, "code": code}))
            .await
            .unwrap();
        samples.push(t.elapsed());
        assert_eq!(r.status(), 204);
    }
    report(
        &format!("{label}validate-code, sequential"),
        samples,
        started.elapsed(),
    );

    let connections = 64;
    let per_connection = 100;
    let started = Instant::now();
    let tasks = (0..connections).map(|c| {
        let api = api.clone();
        let auth = auth.clone();
        async move {
            // One client per task: its own keep-alive connection, like 64 callers.
            let client = awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish();
            let mut samples = Vec::with_capacity(per_connection);
            for i in 0..per_connection {
                let (took, _) = send(&client, &api, &auth, &format!("+3461{c:03}{i:05}")).await;
                samples.push(took);
            }
            samples
        }
    });
    let samples: Vec<Duration> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .flatten()
        .collect();
    report(
        &format!("{label}send-code, 64 connections"),
        samples,
        started.elapsed(),
    );
    stop.stop();
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

async fn memory_per_pending_code() {
    let n: u64 = 200_000;
    let store = MemoryStore::new(2_000_000, Duration::from_secs(600));
    let window = Duration::from_secs(600);
    let quota = SendQuotas {
        per_client: SendQuota { max: 5, window },
        all_clients: SendQuota { max: 10, window },
    };
    let client = ClientTag::of("bench");
    let before = rss_bytes();
    for i in 0..n {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&i.to_be_bytes());
        let id = ChallengeId::from_bytes(id);
        let phone = PhoneNumber::parse(&format!("+346{i:08}")).unwrap();
        let challenge = Challenge {
            id,
            phone: phone.clone(),
            code_hash: [7; 32],
            expires_at_ms: u64::MAX / 2,
            failed_attempts: 0,
        };
        store
            .insert_pending(challenge, client, quota, 0)
            .await
            .unwrap();
        store.activate(id, client, &phone, 0).await.unwrap();
    }
    let held = store.len();
    let after = rss_bytes();
    println!(
        "memory per pending code             {:.0} bytes (RSS delta {:.1} MiB over {held} live codes, with per-number state)",
        (after.saturating_sub(before)) as f64 / n as f64,
        (after.saturating_sub(before)) as f64 / (1024.0 * 1024.0)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; listing mode passes `--list`.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let system = actix_web::rt::System::new();
    system.block_on(async {
        memory_per_pending_code().await;
        http_benchmarks("", |_| {}).await;
        // The same requests with the challenges in a real redis-server on loopback (Debian's
        // package; the testkit starts it on a free port and stops it afterwards).
        let redis = RedisServer::start().unwrap();
        let url = redis.url();
        http_benchmarks("redis: ", move |s| {
            s.store.backend = StoreBackend::Redis;
            s.store.redis_url = Some(Secret::new(url));
        })
        .await;
    });
}
