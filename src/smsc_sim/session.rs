//! One simulator connection: bind state machine, submit_sm handling and
//! delivery receipts.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{
    BindReceiverResp, BindTransceiverResp, BindTransmitterResp, CancelSm, DeliverSm, SubmitSm,
    SubmitSmResp,
};
use rusmpp::tlvs::{MessageDeliveryRequestTlvValue, TlvValue};
use rusmpp::types::{AnyOctetString, COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, MessageState, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::codec::Framed;

use super::codec::{Frame, SimCodec};
use super::{
    receipt_date, MessageIdFormat, ReceiptState, SimBehaviour, SimFaults, SimShared, TARGET,
};
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
    /// Session number (for arrival records).
    id: u64,
    /// PDUs received so far (for `disconnect_after`).
    pdus: u64,
    /// Arrival times of submit_sm accepted within the last second.
    accepted: VecDeque<tokio::time::Instant>,
    /// system_id of the bind.
    system_id: String,
    /// Listed as a receipt taker while this lives.
    _receiver: Option<ReceiverRegistration>,
    /// Set by a submit_sm the `late_submits` fault picked: its answer waits this long.
    late: Option<Duration>,
}

/// Removes a session from the simulator's receipt takers when it ends.
struct ReceiverRegistration {
    shared: Arc<SimShared>,
    id: u64,
}

impl Drop for ReceiverRegistration {
    fn drop(&mut self) {
        crate::sync::lock(&self.shared.receivers).retain(|(id, _, _)| *id != self.id);
    }
}

