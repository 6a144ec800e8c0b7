//! Protocol-level tests driving the simulator with raw PDUs.

#![allow(clippy::unwrap_used)]

use std::str::FromStr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{BindTransceiver, BindTransmitter, SubmitSm};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, InterfaceVersion, RegisteredDelivery};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::*;

type Conn = Framed<TcpStream, CommandCodec>;

fn settings() -> SimSettings {
    SimSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        system_id: "esme".into(),
        password: "pw".into(),
        receipt_delay: Duration::from_millis(10),
        print_messages: true,
        inbox_capacity: 3,
        faults: SimFaults::default(),
    }
}

async fn connect(sim: &SmscHandle) -> Conn {
    let stream = TcpStream::connect(sim.local_addr()).await.unwrap();
    Framed::new(stream, CommandCodec::new())
}

async fn recv(conn: &mut Conn) -> Command {
    tokio::time::timeout(Duration::from_secs(1), conn.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

async fn bind(conn: &mut Conn, system_id: &str, password: &str) -> Command {
    let bind = BindTransceiver::builder()
        .system_id(COctetString::from_str(system_id).unwrap())
        .password(COctetString::from_str(password).unwrap())
        .interface_version(InterfaceVersion::Smpp3_4)
        .build();
    conn.send(Command::new(CommandStatus::EsmeRok, 1, bind))
        .await
        .unwrap();
    recv(conn).await
}

fn submit(dest: &str, esm: u8, dc: u8, body: &[u8], rd: u8) -> SubmitSm {
    SubmitSm::builder()
        .source_addr(COctetString::from_str("Bank").unwrap())
        .destination_addr(COctetString::from_str(dest).unwrap())
        .esm_class(EsmClass::from(esm))
        .data_coding(DataCoding::from(dc))
        .registered_delivery(RegisteredDelivery::from(rd))
        .short_message(OctetString::from_slice(body).unwrap())
        .build()
}

#[tokio::test]
async fn bind_checks_credentials() {
    let sim = start(settings()).await.unwrap();
    let mut c = connect(&sim).await;
    let resp = bind(&mut c, "other", "pw").await;
    assert_eq!(resp.status(), CommandStatus::EsmeRinvsysid);
    assert!(tokio::time::timeout(Duration::from_secs(1), c.next())
        .await
        .unwrap()
        .is_none());

    let mut c = connect(&sim).await;
    let resp = bind(&mut c, "esme", "nope").await;
    assert_eq!(resp.status(), CommandStatus::EsmeRinvpaswd);
    assert_eq!(resp.id(), CommandId::BindTransceiverResp);

    let mut c = connect(&sim).await;
    assert_eq!(
        bind(&mut c, "esme", "pw").await.status(),
        CommandStatus::EsmeRok
    );
    assert_eq!(
        bind(&mut c, "esme", "pw").await.status(),
        CommandStatus::EsmeRalybnd
    );
    sim.stop().await;
}

#[tokio::test]
async fn submit_requires_bind_and_enquire_link_works() {
    let sim = start(settings()).await.unwrap();
    let mut c = connect(&sim).await;
    c.send(Command::new(CommandStatus::EsmeRok, 2, Pdu::EnquireLink))
        .await
        .unwrap();
    let r = recv(&mut c).await;
    assert_eq!(
        (r.id(), r.sequence_number()),
        (CommandId::EnquireLinkResp, 2)
    );
    c.send(Command::new(
        CommandStatus::EsmeRok,
        3,
        submit("34600000001", 0, 0, b"hi", 0),
    ))
    .await
    .unwrap();
    let r = recv(&mut c).await;
    assert_eq!(r.id(), CommandId::SubmitSmResp);
    assert_eq!(r.status(), CommandStatus::EsmeRinvbndsts);

    // A transmitter may submit but gets no receipts.
    let bind = BindTransmitter::builder()
        .system_id(COctetString::from_str("esme").unwrap())
        .password(COctetString::from_str("pw").unwrap())
        .build();
    c.send(Command::new(CommandStatus::EsmeRok, 4, bind))
        .await
        .unwrap();
    assert_eq!(recv(&mut c).await.id(), CommandId::BindTransmitterResp);
    c.send(Command::new(
        CommandStatus::EsmeRok,
        5,
        submit("34600000001", 0, 0, b"hi", 1),
    ))
    .await
    .unwrap();
    assert_eq!(recv(&mut c).await.status(), CommandStatus::EsmeRok);
    assert!(tokio::time::timeout(Duration::from_millis(100), c.next())
        .await
        .is_err());
}

#[tokio::test]
async fn bad_pdus_get_generic_nack() {
    let sim = start(settings()).await.unwrap();
    let mut stream = TcpStream::connect(sim.local_addr()).await.unwrap();
    // Unknown command_id 0x00000777, seq 9.
    stream
        .write_all(&[0, 0, 0, 16, 0, 0, 7, 0x77, 0, 0, 0, 0, 0, 0, 0, 9])
        .await
        .unwrap();
    // bind_transmitter whose body is not NUL-terminated, seq 10.
    stream
        .write_all(&[
            0, 0, 0, 19, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 10, b'a', b'b', b'c',
        ])
        .await
        .unwrap();
    let mut c = Framed::new(stream, CommandCodec::new());
    let r = recv(&mut c).await;
    assert_eq!(r.id(), CommandId::GenericNack);
    assert_eq!(r.sequence_number(), 9);
    assert_eq!(r.status(), CommandStatus::EsmeRinvcmdid);
    let r = recv(&mut c).await;
    assert_eq!(r.id(), CommandId::GenericNack);
    assert_eq!(r.sequence_number(), 10);
    // The session survives bad PDUs.
    assert_eq!(
        bind(&mut c, "esme", "pw").await.status(),
        CommandStatus::EsmeRok
    );

    // A hopeless command_length ends the session without a panic.
    let mut raw = TcpStream::connect(sim.local_addr()).await.unwrap();
    raw.write_all(&[0, 0, 0, 3, 0, 0, 0, 0]).await.unwrap();
    let mut raw = Framed::new(raw, CommandCodec::new());
    assert!(tokio::time::timeout(Duration::from_secs(1), raw.next())
        .await
        .unwrap()
        .is_none());
    // The server still accepts connections.
    let mut c = connect(&sim).await;
    assert_eq!(
        bind(&mut c, "esme", "pw").await.status(),
        CommandStatus::EsmeRok
    );
}

#[tokio::test]
async fn reassembles_16bit_reference_and_decodes_latin1() {
    let sim = start(settings()).await.unwrap();
    let mut c = connect(&sim).await;
    bind(&mut c, "esme", "pw").await;
    // Parts out of order, 16-bit reference IE (0x08), data_coding 3.
    let p2 = [&[6, 8, 4, 0x12, 0x34, 2, 2][..], &[0xE9, b'!']].concat();
    let p1 = [&[6, 8, 4, 0x12, 0x34, 2, 1][..], b"caf"].concat();
    for (seq, body) in [(2, p2), (3, p1)] {
        c.send(Command::new(
            CommandStatus::EsmeRok,
            seq,
            submit("+491701234567", 0x40, 3, &body, 0),
        ))
        .await
        .unwrap();
        assert_eq!(recv(&mut c).await.status(), CommandStatus::EsmeRok);
    }
    let msgs = sim.messages_for("+491701234567");
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].text, "café!");
    assert!(msgs[0].received_at.ends_with('Z'));
    assert_eq!(sim.submit_count(), 2);
}

