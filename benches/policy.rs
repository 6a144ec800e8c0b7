//! Number-policy cost per request (docs/PERFORMANCE.md, "Number policy"): `NumberPolicy::check`
//! with a 3-prefix plan and with 100,000 operator and 100,000 not-allowed prefixes plus
//! 100,000 barred numbers, over the same 1,000,000 numbers.
//!
//! Run: `cargo bench --bench policy`.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use otp_gateway::config::PolicySettings;
use otp_gateway::domain::PhoneNumber;
use otp_gateway::policy::NumberPolicy;

fn numbers() -> Vec<PhoneNumber> {
    (0..1_000_000u64)
        .map(|i| {
            let n = i.wrapping_mul(2_654_435_761) % 100_000_000;
            PhoneNumber::parse(&format!("+346{n:08}")).unwrap()
        })
        .collect()
}

fn run(name: &str, policy: &NumberPolicy, numbers: &[PhoneNumber]) {
    let started = Instant::now();
    let mut refused = 0usize;
    for n in numbers {
        refused += usize::from(black_box(policy.check(n)).is_err());
    }
    let per = started.elapsed().as_nanos() as f64 / numbers.len() as f64;
    println!("{name:<44} {per:>7.1} ns per check ({refused} refused)");
}

fn main() {
    let numbers = numbers();
    let small = NumberPolicy::new(&PolicySettings {
        operator_prefixes: vec!["+34".into()],
        not_allowed_prefixes: vec!["+349".into(), "+348".into()],
        ..PolicySettings::default()
    })
    .unwrap();
    let big = NumberPolicy::new(&PolicySettings {
        // Operator ranges: 100,000 seven-digit blocks under +346; not-allowed: 100,000 more.
        operator_prefixes: (0..100_000u32).map(|i| format!("+346{:05}", i)).collect(),
        not_allowed_prefixes: (0..100_000u32)
            .map(|i| format!("+3469{:06}", i * 7))
            .collect(),
        blocked_numbers: (0..100_000u64)
            .map(|i| PhoneNumber::parse(&format!("+3461{:07}", i * 13)).unwrap())
            .collect(),
        ..PolicySettings::default()
    })
    .unwrap();
    for _ in 0..2 {
        run("3 prefixes, no barred numbers", &small, &numbers);
        run("200,000 prefixes, 100,000 barred numbers", &big, &numbers);
    }
}
