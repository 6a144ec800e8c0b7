//! Unit tests for PDU building plus client ↔ simulator tests over real TCP
//! on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::time::Instant;

use rusmpp::values::{Npi, Ton};

use super::pdu::{build_submits, source_address};
use super::*;
use crate::domain::{mask_digits as mask_number, PhoneNumber, Secret};
use crate::smsc_sim::{self, SimBehaviour, SimFaults, SimSettings, SmscHandle};

const PHONE: &str = "+34600000001";

fn sim_settings() -> SimSettings {
    SimSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        system_id: "gateway".into(),
        password: "secret".into(),
        receipt_delay: Duration::from_millis(20),
        print_messages: false,
        inbox_capacity: 100,
        faults: SimFaults::default(),
    }
}

fn client_settings(sim: &SmscHandle) -> RouteSettings {
    RouteSettings {
        options: SessionOptions {
            source_addr: "OTPGateway".parse().unwrap(),
            submit_timeout: Duration::from_millis(1000),
            response_timeout: Duration::from_millis(1000),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_millis(200),
            window: 4,
            ..SessionOptions::default()
        },
        ..RouteSettings::new(SmscAddress::new(
            "127.0.0.1",
            sim.local_addr().port(),
            "gateway",
            "secret",
        ))
    }
}

fn phone(n: &str) -> PhoneNumber {
    PhoneNumber::parse(n).unwrap()
}

fn sms(text: &str) -> OutboundSms {
    OutboundSms {
        destination: phone(PHONE),
        text: Secret::new(text),
        validity: Duration::from_secs(300),
        source: None,
    }
}

async fn bound_pair() -> (SmscHandle, SmppClient) {
    let sim = smsc_sim::start(sim_settings()).await.unwrap();
    let client = SmppClient::start(client_settings(&sim));
    assert!(client.wait_bound(Duration::from_secs(1)).await, "not bound");
    (sim, client)
}

async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

#[test]
fn validity_relative_format() {
    assert_eq!(
        relative_validity(Duration::from_secs(300)).unwrap(),
        "000000000500000R"
    );
    assert_eq!(
        relative_validity(Duration::from_secs(90_061)).unwrap(),
        "000001010101000R"
    );
    assert_eq!(
        relative_validity(Duration::from_secs(400 * 86_400)).unwrap(),
        "010105000000000R"
    );
    assert_eq!(
        relative_validity(Duration::from_secs(362 * 86_400)).unwrap(),
        "010002000000000R"
    );
    assert_eq!(
        relative_validity(Duration::from_secs(u64::MAX)).unwrap(),
        "991129235959000R"
    );
    assert_eq!(relative_validity(Duration::from_millis(500)), None);
}

#[test]
fn masking() {
    assert_eq!(mask_number("+34600000034"), "+346******34");
    assert_eq!(mask_number("+3460000003400"), "+346********00");
    assert_eq!(mask_number("12345"), "*****");
}

#[test]
fn source_ton_npi() {
    assert_eq!(
        source_address("+4915112345"),
        (Ton::International, Npi::Isdn, "4915112345")
    );
    assert_eq!(
        source_address("4915112345"),
        (Ton::International, Npi::Isdn, "4915112345")
    );
    assert_eq!(
        source_address("MyBank"),
        (Ton::Alphanumeric, Npi::Unknown, "MyBank")
    );
    assert_eq!(source_address("+"), (Ton::Alphanumeric, Npi::Unknown, "+"));
}

fn src(source: &str) -> SessionOptions {
    SessionOptions {
        source_addr: source.parse().unwrap(),
        ..SessionOptions::default()
    }
}

#[test]
fn submit_pdu_fields() {
    let (encoded, submits) = build_submits(&src("+4930123"), &sms("123456 is your code")).unwrap();
    assert_eq!(encoded.data_coding, 0);
    let s = &submits[0];
    assert_eq!(s.destination_addr.as_str(), "34600000001");
    assert_eq!(s.dest_addr_ton, Ton::International);
    assert_eq!(s.dest_addr_npi, Npi::Isdn);
    assert_eq!(s.source_addr.as_str(), "4930123");
    assert_eq!(u8::from(s.esm_class), 0x00);
    assert_eq!(u8::from(s.registered_delivery), 0x01);
    assert_eq!(s.validity_period.as_str(), "000000000500000R");
    assert_eq!(u8::from(s.data_coding), 0);

    let (_, submits) = build_submits(&src("Bank"), &sms(&"x".repeat(200))).unwrap();
    assert_eq!(submits.len(), 2);
    assert!(submits.iter().all(|s| u8::from(s.esm_class) == 0x40));

    let mut fixed = src("12345");
    (fixed.source_ton, fixed.source_npi) = (Some(3), Some(8));
    let (_, submits) = build_submits(&fixed, &sms("x")).unwrap();
    assert_eq!(
        (submits[0].source_addr_ton, submits[0].source_addr_npi),
        (Ton::from(3), Npi::from(8))
    );

    // A destination is a PhoneNumber, so malformed ones never reach PDU building.
    for bad in ["34600000001", "+", "+34a", ""] {
        assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
    }
    assert!(matches!(
        build_submits(&src("Bank"), &sms(&"😀".repeat(70 * 256))),
        Err(SmppError::Encoding { .. })
    ));
}