#[tokio::test]
async fn receipt_and_inbox_capacity() {
    let sim = start(settings()).await.unwrap();
    let mut c = connect(&sim).await;
    bind(&mut c, "esme", "pw").await;
    for (i, text) in ["one", "two", "three", "four"].iter().enumerate() {
        let seq = u32::try_from(i).unwrap() + 10;
        let rd = if i == 0 { 1 } else { 0 };
        c.send(Command::new(
            CommandStatus::EsmeRok,
            seq,
            submit("34600000001", 0, 0, text.as_bytes(), rd),
        ))
        .await
        .unwrap();
        let r = recv(&mut c).await;
        assert_eq!(r.status(), CommandStatus::EsmeRok);
        if i == 0 {
            let Some(Pdu::SubmitSmResp(resp)) = r.pdu() else {
                panic!("no body")
            };
            let id = resp.message_id().as_str().to_owned();
            assert_eq!(id.len(), 10);
            let d = recv(&mut c).await;
            let Some(Pdu::DeliverSm(dsm)) = d.pdu() else {
                panic!("expected deliver_sm, got {d:?}")
            };
            assert_eq!(u8::from(dsm.esm_class), 0x04);
            assert_eq!(dsm.source_addr.as_str(), "34600000001");
            let text = std::str::from_utf8(dsm.short_message().as_ref()).unwrap();
            assert!(text.starts_with(&format!("id:{id} sub:001 dlvrd:001 submit date:")));
            assert!(text.ends_with("stat:DELIVRD err:000 text:"), "{text}");
            assert_eq!(dsm.tlvs().len(), 2);
            c.send(Command::new(
                CommandStatus::EsmeRok,
                d.sequence_number(),
                rusmpp::pdus::DeliverSmResp::default(),
            ))
            .await
            .unwrap();
        }
    }
    let texts: Vec<String> = sim.messages().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, ["four", "three", "two"]);
    assert_eq!(sim.receipts_acked(), 1);
}

