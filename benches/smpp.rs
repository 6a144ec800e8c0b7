//! SMPP throughput for docs/PERFORMANCE.md: submit_sm per second over one bind with window 64
//! (and over two binds) to the project's simulator on loopback, client and simulator in one
//! process on this machine's cores. Every submit asks for a receipt, so the session also
//! carries one deliver_sm / deliver_sm_resp pair per message, as in production.
//!
//! Run: `cargo bench --bench smpp`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use otp_gateway::domain::{PhoneNumber, Secret};
use otp_gateway::smpp::{OutboundSms, RouteSettings, SmppClient, SmscAddress};
use otp_gateway::smsc_sim::{self, SimFaults, SimSettings};

const MESSAGES: usize = 200_000;
const CONCURRENCY: usize = 64;

async fn run(binds: usize, window: usize) {
    let sim = smsc_sim::start(SimSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        system_id: "bench".into(),
        password: "bench".into(),
        receipt_delay: Duration::from_millis(10),
        print_messages: false,
        inbox_capacity: 1_000,
        faults: SimFaults::default(),
    })
    .await
    .unwrap();
    let mut settings = RouteSettings::new(SmscAddress::new(
        "127.0.0.1",
        sim.local_addr().port(),
        "bench",
        "bench",
    ));
    settings.options.binds = binds;
    settings.options.window = window;
    let client = SmppClient::start(settings);
    assert!(
        client
            .wait_bound_sessions(binds, Duration::from_secs(5))
            .await
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(MESSAGES / CONCURRENCY);
                for i in 0..MESSAGES / CONCURRENCY {
                    let sms = OutboundSms {
                        destination: PhoneNumber::parse(&format!("+3460{w:02}{i:06}")).unwrap(),
                        text: Secret::new("123456 is your code"),
                        validity: Duration::from_secs(300),
                        source: None,
                    };
                    let t = Instant::now();
                    client.submit(sms).await.unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(MESSAGES);
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "binds={binds} window={window:<3} {:>7} submit_sm in {:>6.2} s = {:>7.0} submit_sm/s  p50={:.3} ms p99={:.3} ms (SMSC acknowledged {})",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        sim.submit_count()
    );
    client.shutdown().await;
    sim.stop().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        run(1, 64).await;
        run(2, 64).await;
    });
}
