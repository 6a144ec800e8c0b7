//! Unit tests for PDU building plus client ↔ simulator tests over real TCP
//! on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::smsc_sim::{self, SimBehaviour, SimSettings, SmscHandle};

const PHONE: &str = "+34600000001";

fn sim_settings() -> SimSettings {
    SimSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        system_id: "gateway".into(),
        password: "secret".into(),
        receipt_delay: Duration::from_millis(20),
        print_messages: false,
        inbox_capacity: 100,
    }
}

fn client_settings(sim: &SmscHandle) -> SmppSettings {
    SmppSettings {
        host: "127.0.0.1".into(),
        port: sim.local_addr().port(),
        system_id: "gateway".into(),
        password: "secret".into(),
        source_addr: "OTPGateway".into(),
        submit_timeout: Duration::from_millis(1000),
        response_timeout: Duration::from_millis(1000),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(200),
        window: 4,
        ..SmppSettings::default()
    }
}

fn sms(text: &str) -> OutboundSms {
    OutboundSms {
        destination: PHONE.into(),
        text: text.into(),
        validity: Duration::from_secs(300),
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

#[test]
fn submit_pdu_fields() {
    let (encoded, submits) = build_submits("+4930123", &sms("123456 is your code")).unwrap();
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

    let (_, submits) = build_submits("Bank", &sms(&"x".repeat(200))).unwrap();
    assert_eq!(submits.len(), 2);
    assert!(submits.iter().all(|s| u8::from(s.esm_class) == 0x40));

    for bad in ["34600000001", "+", "+34a", ""] {
        let mut m = sms("x");
        m.destination = bad.into();
        assert!(matches!(
            build_submits("Bank", &m),
            Err(SmppError::Encoding(_))
        ));
    }
    assert!(matches!(
        build_submits("Bank", &sms(&"😀".repeat(70 * 256))),
        Err(SmppError::Encoding(_))
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
    let settings = SmppSettings {
        port: sim.listen.port(),
        system_id: "gateway".into(),
        password: "hunter2".into(),
        ..SmppSettings::default()
    };
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
    settings.password = "wrong".into();
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
    settings.submit_timeout = Duration::from_millis(300);
    let client = SmppClient::start(settings);
    assert!(client.wait_bound(Duration::from_secs(1)).await);
    sim.set_behaviour(SimBehaviour::Ignore);
    let started = Instant::now();
    let err = client.submit(sms("123456")).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, SmppError::Timeout { .. }), "{err:?}");
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
        settings.window = 1;
        settings.submit_timeout = Duration::from_millis(300);
        (sim, SmppClient::start(settings))
    };
    assert!(client.wait_bound(Duration::from_secs(1)).await);
    // Occupy the only slot, as a stuck in-flight message would.
    let held = client.inner.shared.slots[0].window.acquire().await.unwrap();
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
            m.destination = format!("+3460000010{i}");
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