#[test]
fn debug_output_redacts_secrets() {
    let m = sms("123456 is your code");
    let dbg = format!("{m:?}");
    assert!(!dbg.contains("123456"));
    assert!(!dbg.contains(PHONE));
    let sim = SimSettings {
        listen: "127.0.0.1:1".parse().unwrap(),
        ..sim_settings()
    };
    let settings = RouteSettings::new(SmscAddress::new(
        "127.0.0.1",
        sim.listen.port(),
        "gateway",
        "hunter2",
    ));
    assert!(!format!("{settings:?}").contains("hunter2"));
}

#[tokio::test]
async fn submit_gsm_text() {
    let (sim, client) = bound_pair().await;
    let receipt = client.submit(sms("123456 is your code")).await.unwrap();
    assert_eq!(receipt.segments, 1);
    assert_eq!(receipt.data_coding, 0);
    assert_eq!(receipt.message_ids.len(), 1);
    assert_eq!(receipt.message_ids[0].len(), 10);
    let inbox = sim.messages_for(PHONE);
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].text, "123456 is your code");
    assert_eq!(inbox[0].phone_number, PHONE);
    assert_eq!(sim.submit_count(), 1);
    // The receipt comes back as deliver_sm and must be acknowledged.
    assert!(eventually(|| sim.receipts_acked() == 1).await);
    client.shutdown().await;
    sim.stop().await;
}

#[tokio::test]
async fn submit_ucs2_text() {
    let (sim, client) = bound_pair().await;
    let text = "Κωδικός 4711 رمز 😀";
    let receipt = client.submit(sms(text)).await.unwrap();
    assert_eq!(receipt.data_coding, 8);
    assert_eq!(receipt.segments, 1);
    assert_eq!(sim.messages_for(PHONE)[0].text, text);
    client.shutdown().await;
}

#[tokio::test]
async fn long_gsm_text_is_concatenated() {
    let (sim, client) = bound_pair().await;
    let text: String = "0123456789€".chars().cycle().take(300).collect();
    let receipt = client.submit(sms(&text)).await.unwrap();
    assert_eq!(receipt.segments, 3, "€ counts as two septets");
    let plain = "a".repeat(300);
    let receipt = client.submit(sms(&plain)).await.unwrap();
    assert_eq!(receipt.segments, 2);
    let inbox = sim.messages_for(PHONE);
    assert_eq!(inbox.len(), 2);
    assert_eq!(inbox[0].text, plain);
    assert_eq!(inbox[1].text, text);
    assert_eq!(sim.submit_count(), 5);
    client.shutdown().await;
}

#[tokio::test]
async fn wrong_password_never_binds() {
    let sim = smsc_sim::start(sim_settings()).await.unwrap();
    let mut settings = client_settings(&sim);
    settings.smsc.password = Secret::new("wrong");
    let client = SmppClient::start(settings);
    assert!(!client.wait_bound(Duration::from_millis(300)).await);
    assert!(!client.is_bound());
    let started = Instant::now();
    let err = client.submit(sms("123456")).await.unwrap_err();
    assert!(matches!(err, SmppError::NotBound), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(1100));
    assert!(sim.messages().is_empty());
    client.shutdown().await;
}

#[tokio::test]
async fn rejected_submit() {
    let (sim, client) = bound_pair().await;
    sim.set_behaviour(SimBehaviour::Reject {
        command_status: 0x0B,
    });
    let err = client.submit(sms("123456")).await.unwrap_err();
    assert!(
        matches!(
            err,
            SmppError::NotAllowed {
                command_status: 0x0B
            }
        ),
        "{err:?}"
    );
    assert_eq!(sim.submit_count(), 0);
    // Still bound: a rejection is per message, not per session.
    sim.set_behaviour(SimBehaviour::Accept);
    client.submit(sms("654321")).await.unwrap();
    client.shutdown().await;
}

