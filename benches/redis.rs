//! Store-level figures for docs/PERFORMANCE.md ("Redis store"): operations/s and p50/p99 of a
//! send (insert + activate) and a validate (attempt) on moka, one Redis server and a 3-master
//! Cluster in the same run; Redis round trips per send and per validate (`INFO commandstats`
//! deltas: every script is one `EVALSHA`); bytes per live challenge (`MEMORY USAGE` over the
//! keys of `LIVE` live challenges, each to its own number, and the `used_memory` delta).
//!
//! Run: `cargo bench --bench redis` (needs `redis-server` and `redis-cli`).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use otp_gateway::domain::{
    AuthenticationId, Challenge, ChallengeId, ClientTag, IdKey, PhoneNumber, Secret, StoreBucket,
};
use otp_gateway::store::redis::testkit::{RedisCluster, RedisServer};
use otp_gateway::store::{
    ChallengeStore, MemoryStore, RedisSettings, RedisStore, RedisTarget, SendQuota, SendQuotas,
    Store,
};

const N: u32 = 3_000;
/// Live challenges for the memory figure: enough that per-key overhead is shared as it is in
/// production (a few hundred thousand live codes is a busy operator's five minutes).
const LIVE: u32 = 100_000;
/// Issue time of every id, Unix ms.
const NOW: u64 = 1_800_000_000_000;
const KEY: &[u8] = b"bench-key-bench-key-bench-key-bench-key";

fn quotas() -> SendQuotas {
    let q = SendQuota {
        max: 5,
        window: Duration::from_secs(3600),
    };
    SendQuotas {
        per_client: q,
        all_clients: q,
    }
}

/// A real id for the number, minted as send-code mints it (so it carries the number's bucket
/// and its issue time, which place the challenge in the Redis store).
fn id(i: u32, salt: u8) -> ChallengeId {
    let key = IdKey::derive(KEY);
    let random = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(salt);
    let id = AuthenticationId::mint_in_bucket(
        &key,
        "bench",
        NOW / 1000,
        random,
        StoreBucket::of(&phone(i, salt)),
    );
    ChallengeId::from(&id)
}