pub(super) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<SimShared>,
    _permit: OwnedSemaphorePermit,
) {
    let shared_for_id = Arc::clone(&shared);
    let mut framed = Framed::new(stream, SimCodec::new(MAX_COMMAND_LENGTH));
    let (tx, mut rx) = mpsc::channel::<Command>(OUTBOUND_QUEUE);
    let mut disconnect = shared.disconnect.subscribe();
    let stop = shared.stop.clone();
    let mut session = Session {
        shared,
        peer,
        state: BindState::Open,
        outbound: tx,
        next_seq: Arc::new(AtomicU64::new(1)),
        id: shared_id(&shared_for_id),
        pdus: 0,
        accepted: VecDeque::new(),
        system_id: String::new(),
        _receiver: None,
        late: None,
    };

    loop {
        tokio::select! {
            biased;
            _ = disconnect.changed() => {
                tracing::info!(target: TARGET, %peer, "dropping session (disconnect_all)");
                return;
            }
            () = stop.cancelled() => {
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
                session.pdus += 1;
                let faults = session.shared.faults();
                if faults.disconnect_after > 0 && session.pdus >= faults.disconnect_after {
                    tracing::info!(target: TARGET, %peer, pdus = session.pdus, "dropping session (disconnect_after fault)");
                    return;
                }
                let was_open = session.state == BindState::Open;
                let (mut replies, next) = session.handle(frame, &faults);
                if faults.pdu_after_bind && was_open && session.state != BindState::Open {
                    // An SMSC-initiated PDU right behind the bind response,
                    // in the same TCP write (smpp34 lost sessions to this).
                    replies.push(Command::new(
                        CommandStatus::EsmeRok,
                        next_seq(&session.next_seq),
                        Pdu::EnquireLink,
                    ));
                }
                let delay = session.late.take().map_or(faults.response_delay, |d| d.max(faults.response_delay));
                if delay.is_zero() {
                    // Queue every reply, then one flush: they leave in one write.
                    for reply in replies {
                        if let Err(e) = framed.feed(reply).await {
                            tracing::debug!(target: TARGET, %peer, error = %e, "write failed");
                            return;
                        }
                    }
                    if let Err(e) = framed.flush().await {
                        tracing::debug!(target: TARGET, %peer, error = %e, "write failed");
                        return;
                    }
                } else {
                    // Delayed answers go through the outbound queue so the
                    // session keeps reading (and pipelining) meanwhile.
                    let outbound = session.outbound.clone();
                    let stop = stop.clone();
                    session.shared.tasks.spawn(async move {
                        // Cancellable, so a stop need not wait out the delay.
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(delay) => {}
                        }
                        for reply in replies {
                            if outbound.send(reply).await.is_err() {
                                return;
                            }
                        }
                    });
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

fn shared_id(shared: &SimShared) -> u64 {
    shared.next_session.fetch_add(1, Ordering::Relaxed)
}

fn next_seq(counter: &AtomicU64) -> u32 {
    u32::try_from(counter.fetch_add(1, Ordering::Relaxed) & 0x7FFF_FFFF).unwrap_or(1)
}

impl Session {
    fn handle(&mut self, frame: Frame, faults: &SimFaults) -> (Vec<Command>, Next) {
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
            Some(Pdu::SubmitSm(submit)) => (self.submit(seq, submit, faults), Next::Continue),
            Some(Pdu::CancelSm(cancel)) => (vec![self.cancel(seq, cancel)], Next::Continue),
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
                self.system_id = system_id.to_owned();
                if kind.can_receive() {
                    crate::sync::lock(&self.shared.receivers).push((
                        self.id,
                        system_id.to_owned(),
                        self.outbound.clone(),
                    ));
                    self._receiver = Some(ReceiverRegistration {
                        shared: Arc::clone(&self.shared),
                        id: self.id,
                    });
                }
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

    /// cancel_sm: deletes a message that is not yet "delivered" (its receipt not yet sent), so
    /// the handset never shows it.
    fn cancel(&mut self, seq: u32, cancel: &CancelSm) -> Command {
        let status = if !self.state.can_submit() {
            CommandStatus::EsmeRinvbndsts
        } else if self.shared.cancel(
            cancel.message_id.as_str(),
            cancel.source_addr.as_str(),
            cancel.destination_addr.as_str(),
        ) {
            CommandStatus::EsmeRok
        } else {
            CommandStatus::EsmeRcancelfail
        };
        tracing::debug!(target: TARGET, peer = %self.peer, ?status, "cancel_sm");
        header_only(CommandId::CancelSmResp, status, seq)
    }

    fn submit(&mut self, seq: u32, submit: &SubmitSm, faults: &SimFaults) -> Vec<Command> {
        self.shared.record_arrival(self.id);
        if !self.state.can_submit() {
            return vec![header_only(
                CommandId::SubmitSmResp,
                CommandStatus::EsmeRinvbndsts,
                seq,
            )];
        }
        if faults.late_submits > 0
            && self.shared.late_count.fetch_add(1, Ordering::Relaxed) < faults.late_submits
        {
            self.late = Some(faults.late_delay);
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
            SimBehaviour::Nack { command_status } => {
                return vec![generic_nack(CommandStatus::from(command_status), seq)];
            }
            SimBehaviour::Accept => {}
        }
        if let Some(status) = self.injected_error(submit, faults) {
            return vec![header_only(
                CommandId::SubmitSmResp,
                CommandStatus::from(status),
                seq,
            )];
        }

        let data_coding = u8::from(submit.data_coding);
        // message_payload supersedes short_message; SAR TLVs replace the UDH.
        let mut short_message: &[u8] = submit.short_message().as_ref();
        let (mut sar_ref, mut sar_total, mut sar_seq) = (None, None, None);
        for tlv in submit.tlvs() {
            match tlv.value() {
                Some(TlvValue::MessagePayload(p)) if short_message.is_empty() => {
                    short_message = p.value.as_ref();
                }
                Some(TlvValue::SarMsgRefNum(r)) => sar_ref = Some(*r),
                Some(TlvValue::SarTotalSegments(t)) => sar_total = Some(*t),
                Some(TlvValue::SarSegmentSeqnum(q)) => sar_seq = Some(*q),
                _ => {}
            }
        }
        let sar = match (sar_ref, sar_total, sar_seq) {
            (Some(reference), Some(total), Some(sequence)) => Some(encoding::Concat {
                reference,
                total,
                sequence,
            }),
            _ => None,
        };
        let (concat, payload) = if sar.is_some() {
            (sar, short_message)
        } else if u8::from(submit.esm_class) & ESM_UDHI != 0 {
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

        let parts_key = match concat {
            Some(c) if c.total > 1 && c.sequence >= 1 && c.sequence <= c.total => {
                Some((source.clone(), phone.clone(), c.reference))
            }
            _ => None,
        };
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
        let mut inbox_id = None;
        if let Some((dc, bytes)) = &complete {
            let Some(text) = encoding::decode(*dc, bytes) else {
                tracing::warn!(target: TARGET, peer = %self.peer, data_coding = dc, "undecodable short_message");
                return vec![header_only(
                    CommandId::SubmitSmResp,
                    CommandStatus::EsmeRsyserr,
                    seq,
                )];
            };
            let sender = (source.clone(), u8::from(submit.source_addr_ton));
            inbox_id = Some(self.shared.deliver(phone.clone(), text, sender));
        }

        let number = NEXT_MESSAGE_ID.fetch_add(1, Ordering::Relaxed) & 0xFF_FFFF_FFFF;
        let (message_id, receipt_text_id) = match faults.message_ids {
            MessageIdFormat::Hex => (format!("{number:010X}"), format!("{number:010X}")),
            MessageIdFormat::Decimal => (number.to_string(), number.to_string()),
            MessageIdFormat::HexRespDecimalReceipt => {
                (format!("{number:010X}"), number.to_string())
            }
        };
        let Ok(id_field) = COctetString::<1, 65>::from_str(&message_id) else {
            return vec![header_only(
                CommandId::SubmitSmResp,
                CommandStatus::EsmeRsyserr,
                seq,
            )];
        };
        self.shared.submit_count.fetch_add(1, Ordering::Relaxed);
        self.shared.record_accepted(&message_id, &phone);
        let response = Command::new(
            CommandStatus::EsmeRok,
            seq,
            SubmitSmResp::new(id_field, Vec::new()),
        );
        // A transmitter's receipts go to a receiver bound with the same system_id.
        let receipt_queue = if self.state.can_receive() {
            Some(self.outbound.clone())
        } else {
            crate::sync::lock(&self.shared.receivers)
                .iter()
                .find(|(_, id, _)| *id == self.system_id)
                .map(|(_, _, tx)| tx.clone())
        };
        if let (true, Some(queue)) = (
            u8::from(submit.registered_delivery) & RD_RECEIPT_MASK != 0,
            receipt_queue,
        ) {
            let receipt = Receipt {
                message_id,
                text_id: receipt_text_id,
                state: self.shared.receipt_state(&faults.receipt_states),
                tlvs: faults.receipt_tlvs,
                handset: submit.destination_addr.clone(),
                esme: submit.source_addr.clone(),
                submitted: time::OffsetDateTime::now_utc(),
            };
            let immediate = faults.receipt_before_response && self.state.can_receive();
            if !immediate {
                // Held (cancellable) until its receipt says it was delivered.
                self.shared.hold(
                    &receipt.message_id,
                    super::Held {
                        source: source.clone(),
                        phone: phone.clone(),
                        parts: parts_key,
                        inbox_id,
                    },
                );
            }
            if immediate {
                // The receipt overtakes the submit_sm_resp on the wire.
                let mut out = Vec::with_capacity(2);
                if let Some(cmd) = receipt.command(next_seq(&self.next_seq)) {
                    out.push(cmd);
                }
                out.push(response);
                return out;
            }
            self.schedule_receipt(receipt, queue);
        }
        vec![response]
    }

    /// A fault-injected command_status for this submit, if any.
    fn injected_error(&mut self, submit: &SubmitSm, faults: &SimFaults) -> Option<u32> {
        let dest = submit.destination_addr.as_str();
        let phone = format!("+{}", dest.strip_prefix('+').unwrap_or(dest));
        if let Some(status) = faults.prefix_errors.status_for(&phone) {
            return Some(status);
        }
        let rate = faults.error_rate.get();
        if rate > 0.0 && self.shared.random() < rate {
            return Some(faults.error_status.get());
        }
        if faults.throttle_tps > 0 {
            let now = tokio::time::Instant::now();
            while self
                .accepted
                .front()
                .is_some_and(|t| *t + Duration::from_secs(1) <= now)
            {
                self.accepted.pop_front();
            }
            if self.accepted.len() >= usize::try_from(faults.throttle_tps).unwrap_or(usize::MAX) {
                self.shared.throttled_count.fetch_add(1, Ordering::Relaxed);
                return Some(0x58);
            }
            self.accepted.push_back(now);
        }
        None
    }

    /// Sends a receipt after the configured delay.
    fn schedule_receipt(&self, receipt: Receipt, outbound: mpsc::Sender<Command>) {
        let delay = self.shared.settings.receipt_delay;
        let seq = next_seq(&self.next_seq);
        let stop = self.shared.stop.clone();
        let shared = Arc::clone(&self.shared);
        self.shared.tasks.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            // A cancelled message is never delivered, so it gets no receipt.
            if !shared.release(&receipt.message_id) {
                return;
            }
            let Some(cmd) = receipt.command(seq) else {
                return;
            };
            // The session may be gone by now; a lost receipt is acceptable.
            outbound.send(cmd).await.ok();
        });
    }

    async fn unbind_and_close(&self, framed: &mut Framed<TcpStream, SimCodec>) {
        let seq = next_seq(&self.next_seq);
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

/// A delivery receipt to be sent for one submit_sm.
struct Receipt {
    /// Id as in submit_sm_resp (and the receipted_message_id TLV).
    message_id: String,
    /// Id as written in the receipt text.
    text_id: String,
    state: ReceiptState,
    tlvs: bool,
    handset: COctetString<1, 21>,
    esme: COctetString<1, 21>,
    submitted: time::OffsetDateTime,
}

impl Receipt {
    /// The deliver_sm; the `text:` field stays empty so receipts never echo
    /// the code.
    fn command(self, seq: u32) -> Option<Command> {
        let done = time::OffsetDateTime::now_utc();
        let delivered = u8::from(self.state == ReceiptState::Delivered);
        let err = if delivered == 1 { "000" } else { "001" };
        let text = format!(
            "id:{} sub:001 dlvrd:{delivered:03} submit date:{} done date:{} stat:{} err:{err} text:",
            self.text_id,
            receipt_date(self.submitted),
            receipt_date(done),
            self.state.stat(),
        );
        let body = OctetString::<0, 255>::from_str(&text).ok()?;
        let mut builder = DeliverSm::builder()
            .source_addr_ton(Ton::International)
            .source_addr_npi(Npi::Isdn)
            .source_addr(self.handset)
            .dest_addr_ton(Ton::Unknown)
            .dest_addr_npi(Npi::Unknown)
            .destination_addr(self.esme)
            .esm_class(EsmClass::from(ESM_DELIVERY_RECEIPT))
            .data_coding(DataCoding::from(encoding::DC_GSM7))
            .short_message(body);
        if self.tlvs {
            let receipted = COctetString::<1, 65>::from_str(&self.message_id).ok()?;
            let state = match self.state {
                ReceiptState::Delivered => MessageState::Delivered,
                ReceiptState::Expired => MessageState::Expired,
                ReceiptState::Deleted => MessageState::Deleted,
                ReceiptState::Undeliverable => MessageState::Undeliverable,
                ReceiptState::Rejected => MessageState::Rejected,
            };
            builder = builder
                .push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(
                    receipted,
                ))
                .push_tlv(MessageDeliveryRequestTlvValue::MessageState(state));
        }
        Some(Command::new(CommandStatus::EsmeRok, seq, builder.build()))
    }
}