#[tokio::test]
async fn ignored_submit_times_out() {
    let sim = smsc_sim::start(sim_settings()).await.unwrap();
    let mut settings = client_settings(&sim);
    settings.options.submit_timeout = Duration::from_millis(300);
    let client = SmppClient::start(settings);
    assert!(client.wait_bound(Duration::from_secs(1)).await);
    sim.set_behaviour(SimBehaviour::Ignore);
    let started = Instant::now();
    let err = client.submit(sms("123456")).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, SmppError::MayHold { .. }), "{err:?}");
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert!(took < Duration::from_millis(400), "{took:?}");
    // The permit was released: the window is not leaked by timeouts.
    sim.set_behaviour(SimBehaviour::Accept);
    client.submit(sms("123456")).await.unwrap();
    client.shutdown().await;
}

#[tokio::test]
async fn reconnects_after_disconnect() {
    let (sim, client) = bound_pair().await;
    sim.disconnect_all();
    assert!(
        eventually(|| !client.is_bound()).await,
        "never noticed drop"
    );
    assert!(client.wait_bound(Duration::from_secs(1)).await, "no rebind");
    let receipt = client.submit(sms("after reconnect")).await.unwrap();
    assert_eq!(receipt.segments, 1);
    assert_eq!(sim.messages_for(PHONE)[0].text, "after reconnect");
    client.shutdown().await;
}