fn phone(i: u32, salt: u8) -> PhoneNumber {
    PhoneNumber::parse(&format!("+34{salt}{i:08}")).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

fn report(what: &str, mut samples: Vec<Duration>, elapsed: Duration) {
    samples.sort();
    println!(
        "{what:<28} n={:<5} p50={:>7.3} ms  p99={:>7.3} ms  {:>7.0} ops/s",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.len() as f64 / elapsed.as_secs_f64()
    );
}

/// Sends then validates N codes, one at a time; returns nothing, prints the figures.
async fn run(name: &str, store: &Store, salt: u8) {
    let client = ClientTag::of("bench");
    let now = NOW;
    let mut sends = Vec::with_capacity(N as usize);
    let started = Instant::now();
    for i in 0..N {
        let t = Instant::now();
        let c = Challenge {
            id: id(i, salt),
            phone: phone(i, salt),
            code_hash: [7; 32],
            expires_at_ms: now + 300_000,
            failed_attempts: 0,
        };
        store
            .insert_pending(c, client, quotas(), now)
            .await
            .unwrap();
        store
            .activate(id(i, salt), client, &phone(i, salt), now)
            .await
            .unwrap();
        sends.push(t.elapsed());
    }
    report(&format!("{name} send"), sends, started.elapsed());
    let mut checks = Vec::with_capacity(N as usize);
    let started = Instant::now();
    for i in 0..N {
        let t = Instant::now();
        store
            .attempt(id(i, salt), [7; 32], now + 1, 3)
            .await
            .unwrap();
        checks.push(t.elapsed());
    }
    report(&format!("{name} validate"), checks, started.elapsed());
}

fn redis(target: RedisTarget, prefix: &str) -> Store {
    Store::Redis(RedisStore::new(
        RedisSettings {
            target,
            prefix: prefix.into(),
            timeout: Duration::from_secs(2),
            state_ttl: Duration::from_secs(3600),
            wait_replicas: 0,
            tls: Default::default(),
        },
        KEY,
    ))
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stat(info: &str, field: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().split([',', '\r']).next())
        .and_then(|v| {
            v.trim_start_matches(':')
                .trim_start_matches("calls=")
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Commands the server ran (each a round trip of ours: every call is one command, or one
/// pipeline of EVALSHA + WAIT when `wait_replicas` > 0, which this bench leaves at 0).
fn commands(port: u16) -> u64 {
    let info = cli(port, &["INFO", "commandstats"]);
    stat(&info, "cmdstat_evalsha") + stat(&info, "cmdstat_eval") + stat(&info, "cmdstat_ping")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("store-level, sequential, {N} sends then {N} validates per backend");
    let memory = Store::Memory(MemoryStore::new(1_000_000, Duration::from_secs(3600)));
    run("moka", &memory, 1).await;

    let server = RedisServer::start().unwrap();
    let port = server.addr().port();
    let single = redis(RedisTarget::Single(Secret::new(server.url())), "otp");
    single.ping().await.unwrap();
    run("redis (1 node)", &single, 2).await;

    // Round trips: one more send and one more validate, counted on the server.
    let before = commands(port);
    let c = Challenge {
        id: id(0, 9),
        phone: phone(0, 9),
        code_hash: [7; 32],
        expires_at_ms: 1_800_000_300_000,
        failed_attempts: 0,
    };
    let client = ClientTag::of("bench");
    single
        .insert_pending(c, client, quotas(), 1_800_000_000_000)
        .await
        .unwrap();
    single
        .activate(id(0, 9), client, &phone(0, 9), NOW)
        .await
        .unwrap();
    let sent = commands(port);
    single
        .attempt(id(0, 9), [7; 32], 1_800_000_000_001, 3)
        .await
        .unwrap();
    let validated = commands(port);
    println!(
        "round trips: send {} (insert + activate), validate {} (attempt); the rate limit adds 1 \
         to each when the client has one",
        sent - before,
        validated - sent
    );

    // Memory: LIVE live challenges (sent, not validated), each to its own number.
    cli(port, &["FLUSHALL"]);
    let base = stat(&cli(port, &["INFO", "memory"]), "used_memory");
    let live = redis(RedisTarget::Single(Secret::new(server.url())), "otp");
    for i in 0..LIVE {
        let c = Challenge {
            id: id(i, 3),
            phone: phone(i, 3),
            code_hash: [7; 32],
            expires_at_ms: 1_800_000_300_000,
            failed_attempts: 0,
        };
        live.insert_pending(c, client, quotas(), 1_800_000_000_000)
            .await
            .unwrap();
        live.activate(id(i, 3), client, &phone(i, 3), NOW)
            .await
            .unwrap();
    }
    let used = stat(&cli(port, &["INFO", "memory"]), "used_memory") - base;
    let keys = cli(port, &["--scan", "--pattern", "otp:*"]);
    let mut by_kind = std::collections::BTreeMap::<String, (u64, u64)>::new();
    for key in keys.lines() {
        // `otp:{group}c…` (challenges) or `otp:{group}s…` (sends).
        let kind = key
            .split('}')
            .nth(1)
            .and_then(|rest| rest.get(..1))
            .unwrap_or("?")
            .to_string();
        let bytes: u64 = cli(port, &["MEMORY", "USAGE", key, "SAMPLES", "0"])
            .trim()
            .parse()
            .unwrap_or(0);
        let e = by_kind.entry(kind).or_default();
        e.0 += 1;
        e.1 += bytes;
    }
    let total: u64 = by_kind.values().map(|(_, b)| b).sum();
    println!(
        "memory of {LIVE} live challenges: MEMORY USAGE {} B per challenge, used_memory delta {} \
         B per challenge",
        total / u64::from(LIVE),
        used / u64::from(LIVE)
    );
    for (kind, (count, bytes)) in &by_kind {
        println!(
            "  key kind {kind}: {count} keys, {} B per key",
            bytes / (*count).max(1)
        );
    }

    let cluster = RedisCluster::start(3, 0).unwrap();
    let clustered = redis(
        RedisTarget::Cluster(cluster.urls().into_iter().map(Secret::new).collect()),
        "otp",
    );
    clustered.ping().await.unwrap();
    run("redis cluster (3 masters)", &clustered, 4).await;
}
