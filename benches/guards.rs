//! Cost of the number-policy guards per request (docs/PERFORMANCE.md, "Policy guards"): the
//! SMS-pumping check and counts of one send (check + count + remember the id) and of one
//! validation (find the id's prefix + count), in process and on one Redis server; and a cached
//! answer of the lookup hook (the stand-in lookup service answers the first ask of each number).
//!
//! Run: `cargo bench --bench guards` (the Redis figures need `redis-server`).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use otp_gateway::config::{LookupFailure, LookupSettings, PumpingSettings};
use otp_gateway::domain::{PhoneNumber, Secret};
use otp_gateway::otp::SystemClock;
use otp_gateway::policy::lookup::{LookupMetrics, NumberLookup};
use otp_gateway::policy::pumping::{PumpingGuard, PumpingMetrics};
use otp_gateway::store::redis::testkit::RedisServer;
use otp_gateway::store::{RedisSettings, RedisStore, RedisTarget, RedisTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pumping() -> PumpingGuard {
    PumpingGuard::new(
        &PumpingSettings {
            // Never trips: every send takes the whole path.
            min_conversion: 0.0,
            ..PumpingSettings::default()
        },
        Duration::from_secs(300),
        Arc::new(SystemClock),
        PumpingMetrics::new().unwrap(),
    )
}

fn numbers(n: u32) -> Vec<PhoneNumber> {
    (0..n)
        .map(|i| PhoneNumber::parse(&format!("+346{:08}", i * 7919 % 100_000_000)).unwrap())
        .collect()
}

async fn run_pumping(name: &str, guard: &PumpingGuard, numbers: &[PhoneNumber]) {
    let started = Instant::now();
    for (i, n) in numbers.iter().enumerate() {
        assert!(guard.allows(n).await);
        guard.sent(&format!("id-{i}"), n).await;
    }
    let send = started.elapsed().as_secs_f64() * 1e6 / numbers.len() as f64;
    let started = Instant::now();
    for i in 0..numbers.len() {
        guard.validated(&format!("id-{i}")).await;
    }
    let validate = started.elapsed().as_secs_f64() * 1e6 / numbers.len() as f64;
    println!("pumping, {name:<12} {send:>8.2} µs per send  {validate:>8.2} µs per validation");
}

/// A stand-in lookup service: answers every POST with `serve`.
async fn stand_in() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let body = br#"{"result":"serve"}"#;
                    // One write: a head and a body in two segments meet Nagle and the
                    // client's delayed ACK (40 ms a request).
                    let mut answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    answer.extend_from_slice(body);
                    if s.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}/lookup")
}

#[tokio::main]
async fn main() {
    let numbers = numbers(20_000);
    run_pumping("in process", &pumping(), &numbers).await;
    let redis = RedisServer::start().unwrap();
    let store = RedisStore::new(
        RedisSettings {
            target: RedisTarget::Single(Secret::new(redis.url())),
            prefix: "bench".into(),
            timeout: Duration::from_secs(2),
            state_ttl: Duration::from_secs(600),
            wait_replicas: 0,
            tls: RedisTls::default(),
        },
        b"bench-key-bench-key-bench-key-bench-key",
    );
    run_pumping("one Redis", &pumping().shared(&store), &numbers[..3_000]).await;

    let lookup = NumberLookup::new(
        &LookupSettings {
            url: stand_in().await,
            timeout: Duration::from_secs(2),
            cache_ttl: Duration::from_secs(3600),
            negative_cache_ttl: Duration::from_secs(300),
            cache_entries: 100_000,
            max_concurrency: 32,
            on_failure: LookupFailure::Closed,
            credential: None,
            credential_header: None,
        },
        LookupMetrics::new().unwrap(),
    )
    .unwrap();
    let sample = &numbers[..2_000];
    let started = Instant::now();
    for n in sample {
        lookup.check(n).await.unwrap();
    }
    let miss = started.elapsed().as_secs_f64() * 1e6 / sample.len() as f64;
    let started = Instant::now();
    for _ in 0..50 {
        for n in sample {
            lookup.check(n).await.unwrap();
        }
    }
    let hit = started.elapsed().as_secs_f64() * 1e9 / (50 * sample.len()) as f64;
    println!("lookup, first ask (loopback HTTP) {miss:>8.2} µs   cached answer {hit:>8.0} ns");
}