#[tokio::test]
async fn stopped_simulator_fails_fast() {
    let (sim, client) = bound_pair().await;
    sim.stop().await;
    let started = Instant::now();
    let err = client.submit(sms("123456")).await.unwrap_err();
    assert!(
        matches!(err, SmppError::NotBound | SmppError::Connection(_)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(1100));
    assert!(!client.is_bound());
    client.shutdown().await;
}

#[tokio::test]
async fn shutdown_unbinds() {
    let (sim, client) = bound_pair().await;
    assert!(eventually(|| sim.active_sessions() == 1).await);
    client.shutdown().await;
    assert!(!client.is_bound());
    assert_eq!(sim.unbind_count(), 1);
    assert!(eventually(|| sim.active_sessions() == 0).await);
    // No reconnect after shutdown.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(sim.active_sessions(), 0);
    let err = client.submit(sms("x")).await.unwrap_err();
    assert!(matches!(err, SmppError::NotBound), "{err:?}");
}

#[tokio::test]
async fn window_limits_in_flight() {
    let (sim, client) = {
        let sim = smsc_sim::start(sim_settings()).await.unwrap();
        let mut settings = client_settings(&sim);
        settings.options.window = 1;
        settings.options.submit_timeout = Duration::from_millis(300);
        (sim, SmppClient::start(settings))
    };
    assert!(client.wait_bound(Duration::from_secs(1)).await);
    // Occupy the only slot, as a stuck in-flight message would.
    let held = client.shared().slots[0].occupy().await;
    let started = Instant::now();
    let err = client.submit(sms("b")).await.unwrap_err();
    assert!(matches!(err, SmppError::Busy), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(350));
    assert_eq!(sim.submit_count(), 0);
    drop(held);
    client.submit(sms("c")).await.unwrap();
    assert_eq!(sim.submit_count(), 1);
    client.shutdown().await;
}

#[tokio::test]
async fn concurrent_submits() {
    let (sim, client) = bound_pair().await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut m = sms(&format!("code {i}"));
            m.destination = phone(&format!("+3460000010{i}"));
            c.submit(m).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(sim.messages().len(), 10);
    assert_eq!(sim.messages_for("+34600000107")[0].text, "code 7");
    client.shutdown().await;
}

fn route(s: &mut RouteSettings, name: &str, prefixes: &[&str], priority: u32) {
    s.name = name.into();
    s.prefixes = prefixes.iter().map(|p| (*p).to_owned()).collect();
    s.priority = priority;
}

async fn pool(
    faults: SimFaults,
    tweak: impl FnOnce(&mut RouteSettings),
) -> (SmscHandle, SmppClient, crate::metrics::SmppMetrics) {
    let sim = smsc_sim::start(SimSettings {
        faults,
        ..sim_settings()
    })
    .await
    .unwrap();
    let mut settings = client_settings(&sim);
    tweak(&mut settings);
    let binds = settings.options.binds;
    let metrics = crate::metrics::SmppMetrics::new().unwrap();
    let client = SmppClient::start_with(
        settings,
        metrics.clone(),
        tokio_util::sync::CancellationToken::new(),
    );
    assert!(
        client
            .wait_bound_sessions(binds, Duration::from_secs(2))
            .await,
        "not every session bound"
    );
    (sim, client, metrics)
}

fn numbered(i: usize) -> OutboundSms {
    let mut m = sms(&format!("code {i}"));
    m.destination = phone(&format!("+34600{i:06}"));
    m
}

#[tokio::test]
async fn pool_binds_every_session_and_first_free_wins() {
    let (sim, client, metrics) = pool(SimFaults::default(), |s| {
        s.options.binds = 3;
        s.options.window = 1;
    })
    .await;
    assert!(eventually(|| sim.active_sessions() == 3).await);
    assert_eq!(client.bound_sessions(), 3);
    assert_eq!(metrics.binds.with_label_values(&["default", "up"]).get(), 3);
    for i in 0..3 {
        client.submit(numbered(i)).await.unwrap();
    }
    let arrivals = sim.submit_arrivals();
    assert!(
        arrivals.iter().all(|(s, _)| *s == arrivals[0].0),
        "sequential submits all take the first session"
    );
    // With the first session's only slot taken, the next submit goes elsewhere.
    let held = client.shared().slots[0].occupy().await;
    client.submit(numbered(3)).await.unwrap();
    drop(held);
    let arrivals = sim.submit_arrivals();
    assert_ne!(arrivals[3].0, arrivals[0].0);
    client.shutdown().await;
    assert_eq!(sim.unbind_count(), 3, "every session unbinds");
    assert_eq!(
        metrics.binds.with_label_values(&["default", "down"]).get(),
        3
    );
}

#[tokio::test]
async fn every_window_full_until_the_deadline_is_busy() {
    let (sim, client, _) = pool(SimFaults::default(), |s| {
        s.options.binds = 2;
        s.options.window = 1;
        s.options.submit_timeout = Duration::from_millis(200);
    })
    .await;
    let a = client.shared().slots[0].occupy().await;
    let b = client.shared().slots[1].occupy().await;
    let started = Instant::now();
    let err = client.submit(sms("x")).await.unwrap_err();
    assert!(matches!(err, SmppError::Busy), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(350));
    // A slot freed while a submit waits is taken at once.
    let c = client.clone();
    let waiting = tokio::spawn(async move { c.submit(sms("y")).await });
    tokio::time::sleep(Duration::from_millis(30)).await;
    drop(b);
    // Pool permits notify on release; this one was taken behind its back.
    client.shared().changed.notify_waiters();
    waiting.await.unwrap().unwrap();
    drop(a);
    assert_eq!(sim.submit_count(), 1);
    client.shutdown().await;
}

#[tokio::test]
async fn throttled_submits_slow_down_and_succeed_within_the_deadline() {
    let faults = SimFaults {
        throttle_tps: 3,
        ..SimFaults::default()
    };
    let (sim, client, metrics) = pool(faults, |s| {
        s.options.submit_timeout = Duration::from_secs(3);
    })
    .await;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.submit(numbered(i)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(sim.throttled_count() > 0, "the SMSC did throttle");
    assert_eq!(
        sim.submit_count(),
        6,
        "exactly one acknowledged submit each"
    );
    assert!(metrics.throttled.with_label_values(&["default"]).get() > 0);
    assert!(
        metrics
            .submit_results
            .with_label_values(&["default", "0x00000058"])
            .get()
            > 0
    );
    client.shutdown().await;
}

#[tokio::test]
async fn throttled_until_the_deadline_is_reported_as_throttled() {
    let faults = SimFaults {
        throttle_tps: 1,
        ..SimFaults::default()
    };
    let (_sim, client, _) = pool(faults, |s| {
        s.options.submit_timeout = Duration::from_millis(300);
    })
    .await;
    client.submit(numbered(1)).await.unwrap();
    let started = Instant::now();
    let err = client.submit(numbered(2)).await.unwrap_err();
    assert!(
        matches!(
            err,
            SmppError::Throttled {
                command_status: 0x58
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(450));
    client.shutdown().await;
}

#[tokio::test]
async fn system_errors_are_retried_and_each_message_is_acknowledged_once() {
    let faults = SimFaults {
        error_rate: "0.5".parse().unwrap(),
        ..SimFaults::default()
    };
    let (sim, client, _) = pool(faults, |s| {
        s.options.binds = 3;
        s.options.submit_timeout = Duration::from_secs(2);
    })
    .await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.submit(numbered(i)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(sim.submit_count(), 10);
    assert!(sim.submit_arrivals().len() > 10, "some were retried");
    client.shutdown().await;
}

#[tokio::test]
async fn a_session_dropped_mid_submit_is_retried_on_another() {
    // Each session dies, unanswered, on its 5th PDU (bind + 3 answered
    // submits + the one that is lost).
    let faults = SimFaults {
        disconnect_after: 5,
        ..SimFaults::default()
    };
    let (sim, client, _) = pool(faults, |s| {
        s.options.binds = 2;
        s.options.reconnect_min = Duration::from_millis(500);
        s.options.reconnect_max = Duration::from_millis(500);
    })
    .await;
    for i in 0..5 {
        client.submit(numbered(i)).await.unwrap();
    }
    assert_eq!(sim.submit_count(), 5);
    assert_eq!(sim.messages().len(), 5);
    client.shutdown().await;
}

#[tokio::test]
async fn status_map_and_generic_nack() {
    let faults = SimFaults {
        prefix_errors: "+3461=0x0400,+3462=0x0401".parse().unwrap(),
        ..SimFaults::default()
    };
    let (sim, client, metrics) = pool(faults, |s| {
        s.options.status_map.insert(0x0400, StatusAction::Blocked);
        s.options
            .status_map
            .insert(0x0401, StatusAction::NotAllowed);
    })
    .await;
    let mut m = sms("x");
    m.destination = phone("+34610000000");
    let err = client.submit(m.clone()).await.unwrap_err();
    assert!(
        matches!(
            err,
            SmppError::Blocked {
                command_status: 0x0400
            }
        ),
        "{err:?}"
    );
    m.destination = phone("+34620000000");
    let err = client.submit(m).await.unwrap_err();
    assert!(
        matches!(
            err,
            SmppError::NotAllowed {
                command_status: 0x0401
            }
        ),
        "{err:?}"
    );
    sim.set_behaviour(SimBehaviour::Nack {
        command_status: 0x03,
    });
    let err = client.submit(sms("y")).await.unwrap_err();
    assert!(
        matches!(
            err,
            SmppError::Rejected {
                command_status: 0x03
            }
        ),
        "{err:?}"
    );
    assert!(client.is_bound(), "a generic_nack does not end the session");
    sim.set_behaviour(SimBehaviour::Accept);
    client.submit(sms("z")).await.unwrap();
    assert_eq!(
        metrics
            .submit_results
            .with_label_values(&["default", "0x00000400"])
            .get(),
        1
    );
    client.shutdown().await;
}

/// The most segments one session sent in any one-second window.
fn max_per_second(arrivals: &[(u64, Instant)], session: u64) -> usize {
    let times: Vec<Instant> = arrivals
        .iter()
        .filter(|(s, _)| *s == session)
        .map(|(_, t)| *t)
        .collect();
    times
        .iter()
        .map(|start| {
            times
                .iter()
                .filter(|t| **t >= *start && **t < *start + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn throttle_adherence_never_exceeds_max_tps_per_bind() {
    // The SMSC throttles at exactly the granted rate, so one segment too
    // many in any second would show up as a throttling answer.
    let faults = SimFaults {
        throttle_tps: 10,
        ..SimFaults::default()
    };
    let (sim, client, _) = pool(faults, |s| {
        s.options.binds = 2;
        s.options.max_tps = 10;
        s.options.window = 8;
        s.options.submit_timeout = Duration::from_secs(4);
    })
    .await;
    let tasks: Vec<_> = (0..36)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move {
                let mut m = numbered(i);
                if i % 4 == 0 {
                    // A concatenated message: every segment counts.
                    m.text = Secret::new("a".repeat(300));
                }
                c.submit(m).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(sim.throttled_count(), 0);
    let arrivals = sim.submit_arrivals();
    assert_eq!(arrivals.len(), 36 + 9);
    let mut sessions: Vec<u64> = arrivals.iter().map(|(s, _)| *s).collect();
    sessions.sort_unstable();
    sessions.dedup();
    assert_eq!(sessions.len(), 2, "both binds carried traffic");
    for s in sessions {
        let peak = max_per_second(&arrivals, s);
        assert!(peak <= 10, "session {s} sent {peak} segments in one second");
    }
    client.shutdown().await;
}

#[tokio::test]
async fn receipts_for_every_segment_are_tracked_whatever_the_id_format() {
    let faults = SimFaults {
        message_ids: smsc_sim::MessageIdFormat::HexRespDecimalReceipt,
        receipt_before_response: true,
        receipt_tlvs: false,
        receipt_states: "undeliverable=1".parse().unwrap(),
        ..SimFaults::default()
    };
    let (_sim, client, metrics) = pool(faults, |_| {}).await;
    let receipt = client
        .submit_tagged(sms(&"a".repeat(300)), Some("auth-42"))
        .await
        .unwrap();
    assert_eq!(receipt.segments, 2);
    assert!(
        eventually(|| client
            .delivery_report("auth-42")
            .is_some_and(|r| r.state == DeliveryState::Undeliverable))
        .await,
        "{:?}",
        client.delivery_report("auth-42")
    );
    let report = client.delivery_report("auth-42").unwrap();
    assert_eq!(report.segments.len(), 2);
    assert_eq!(report.segments[0].message_id, receipt.message_ids[0]);
    assert!(report
        .segments
        .iter()
        .all(|s| s.state == DeliveryState::Undeliverable && s.error.as_deref() == Some("001")));
    assert_eq!(
        metrics.receipts.with_label_values(&["undeliverable"]).get(),
        2
    );
    // Untagged submits are not tracked.
    client.submit(sms("x")).await.unwrap();
    client.shutdown().await;
}

#[tokio::test]
async fn every_concatenation_mode_reaches_the_handset_whole() {
    use super::encoding::Concatenation;
    for (mode, pdus) in [
        (Concatenation::Udh8, 3),
        (Concatenation::Udh16, 3),
        (Concatenation::Sar, 3),
        (Concatenation::MessagePayload, 1),
    ] {
        let (sim, client, _) = pool(SimFaults::default(), |s| s.options.concatenation = mode).await;
        let gsm: String = "0123456789{€".chars().cycle().take(320).collect();
        let ucs2: String = "Код 😀 ".chars().cycle().take(150).collect();
        let receipt = client.submit(sms(&gsm)).await.unwrap();
        assert_eq!(receipt.segments, pdus, "{mode:?}");
        client.submit(sms(&ucs2)).await.unwrap();
        let inbox = sim.messages_for(PHONE);
        assert_eq!(inbox.len(), 2, "{mode:?}");
        assert_eq!(inbox[1].text, gsm, "{mode:?}");
        assert_eq!(inbox[0].text, ucs2, "{mode:?}");
        client.shutdown().await;
        sim.stop().await;
    }
}

#[tokio::test]
async fn routes_by_prefix_and_priority_and_fails_over_without_a_bound_session() {
    let (sim_a, client_a, _) = pool(SimFaults::default(), |s| route(s, "a", &["+3460"], 1)).await;
    let (sim_b, client_b, _) = pool(SimFaults::default(), |s| route(s, "b", &[], 2)).await;
    let router = SmppRouter::new(vec![client_b.clone(), client_a.clone()]);
    let mut m = sms("to a");
    router.submit_tagged(m.clone(), Some("t-a")).await.unwrap();
    m.destination = phone("+447700900001");
    m.text = Secret::new("to b");
    router.submit_tagged(m, Some("t-b")).await.unwrap();
    assert_eq!(sim_a.messages_for(PHONE)[0].text, "to a");
    assert_eq!(sim_b.messages_for("+447700900001")[0].text, "to b");
    assert!(
        eventually(|| router
            .delivery_report("t-b")
            .is_some_and(|r| r.route == "b"))
        .await
    );

    // Route a loses its SMSC: its numbers fail over to b within the deadline.
    client_a.shutdown().await;
    let started = Instant::now();
    router.submit_tagged(sms("failover"), None).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(sim_b.messages_for(PHONE)[0].text, "failover");

    // Without a catch-all, an unserved number has no route.
    let only_a = SmppRouter::new(vec![client_a]);
    let mut m = sms("x");
    m.destination = phone("+447700900001");
    assert!(matches!(
        only_a.submit_tagged(m, None).await.map_err(|e| e.error),
        Err(SmppError::NoRoute)
    ));
    router.shutdown().await;
}

/// A TLS front for the simulator, with a certificate for 127.0.0.1 signed by
/// a throw-away CA; returns (port, CA bundle path).
async fn tls_front(sim: &SmscHandle, dir: &std::path::Path) -> (u16, std::path::PathBuf) {
    use std::sync::Arc;
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "otp-gateway test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend = sim.local_addr();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, ca_file)
}

#[tokio::test]
async fn smpps_trusts_the_configured_ca_only() {
    let sim = smsc_sim::start(sim_settings()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("otpgw-tls-{}", std::process::id()));
    let (port, ca_file) = tls_front(&sim, &dir).await;
    let mut settings = client_settings(&sim);
    settings.smsc.port = port;
    settings.smsc.tls = true;
    settings.options.ca_file = Some(ca_file);
    let client = SmppClient::start(settings.clone());
    assert!(
        client.wait_bound(Duration::from_secs(2)).await,
        "no TLS bind"
    );
    client.submit(sms("over TLS 😀")).await.unwrap();
    assert_eq!(sim.messages_for(PHONE)[0].text, "over TLS 😀");
    assert!(eventually(|| sim.receipts_acked() == 1).await);
    client.shutdown().await;

    // The public web roots do not vouch for the private CA: never bound.
    settings.options.ca_file = None;
    let untrusted = SmppClient::start(settings);
    assert!(!untrusted.wait_bound(Duration::from_millis(300)).await);
    untrusted.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ca_bundle_errors_name_the_problem() {
    let dir = std::env::temp_dir().join(format!("otpgw-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate").unwrap();
    assert!(super::tls::load_ca(&empty)
        .unwrap_err()
        .contains("no certificate"));
    assert!(super::tls::load_ca(&dir.join("missing.pem"))
        .unwrap_err()
        .contains("cannot read"));
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn transmitter_binds_get_their_receipts_on_a_separate_receiver_bind() {
    let (sim, client, _) = pool(SimFaults::default(), |s| {
        s.options.bind_mode = BindMode::Transmitter;
        s.options.receiver_bind = true;
        s.options.binds = 2;
    })
    .await;
    assert!(
        eventually(|| sim.active_sessions() == 3).await,
        "2 transmitters + 1 receiver"
    );
    assert!(eventually(|| client.shared().slots[2].is_bound()).await);
    assert_eq!(client.bound_sessions(), 2, "the receiver takes no submits");
    for i in 0..4 {
        client
            .submit_tagged(numbered(i), Some(&format!("rx-{i}")))
            .await
            .unwrap();
    }
    assert!(
        eventually(|| (0..4).all(|i| client
            .delivery_report(&format!("rx-{i}"))
            .is_some_and(|r| r.state == DeliveryState::Delivered)))
        .await
    );
    // The deliver_sm_resps may still be on their way to the simulator.
    assert!(eventually(|| sim.receipts_acked() == 4).await);
    client.shutdown().await;

    // Transmitters alone never see a receipt.
    let (sim, client, _) = pool(SimFaults::default(), |s| {
        s.options.bind_mode = BindMode::Transmitter
    })
    .await;
    client.submit_tagged(sms("x"), Some("tx")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        client.delivery_report("tx").unwrap().state,
        DeliveryState::Submitted
    );
    assert_eq!(sim.receipts_acked(), 0);
    client.shutdown().await;
}

#[tokio::test]
async fn a_pdu_coalesced_behind_the_bind_response_does_not_break_the_session() {
    let faults = SimFaults {
        pdu_after_bind: true,
        receipt_before_response: true,
        ..SimFaults::default()
    };
    let (sim, client, _) = pool(faults, |s| s.options.binds = 2).await;
    for i in 0..5 {
        client
            .submit_tagged(numbered(i), Some(&format!("c-{i}")))
            .await
            .unwrap();
    }
    assert_eq!(sim.submit_count(), 5);
    assert!(
        eventually(|| (0..5).all(|i| client
            .delivery_report(&format!("c-{i}"))
            .is_some_and(|r| r.state == DeliveryState::Delivered)))
        .await
    );
    assert_eq!(client.bound_sessions(), 2);
    client.shutdown().await;
}

#[tokio::test]
async fn system_errors_and_throttling_fail_over_to_the_next_smsc_within_the_deadline() {
    let broken = SimFaults {
        error_rate: "1.0".parse().unwrap(),
        ..SimFaults::default()
    };
    let throttled = SimFaults {
        throttle_tps: 1,
        ..SimFaults::default()
    };
    for faults in [broken, throttled] {
        let timeout = Duration::from_millis(600);
        let (sim_a, client_a, _) = pool(faults, |s| {
            route(s, "a", &["+3460"], 1);
            s.options.submit_timeout = timeout;
        })
        .await;
        let (sim_b, client_b, _) = pool(SimFaults::default(), |s| route(s, "b", &[], 2)).await;
        let router = SmppRouter::new(vec![client_a, client_b]);
        for i in 0..3 {
            let started = Instant::now();
            router.submit_tagged(numbered(i), None).await.unwrap();
            assert!(started.elapsed() < timeout + Duration::from_millis(150));
        }
        let (on_a, on_b) = (sim_a.submit_count(), sim_b.submit_count());
        assert_eq!(on_a + on_b, 3, "each message acknowledged once");
        assert!(on_b >= 2, "a={on_a} b={on_b}");
        router.shutdown().await;
    }
}

async fn eventually_within(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

#[tokio::test]
async fn a_segment_without_an_answer_in_response_timeout_is_retried_on_another_session() {
    // The simulator answers the first submit_sm only after 500ms; response_timeout is 100ms,
    // so that attempt is abandoned and the segment goes to the other session, well inside
    // submit_timeout.
    let faults = SimFaults {
        late_submits: 1,
        late_delay: Duration::from_millis(500),
        ..SimFaults::default()
    };
    let (sim, client, metrics) = pool(faults, |s| {
        s.options.binds = 2;
        s.options.response_timeout = Duration::from_millis(100);
        s.options.submit_timeout = Duration::from_millis(1000);
    })
    .await;
    let started = Instant::now();
    let receipt = client.submit(sms("123456")).await.unwrap();
    let took = started.elapsed();
    assert_eq!(receipt.segments, 1);
    assert!(took < Duration::from_millis(400), "{took:?}");
    let arrivals = sim.submit_arrivals();
    assert_eq!(arrivals.len(), 2, "{arrivals:?}");
    assert_ne!(
        arrivals[0].0, arrivals[1].0,
        "the retry took the other session"
    );
    assert_eq!(
        metrics
            .submit_results
            .with_label_values(&["default", "timeout"])
            .get(),
        1
    );
    // The late answer of a message that was acknowledged elsewhere cancels nothing.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(sim.cancelled().is_empty());
    client.shutdown().await;
}

#[tokio::test]
async fn a_slow_bind_response_within_the_bind_timeout_still_binds() {
    // Every answer (the bind responses included) takes 400ms, more than submit_timeout and
    // response_timeout: neither applies to the bind.
    let sim = smsc_sim::start(SimSettings {
        faults: SimFaults {
            response_delay: Duration::from_millis(400),
            ..SimFaults::default()
        },
        ..sim_settings()
    })
    .await
    .unwrap();
    let mut settings = client_settings(&sim);
    settings.options.submit_timeout = Duration::from_millis(150);
    settings.options.response_timeout = Duration::from_millis(100);
    let client = SmppClient::start(settings);
    assert!(
        client.wait_bound(Duration::from_secs(3)).await,
        "never bound"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn no_attempt_starts_whose_answer_cannot_come_before_the_deadline() {
    // Every answer is ESME_RSYSERR after 80ms: the SMSC never holds anything. An attempt
    // started in the last few milliseconds would end without an answer and turn the honest
    // "not accepted" into "may hold" (504); the pool stops instead.
    let faults = SimFaults {
        error_rate: "1.0".parse().unwrap(),
        response_delay: Duration::from_millis(80),
        ..SimFaults::default()
    };
    let (sim, client, _) = pool(faults, |s| {
        s.options.submit_timeout = Duration::from_millis(200);
    })
    .await;
    let err = client.submit(sms("123456")).await.unwrap_err();
    assert!(
        matches!(
            err,
            SmppError::Rejected {
                command_status: 0x08
            }
        ),
        "{err:?}"
    );
    assert!(sim.submit_arrivals().len() <= 2);
    client.shutdown().await;
}

#[tokio::test]
async fn a_late_acceptance_after_may_hold_is_cancelled_and_reported() {
    // The only session answers the first submit_sm after 600ms, past submit_timeout: the
    // submit returns MayHold (504), then the ESME_ROK arrives and the message is cancelled
    // before the simulator "delivers" it (its receipt is due after 5s).
    let sim = smsc_sim::start(SimSettings {
        receipt_delay: Duration::from_secs(5),
        faults: SimFaults {
            late_submits: 1,
            late_delay: Duration::from_millis(600),
            ..SimFaults::default()
        },
        ..sim_settings()
    })
    .await
    .unwrap();
    let mut settings = client_settings(&sim);
    settings.options.submit_timeout = Duration::from_millis(300);
    let metrics = crate::metrics::SmppMetrics::new().unwrap();
    let client = SmppClient::start_with(
        settings,
        metrics.clone(),
        tokio_util::sync::CancellationToken::new(),
    );
    assert!(client.wait_bound(Duration::from_secs(1)).await);
    let err = client
        .submit_tagged(sms("123456"), Some("auth-late"))
        .await
        .unwrap_err();
    assert!(matches!(err, SmppError::MayHold { .. }), "{err:?}");
    assert_eq!(sim.accepted().len(), 1, "the SMSC took it");
    assert!(
        eventually_within(Duration::from_secs(2), || sim.cancelled().len() == 1).await,
        "never cancelled"
    );
    assert_eq!(sim.cancelled()[0].message_id, sim.accepted()[0].message_id);
    assert!(
        sim.messages_for(PHONE).is_empty(),
        "the handset never shows it"
    );
    assert!(
        eventually_within(Duration::from_secs(1), || {
            client
                .delivery_report("auth-late")
                .is_some_and(|r| r.state == DeliveryState::Cancelled)
        })
        .await
    );
    let report = client.delivery_report("auth-late").unwrap();
    assert_eq!(report.segments.len(), 1);
    assert_eq!(report.segments[0].message_id, sim.accepted()[0].message_id);
    assert_eq!(
        metrics
            .cancels
            .with_label_values(&["default", "cancelled"])
            .get(),
        1
    );
    client.shutdown().await;
}
