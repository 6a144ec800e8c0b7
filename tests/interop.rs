//! Interoperability with SMSCs nobody on this project wrote: node-smpp (npm `smpp`) and smpp34
//! (PyPI), each driven by a small script in `scripts/peers/` that the test starts on
//! 127.0.0.1. The gateway's SMPP client binds, submits GSM-7, UCS-2 and concatenated messages,
//! and must see a receipt for every segment; the texts are then checked as the peer's own code
//! decoded them (the scripts record every submit_sm to a JSON file).
//!
//! The peers are installed by `scripts/test` (`npm ci` in scripts/peers, a venv at .venv-peers);
//! without them these tests fail with a message that says how to install them.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use otp_gateway::domain::{PhoneNumber, Secret};
use otp_gateway::smpp::encoding::Concatenation;
use otp_gateway::smpp::{
    DeliveryState, OutboundSms, RouteSettings, SessionOptions, SmppClient, SmscAddress,
};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Clone, Copy, Debug)]
enum Kind {
    NodeSmpp,
    Smpp34,
}

/// A running peer; killed on drop.
struct Peer {
    child: Child,
    out: PathBuf,
    port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_peer(kind: Kind) -> Peer {
    let root = Path::new(ROOT);
    let port = free_port();
    let out = std::env::temp_dir().join(format!(
        "otpgw-interop-{kind:?}-{}-{port}.json",
        std::process::id()
    ));
    let mut cmd = match kind {
        Kind::NodeSmpp => {
            assert!(
                root.join("scripts/peers/node_modules/smpp").is_dir(),
                "node-smpp is not installed: run `npm ci --prefix scripts/peers` (as scripts/test does)"
            );
            let mut c = Command::new("node");
            c.arg(root.join("scripts/peers/node-smsc.js"));
            c
        }
        Kind::Smpp34 => {
            let python = root.join(".venv-peers/bin/python");
            assert!(
                python.is_file(),
                "smpp34 is not installed: run `python3 -m venv .venv-peers && \
                 .venv-peers/bin/pip install smpp34` (as scripts/test does)"
            );
            let mut c = Command::new(python);
            c.arg(root.join("scripts/peers/smpp34_smsc.py"));
            c
        }
    };
    let mut child = cmd
        .args(["--port", &port.to_string(), "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the {kind:?} peer: {e}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.trim() == "READY" {
                let _ = tx.send(());
            }
        }
    });
    let peer = Peer { child, out, port };
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("the {kind:?} peer did not start"));
    peer
}

fn settings(peer: &Peer, concatenation: Concatenation) -> RouteSettings {
    RouteSettings {
        options: SessionOptions {
            source_addr: "OTPGateway".parse().unwrap(),
            submit_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(2),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_millis(500),
            concatenation,
            ..SessionOptions::default()
        },
        ..RouteSettings::new(SmscAddress::new("127.0.0.1", peer.port, "otpgw", "secret"))
    }
}

/// The texts each interop run sends: (destination, text, segments, data_coding).
fn cases() -> Vec<(&'static str, String, usize, u64)> {
    vec![
        (
            "+34600000001",
            "123456 is your code {€} @home_".into(),
            1,
            0,
        ),
        ("+34600000002", "Код 4711 😀 رمز".into(), 1, 8),
        (
            "+34600000003",
            "Your code: 654321 ~ [ok] € "
                .chars()
                .cycle()
                .take(320)
                .collect(),
            3,
            0,
        ),
        (
            "+34600000004",
            "😀 Κωδικός 98765 ".chars().cycle().take(150).collect(),
            3,
            8,
        ),
    ]
}

async fn run(kind: Kind, concatenation: Concatenation) {
    let peer = start_peer(kind);
    let client = SmppClient::start(settings(&peer, concatenation));
    assert!(
        client.wait_bound(Duration::from_secs(5)).await,
        "{kind:?}: no bind"
    );
    let mut sent = Vec::new();
    for (i, (to, text, segments, _)) in cases().into_iter().enumerate() {
        let tag = format!("interop-{i}");
        let sms = OutboundSms {
            destination: PhoneNumber::parse(to).unwrap(),
            text: Secret::new(text.clone()),
            validity: Duration::from_secs(300),
            source: None,
        };
        let receipt = client.submit_tagged(sms, Some(&tag)).await.unwrap();
        let expected = match concatenation {
            Concatenation::MessagePayload => 1,
            _ => segments,
        };
        assert_eq!(receipt.segments, expected, "{kind:?} {to}");
        sent.push((tag, receipt));
    }

    // A receipt for every segment, matched although the peers format ids their own way.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let all = sent.iter().all(|(tag, _)| {
            client
                .delivery_report(tag)
                .is_some_and(|r| r.state == DeliveryState::Delivered)
        });
        if all {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{kind:?}: receipts missing: {:?}",
            sent.iter()
                .map(|(t, _)| client.delivery_report(t))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.shutdown().await;

    let recorded: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&peer.out).unwrap()).unwrap();
    for ((to, text, _, data_coding), (_, receipt)) in cases().into_iter().zip(&sent) {
        let mut parts: Vec<&Value> = recorded
            .iter()
            .filter(|r| r["destination"] == to.trim_start_matches('+'))
            .collect();
        assert_eq!(parts.len(), receipt.segments, "{kind:?} {to}: {parts:?}");
        parts.sort_by_key(|r| r["concat"]["sequence"].as_u64().unwrap_or(0));
        let decoded: String = parts
            .iter()
            .map(|r| r["text"].as_str().unwrap_or("<undecoded>"))
            .collect();
        assert_eq!(
            decoded, text,
            "{kind:?} {to}: the peer decoded something else"
        );
        let ids: Vec<&str> = parts
            .iter()
            .map(|r| r["messageId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, receipt.message_ids, "{kind:?} {to}");
        for r in &parts {
            assert_eq!(r["dataCoding"], data_coding, "{kind:?} {to}");
            assert_eq!(r["registeredDelivery"], 1);
            assert_eq!(
                (r["sourceTon"].clone(), r["sourceNpi"].clone()),
                (5.into(), 0.into())
            );
            assert_eq!(
                (r["destTon"].clone(), r["destNpi"].clone()),
                (1.into(), 1.into())
            );
            assert_eq!(r["source"], "OTPGateway");
        }
        if parts.len() > 1 {
            let reference = &parts[0]["concat"]["reference"];
            for (i, r) in parts.iter().enumerate() {
                assert_eq!(&r["concat"]["reference"], reference);
                assert_eq!(r["concat"]["total"], parts.len());
                assert_eq!(r["concat"]["sequence"], i + 1);
            }
        }
    }
}

#[tokio::test]
async fn node_smpp_peer_receives_gsm7_ucs2_and_concatenated_messages() {
    run(Kind::NodeSmpp, Concatenation::Udh8).await;
}

#[tokio::test]
async fn node_smpp_peer_reassembles_16_bit_udh() {
    run(Kind::NodeSmpp, Concatenation::Udh16).await;
}

#[tokio::test]
async fn smpp34_peer_receives_gsm7_ucs2_and_concatenated_messages() {
    run(Kind::Smpp34, Concatenation::Udh8).await;
}

#[tokio::test]
async fn smpp34_peer_sees_sar_tlvs() {
    run(Kind::Smpp34, Concatenation::Sar).await;
}

#[tokio::test]
async fn smpp34_peer_receives_message_payload() {
    run(Kind::Smpp34, Concatenation::MessagePayload).await;
}
