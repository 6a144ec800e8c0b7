//! What usage counting, audit events and the sandbox check add to a request: `Usage::sent`
//! (one thread, and four threads on one accumulator), `Audit::record` to the log only (no
//! subscriber installed, as a filter that drops the line) and to a JSON-lines file (the enqueue a
//! request pays; the writer thread does the rest), and the sandbox lookup a production client
//! pays on every send.
//!
//! Run: `cargo bench --bench reports`.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use otp_gateway::audit::{Audit, AuditEvent, EventKind};
use otp_gateway::domain::PhoneNumber;
use otp_gateway::metrics::Metrics;
use otp_gateway::otp::SandboxPort;
use otp_gateway::sandbox::Sandbox;
use otp_gateway::usage::Usage;

const N: u64 = 1_000_000;

fn per(started: Instant, n: u64) -> f64 {
    started.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let clients: Vec<String> = (0..100).map(|i| format!("client-{i}")).collect();
    let now_ms = 1_764_547_200_000u64;

    let usage = Usage::in_process(Duration::from_secs(400 * 86_400));
    let started = Instant::now();
    for i in 0..N {
        usage.sent(&clients[(i % 100) as usize], now_ms, 1, None);
    }
    println!(
        "usage: sent, 1 thread                      {:>7.1} ns",
        per(started, N)
    );

    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let usage = usage.clone();
            let clients = clients.clone();
            std::thread::spawn(move || {
                for i in 0..N {
                    usage.sent(&clients[((i + t) % 100) as usize], now_ms, 1, None);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    println!(
        "usage: sent, 4 threads (wall per call)     {:>7.1} ns",
        per(started, 4 * N)
    );

    let phone = PhoneNumber::parse("+34600000001").unwrap();
    let event = || {
        let mut e = AuditEvent::new(EventKind::Send, "client-7", "sent");
        e.phone_number = Some(phone.masked());
        e.route = Some("default".into());
        e
    };
    let log = Audit::log_only();
    let started = Instant::now();
    for _ in 0..N {
        log.record(black_box(&event()));
    }
    println!(
        "audit: build + record, log only           {:>7.1} ns",
        per(started, N)
    );

    let path = std::env::temp_dir().join("otpgw-bench-audit.jsonl");
    let _ = std::fs::remove_file(&path);
    let metrics = Metrics::new().unwrap();
    let file = Audit::to_file(&path, 100_000, &metrics).unwrap();
    let started = Instant::now();
    for _ in 0..N {
        file.record(black_box(&event()));
    }
    println!(
        "audit: build + record, file (enqueue)      {:>7.1} ns ({} of {N} dropped: queue full)",
        per(started, N),
        file.dropped()
    );
    drop(file);
    let _ = std::fs::remove_file(&path);

    let sandbox: Arc<dyn SandboxPort> =
        Arc::new(Arc::new(Sandbox::new(["sandbox-app".to_owned()], &[], 100)));
    let started = Instant::now();
    let mut routed = 0u64;
    for i in 0..N {
        routed += u64::from(
            sandbox
                .route(&clients[(i % 100) as usize], black_box(&phone))
                .is_some(),
        );
    }
    println!(
        "sandbox: route, production client          {:>7.1} ns ({routed} routed)",
        per(started, N)
    );
}
