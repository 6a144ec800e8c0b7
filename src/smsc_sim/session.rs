//! One simulator connection: bind state machine, submit_sm handling and
//! delivery receipts.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{
    BindReceiverResp, BindTransceiverResp, BindTransmitterResp, DeliverSm, SubmitSm, SubmitSmResp,
};
use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use rusmpp::types::{AnyOctetString, COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, MessageState, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::codec::Framed;

use super::codec::{Frame, SimCodec};
use super::{receipt_date, stopped, SimBehaviour, SimShared, TARGET};
use crate::smpp::encoding;

/// Largest PDU accepted from an ESME.
const MAX_COMMAND_LENGTH: usize = 65_536;
/// system_id the simulator reports in bind responses.
const SMSC_SYSTEM_ID: &str = "smsc_sim";
/// Grace for the ESME's unbind_resp when the simulator stops.
const UNBIND_RESP_WAIT: Duration = Duration::from_millis(200);
/// Outgoing PDUs (receipts) queued per session.
const OUTBOUND_QUEUE: usize = 256;

const ESM_UDHI: u8 = 0x40;
const ESM_DELIVERY_RECEIPT: u8 = 0x04;
/// Any registered_delivery asking for a final receipt (values 1 and 3).
const RD_RECEIPT_MASK: u8 = 0x03;

/// Message ids are unique per process, not per simulator instance, so ids
/// from several simulators in one test run never collide.
static NEXT_MESSAGE_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BindState {
    Open,
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindState {
    fn can_submit(self) -> bool {
        matches!(self, BindState::Transmitter | BindState::Transceiver)
    }
    fn can_receive(self) -> bool {
        matches!(self, BindState::Receiver | BindState::Transceiver)
    }
}

/// What the loop should do after handling a PDU.
enum Next {
    Continue,
    Close,
}

struct Session {
    shared: Arc<SimShared>,
    peer: SocketAddr,
    state: BindState,
    outbound: mpsc::Sender<Command>,
    /// Sequence numbers for PDUs the simulator originates.
    next_seq: Arc<AtomicU64>,
}

pub(super) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<SimShared>,
    _permit: OwnedSemaphorePermit,
) {
    let mut framed = Framed::new(stream, SimCodec::new(MAX_COMMAND_LENGTH));
    let (tx, mut rx) = mpsc::channel::<Command>(OUTBOUND_QUEUE);
    let mut disconnect = shared.disconnect.subscribe();
    let mut stop = shared.stop.subscribe();
    let mut session = Session {
        shared,
        peer,
        state: BindState::Open,
        outbound: tx,
        next_seq: Arc::new(AtomicU64::new(1)),
    };

    loop {
        tokio::select! {
            biased;
            _ = disconnect.changed() => {
                tracing::info!(target: TARGET, %peer, "dropping session (disconnect_all)");
                return;
            }
            () = stopped(&mut stop) => {
                session.unbind_and_close(&mut framed).await;
                return;
            }
            Some(cmd) = rx.recv() => {
                if let Err(e) = framed.send(cmd).await {
                    tracing::debug!(target: TARGET, %peer, error = %e, "write failed");
                    return;
                }
            }
            frame = framed.next() => {
                let frame = match frame {
                    None => {
                        tracing::debug!(target: TARGET, %peer, "connection closed by peer");
                        return;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(target: TARGET, %peer, error = %e, "closing session");
                        return;
                    }
                    Some(Ok(frame)) => frame,
                };
                let (replies, next) = session.handle(frame);
                for reply in replies {
                    if let Err(e) = framed.send(reply).await {
                        tracing::debug!(target: TARGET, %peer, error = %e, "write failed");
                        return;
                    }
                }
                if let Next::Close = next {
                    return;
                }
            }
        }
    }
}

fn header_only(id: CommandId, status: CommandStatus, seq: u32) -> Command {
    Command::new(
        status,
        seq,
        Pdu::Other {
            command_id: id,
            body: AnyOctetString::empty(),
        },
    )
}

fn generic_nack(status: CommandStatus, seq: u32) -> Command {
    Command::new(status, seq, Pdu::GenericNack)
}

impl Session {
    fn handle(&mut self, frame: Frame) -> (Vec<Command>, Next) {
        let command = match frame {
            Frame::Invalid {
                command_id,
                sequence_number,
            } => {
                tracing::warn!(
                    target: TARGET,
                    peer = %self.peer,
                    command_id = format_args!("0x{command_id:08X}"),
                    "undecodable PDU; generic_nack"
                );
                let status = if matches!(CommandId::from(command_id), CommandId::Other(_)) {
                    CommandStatus::EsmeRinvcmdid
                } else {
                    CommandStatus::EsmeRsyserr
                };
                return (vec![generic_nack(status, sequence_number)], Next::Continue);
            }
            Frame::Command(c) => c,
        };
        let seq = command.sequence_number();
        let id = command.id();
        match command.pdu() {
            Some(Pdu::BindTransmitter(b)) => self.bind(
                seq,
                BindState::Transmitter,
                b.system_id.as_str(),
                b.password.as_str(),
            ),
            Some(Pdu::BindReceiver(b)) => self.bind(
                seq,
                BindState::Receiver,
                b.system_id.as_str(),
                b.password.as_str(),
            ),
            Some(Pdu::BindTransceiver(b)) => self.bind(
                seq,
                BindState::Transceiver,
                b.system_id.as_str(),
                b.password.as_str(),
            ),
            Some(Pdu::EnquireLink) => (
                vec![Command::new(
                    CommandStatus::EsmeRok,
                    seq,
                    Pdu::EnquireLinkResp,
                )],
                Next::Continue,
            ),
            Some(Pdu::Unbind) => {
                self.shared.unbind_count.fetch_add(1, Ordering::Relaxed);
                tracing::info!(target: TARGET, peer = %self.peer, "ESME unbound");
                (
                    vec![Command::new(CommandStatus::EsmeRok, seq, Pdu::UnbindResp)],
                    Next::Close,
                )
            }
            Some(Pdu::SubmitSm(submit)) => (self.submit(seq, submit), Next::Continue),
            _ if id == CommandId::DeliverSmResp => {
                self.shared.receipts_acked.fetch_add(1, Ordering::Relaxed);
                (Vec::new(), Next::Continue)
            }
            _ if u32::from(id) & 0x8000_0000 != 0 => {
                // Responses (deliver_sm_resp, enquire_link_resp, ...) need no answer.
                (Vec::new(), Next::Continue)
            }
            _ => {
                tracing::debug!(target: TARGET, peer = %self.peer, ?id, "unsupported request");
                (
                    vec![generic_nack(CommandStatus::EsmeRinvcmdid, seq)],
                    Next::Continue,
                )
            }
        }
    }

    fn bind(
        &mut self,
        seq: u32,
        kind: BindState,
        system_id: &str,
        password: &str,
    ) -> (Vec<Command>, Next) {
        let settings = &self.shared.settings;
        let status = if self.state != BindState::Open {
            CommandStatus::EsmeRalybnd
        } else if system_id != settings.system_id {
            CommandStatus::EsmeRinvsysid
        } else if password != settings.password {
            CommandStatus::EsmeRinvpaswd
        } else {
            CommandStatus::EsmeRok
        };
        let smsc_id = COctetString::from_str(SMSC_SYSTEM_ID).unwrap_or_default();
        let pdu: Pdu = match kind {
            BindState::Transmitter => BindTransmitterResp::new(smsc_id, None).into(),
            BindState::Receiver => BindReceiverResp::new(smsc_id, None).into(),
            BindState::Transceiver | BindState::Open => {
                BindTransceiverResp::new(smsc_id, None).into()
            }
        };
        let reply = Command::new(status, seq, pdu);
        match status {
            CommandStatus::EsmeRok => {
                self.state = kind;
                tracing::info!(target: TARGET, peer = %self.peer, %system_id, ?kind, "ESME bound");
                (vec![reply], Next::Continue)
            }
            CommandStatus::EsmeRalybnd => (vec![reply], Next::Continue),
            _ => {
                tracing::warn!(target: TARGET, peer = %self.peer, %system_id, ?status, "bind rejected");
                (vec![reply], Next::Close)
            }
        }
    }

    fn submit(&mut self, seq: u32, submit: &SubmitSm) -> Vec<Command> {
        if !self.state.can_submit() {
            return vec![header_only(
                CommandId::SubmitSmResp,
                CommandStatus::EsmeRinvbndsts,
                seq,
            )];
        }
        match self.shared.behaviour() {
            SimBehaviour::Ignore => return Vec::new(),
            SimBehaviour::Reject { command_status } => {
                return vec![header_only(
                    CommandId::SubmitSmResp,
                    CommandStatus::from(command_status),
                    seq,
                )];
            }
            SimBehaviour::Accept => {}
        }

        let data_coding = u8::from(submit.data_coding);
        let short_message: &[u8] = submit.short_message().as_ref();
        let (concat, payload) = if u8::from(submit.esm_class) & ESM_UDHI != 0 {
            match encoding::split_udh(short_message) {
                Some(split) => split,
                None => {
                    return vec![header_only(
                        CommandId::SubmitSmResp,
                        CommandStatus::EsmeRinvesmclass,
                        seq,
                    )]
                }
            }
        } else {
            (None, short_message)
        };
        let source = submit.source_addr.as_str().to_owned();
        let dest = submit.destination_addr.as_str();
        let phone = format!("+{}", dest.strip_prefix('+').unwrap_or(dest));

        let complete = match concat {
            Some(c) if c.total > 1 && c.sequence >= 1 && c.sequence <= c.total => {
                self.shared.add_part(
                    (source.clone(), phone.clone(), c.reference),
                    data_coding,
                    c.total,
                    c.sequence,
                    payload,
                )
            }
            _ => Some((data_coding, payload.to_vec())),
        };
        if let Some((dc, bytes)) = &complete {
            let Some(text) = encoding::decode(*dc, bytes) else {
                tracing::warn!(target: TARGET, peer = %self.peer, data_coding = dc, "undecodable short_message");
                return vec![header_only(
                    CommandId::SubmitSmResp,
                    CommandStatus::EsmeRsyserr,
                    seq,
                )];
            };
            self.shared.deliver(phone.clone(), text);
        }

        let message_id = format!(
            "{:010X}",
            NEXT_MESSAGE_ID.fetch_add(1, Ordering::Relaxed) & 0xFF_FFFF_FFFF
        );
        let Ok(id_field) = COctetString::<1, 65>::from_str(&message_id) else {
            return vec![header_only(
                CommandId::SubmitSmResp,
                CommandStatus::EsmeRsyserr,
                seq,
            )];
        };
        self.shared.submit_count.fetch_add(1, Ordering::Relaxed);
        if u8::from(submit.registered_delivery) & RD_RECEIPT_MASK != 0 && self.state.can_receive() {
            self.schedule_receipt(message_id, &submit.destination_addr, &submit.source_addr);
        }
        vec![Command::new(
            CommandStatus::EsmeRok,
            seq,
            SubmitSmResp::new(id_field, Vec::new()),
        )]
    }

    /// Sends a DELIVRD receipt after the configured delay. The `text:` field
    /// stays empty so receipts never echo the code.
    fn schedule_receipt(
        &self,
        message_id: String,
        handset: &COctetString<1, 21>,
        esme: &COctetString<1, 21>,
    ) {
        let submitted = time::OffsetDateTime::now_utc();
        let delay = self.shared.settings.receipt_delay;
        let outbound = self.outbound.clone();
        let seq =
            u32::try_from(self.next_seq.fetch_add(1, Ordering::Relaxed) & 0x7FFF_FFFF).unwrap_or(1);
        let (handset, esme) = (handset.clone(), esme.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let done = time::OffsetDateTime::now_utc();
            let text = format!(
                "id:{message_id} sub:001 dlvrd:001 submit date:{} done date:{} stat:DELIVRD err:000 text:",
                receipt_date(submitted),
                receipt_date(done)
            );
            let (Ok(body), Ok(receipted)) = (
                OctetString::<0, 255>::from_str(&text),
                COctetString::<1, 65>::from_str(&message_id),
            ) else {
                return;
            };
            let deliver = DeliverSm::builder()
                .source_addr_ton(Ton::International)
                .source_addr_npi(Npi::Isdn)
                .source_addr(handset)
                .dest_addr_ton(Ton::Unknown)
                .dest_addr_npi(Npi::Unknown)
                .destination_addr(esme)
                .esm_class(EsmClass::from(ESM_DELIVERY_RECEIPT))
                .data_coding(DataCoding::from(encoding::DC_GSM7))
                .short_message(body)
                .push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(
                    receipted,
                ))
                .push_tlv(MessageDeliveryRequestTlvValue::MessageState(
                    MessageState::Delivered,
                ))
                .build();
            // The session may be gone by now; a lost receipt is acceptable.
            outbound
                .send(Command::new(CommandStatus::EsmeRok, seq, deliver))
                .await
                .ok();
        });
    }

    async fn unbind_and_close(&self, framed: &mut Framed<TcpStream, SimCodec>) {
        let seq =
            u32::try_from(self.next_seq.fetch_add(1, Ordering::Relaxed) & 0x7FFF_FFFF).unwrap_or(1);
        if framed
            .send(Command::new(CommandStatus::EsmeRok, seq, Pdu::Unbind))
            .await
            .is_err()
        {
            return;
        }
        // Wait briefly for unbind_resp so the ESME sees an orderly close.
        let wait = async {
            while let Some(Ok(frame)) = framed.next().await {
                if let Frame::Command(c) = frame {
                    if c.id() == CommandId::UnbindResp {
                        break;
                    }
                }
            }
        };
        tokio::time::timeout(UNBIND_RESP_WAIT, wait).await.ok();
    }
}