#[tokio::test]
async fn rejects_and_unbind() {
    let sim = start(settings()).await.unwrap();
    let mut c = connect(&sim).await;
    bind(&mut c, "esme", "pw").await;
    sim.set_behaviour(SimBehaviour::Reject {
        command_status: 0x45,
    });
    c.send(Command::new(
        CommandStatus::EsmeRok,
        2,
        submit("34600000001", 0, 0, b"x", 0),
    ))
    .await
    .unwrap();
    let r = recv(&mut c).await;
    assert_eq!(u32::from(r.status()), 0x45);
    assert!(sim.messages().is_empty());
    c.send(Command::new(CommandStatus::EsmeRok, 3, Pdu::Unbind))
        .await
        .unwrap();
    assert_eq!(recv(&mut c).await.id(), CommandId::UnbindResp);
    assert!(tokio::time::timeout(Duration::from_secs(1), c.next())
        .await
        .unwrap()
        .is_none());
    assert_eq!(sim.unbind_count(), 1);
}

#[tokio::test]
async fn stop_unbinds_sessions() {
    let sim = start(settings()).await.unwrap();
    let mut c = connect(&sim).await;
    bind(&mut c, "esme", "pw").await;
    let stopper = sim.clone();
    let stop = tokio::spawn(async move { stopper.stop().await });
    let u = recv(&mut c).await;
    assert_eq!(u.id(), CommandId::Unbind);
    c.send(Command::new(
        CommandStatus::EsmeRok,
        u.sequence_number(),
        Pdu::UnbindResp,
    ))
    .await
    .unwrap();
    stop.await.unwrap();
    assert_eq!(sim.active_sessions(), 0);
    assert!(TcpStream::connect(sim.local_addr()).await.is_err());
}

async fn submit_and_recv(c: &mut Conn, seq: u32, dest: &str, rd: u8) -> Command {
    c.send(Command::new(
        CommandStatus::EsmeRok,
        seq,
        submit(dest, 0, 0, b"hi", rd),
    ))
    .await
    .unwrap();
    recv(c).await
}

#[tokio::test]
async fn faults_throttle_prefix_errors_and_decimal_receipts_first() {
    let sim = start(SimSettings {
        faults: SimFaults {
            throttle_tps: 2,
            prefix_errors: "+3499=0x0B".parse().unwrap(),
            message_ids: MessageIdFormat::HexRespDecimalReceipt,
            receipt_before_response: true,
            receipt_states: faults::ReceiptMix::new(vec![(ReceiptState::Undeliverable, 1)]),
            receipt_tlvs: false,
            ..SimFaults::default()
        },
        ..settings()
    })
    .await
    .unwrap();
    let mut c = connect(&sim).await;
    bind(&mut c, "esme", "pw").await;
    let r = submit_and_recv(&mut c, 2, "34990000001", 0).await;
    assert_eq!(r.status(), CommandStatus::EsmeRinvdstadr);

    // The receipt overtakes the response; its text id is decimal, the
    // response's id is 10 hex digits for the same number.
    let receipt = submit_and_recv(&mut c, 3, "34600000001", 1).await;
    let Some(Pdu::DeliverSm(dsm)) = receipt.pdu() else {
        panic!("expected the receipt first, got {receipt:?}")
    };
    assert!(dsm.tlvs().is_empty());
    let text = std::str::from_utf8(dsm.short_message().as_ref()).unwrap();
    assert!(text.contains("stat:UNDELIV err:001"), "{text}");
    let text_id: u64 = text
        .strip_prefix("id:")
        .and_then(|t| t.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let r = recv(&mut c).await;
    let Some(Pdu::SubmitSmResp(resp)) = r.pdu() else {
        panic!("expected submit_sm_resp, got {r:?}")
    };
    assert_eq!(
        u64::from_str_radix(resp.message_id().as_str(), 16).unwrap(),
        text_id
    );

    // Throttle: two accepted per second, the third is ESME_RTHROTTLED.
    let r = submit_and_recv(&mut c, 4, "34600000002", 0).await;
    assert_eq!(r.status(), CommandStatus::EsmeRok);
    let r = submit_and_recv(&mut c, 5, "34600000003", 0).await;
    assert_eq!(r.status(), CommandStatus::EsmeRthrottled);
    assert_eq!(sim.throttled_count(), 1);
    assert_eq!(sim.submit_arrivals().len(), 4);
}

#[tokio::test]
async fn faults_disconnect_after_and_response_delay() {
    let sim = start(SimSettings {
        faults: SimFaults {
            disconnect_after: 3,
            response_delay: Duration::from_millis(100),
            message_ids: MessageIdFormat::Decimal,
            ..SimFaults::default()
        },
        ..settings()
    })
    .await
    .unwrap();
    let mut c = connect(&sim).await;
    let started = tokio::time::Instant::now();
    bind(&mut c, "esme", "pw").await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    let r = submit_and_recv(&mut c, 2, "34600000001", 0).await;
    let Some(Pdu::SubmitSmResp(resp)) = r.pdu() else {
        panic!("expected submit_sm_resp")
    };
    assert!(resp.message_id().as_str().parse::<u64>().is_ok());
    // The third PDU ends the session unanswered.
    c.send(Command::new(
        CommandStatus::EsmeRok,
        3,
        submit("34600000001", 0, 0, b"x", 0),
    ))
    .await
    .unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(1), c.next())
        .await
        .unwrap()
        .is_none());
}

#[test]
fn fault_flags_parse() {
    assert_eq!(
        "+3460=0x0B, +44=69"
            .parse::<faults::PrefixErrors>()
            .unwrap()
            .to_vec(),
        vec![("+3460".to_owned(), 0x0B), ("+44".to_owned(), 69)]
    );
    assert!("+3460".parse::<faults::PrefixErrors>().is_err());
    assert_eq!(
        "delivered=9,undeliv=1"
            .parse::<faults::ReceiptMix>()
            .unwrap()
            .to_vec(),
        vec![
            (ReceiptState::Delivered, 9),
            (ReceiptState::Undeliverable, 1)
        ]
    );
    assert!("lost=1".parse::<faults::ReceiptMix>().is_err());
    assert_eq!(
        "hex-resp-decimal-receipt"
            .parse::<MessageIdFormat>()
            .unwrap(),
        MessageIdFormat::HexRespDecimalReceipt
    );
}
