//! Late acceptances: an SMSC that answers ESME_ROK for a submit_sm the pool had given up on.
//!
//! Every message gets a [`Ledger`] that outlives the submit call. A submit_sm abandoned for
//! lack of an answer leaves a [`Late`] behind in its session's correlation map; when its
//! ESME_ROK arrives anyway, the ledger decides: if the message's submit ended in
//! [`SmppError::MayHold`](super::SmppError::MayHold) (the API answered 504, nobody can validate
//! the code) the segment is deleted with `cancel_sm` (best effort: the SMSC refuses once it
//! delivered), counted in `otp_sms_smpp_cancel_total` and shown under the message's tag; if the
//! submit succeeded, the late copy is a duplicate of an acknowledged segment and is left alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusmpp::pdus::{CancelSm, SubmitSm};
use rusmpp::types::COctetString;
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Encoder;

use super::client::Shared;
use super::inflight::Link;
use super::TARGET;
use crate::domain::PhoneNumber;
use crate::sync::lock;

/// How a message's submit ended, as far as late answers care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Still running: late answers wait.
    Open,
    /// Every segment was acknowledged (or the SMSC holds nothing).
    Settled,
    /// The submit answered "may hold": late acceptances are cancelled.
    MayHold,
}

/// A late ESME_ROK: which segment, where, and how to address its cancel_sm.
pub(super) struct LateAck {
    pub(super) shared: Arc<Shared>,
    pub(super) slot: usize,
    pub(super) message_id: String,
    pub(super) addresses: Addresses,
}

/// The addresses a cancel_sm must repeat (SMPP 3.4 §4.9.1).
#[derive(Clone, Debug)]
pub(super) struct Addresses {
    service_type: rusmpp::values::ServiceType,
    source_ton: rusmpp::values::Ton,
    source_npi: rusmpp::values::Npi,
    source: COctetString<1, 21>,
    dest_ton: rusmpp::values::Ton,
    dest_npi: rusmpp::values::Npi,
    dest: COctetString<1, 21>,
}

impl Addresses {
    pub(super) fn of(submit: &SubmitSm) -> Addresses {
        Addresses {
            service_type: submit.service_type.clone(),
            source_ton: submit.source_addr_ton,
            source_npi: submit.source_addr_npi,
            source: submit.source_addr.clone(),
            dest_ton: submit.dest_addr_ton,
            dest_npi: submit.dest_addr_npi,
            dest: submit.destination_addr.clone(),
        }
    }
}

/// What an abandoned submit_sm leaves in its session's correlation map.
pub(super) struct Late {
    pub(super) ledger: Arc<Ledger>,
    pub(super) addresses: Addresses,
}

struct State {
    verdict: Verdict,
    waiting: Vec<LateAck>,
}

/// The fate of one message across its attempts and routes.
pub(super) struct Ledger {
    /// Whether any submit_sm of the message went out.
    sent: AtomicBool,
    tag: Option<String>,
    destination: PhoneNumber,
    state: Mutex<State>,
}

impl Ledger {
    pub(super) fn new(tag: Option<&str>, destination: &PhoneNumber) -> Arc<Ledger> {
        Arc::new(Ledger {
            sent: AtomicBool::new(false),
            tag: tag.map(str::to_owned),
            destination: destination.clone(),
            state: Mutex::new(State {
                verdict: Verdict::Open,
                waiting: Vec::new(),
            }),
        })
    }

    /// A submit_sm of the message is about to be written.
    pub(super) fn mark_sent(&self) {
        self.sent.store(true, Ordering::Release);
    }

    /// Whether any submit_sm of the message was written.
    pub(super) fn was_sent(&self) -> bool {
        self.sent.load(Ordering::Acquire)
    }

    /// A guard that settles this ledger as "may hold" if the submit is dropped before it
    /// could say (a client that hung up gets no answer, and no challenge is stored).
    pub(super) fn settle_on_drop(self: Arc<Self>) -> Settle {
        Settle(Some(self))
    }

    /// The submit ended; `may_hold`: with [`SmppError::MayHold`](super::SmppError::MayHold).
    pub(super) fn settle(self: &Arc<Self>, may_hold: bool) {
        let waiting = {
            let mut s = lock(&self.state);
            s.verdict = if may_hold {
                Verdict::MayHold
            } else {
                Verdict::Settled
            };
            std::mem::take(&mut s.waiting)
        };
        for ack in waiting {
            self.handle(ack, may_hold);
        }
    }

    /// An ESME_ROK came for a submit_sm of this message that had been abandoned.
    pub(super) fn late_ack(self: &Arc<Self>, ack: LateAck) {
        let verdict = {
            let mut s = lock(&self.state);
            if s.verdict == Verdict::Open {
                s.waiting.push(ack);
                return;
            }
            s.verdict
        };
        self.handle(ack, verdict == Verdict::MayHold);
    }

    fn handle(self: &Arc<Self>, ack: LateAck, cancel: bool) {
        if !cancel {
            tracing::debug!(
                target: TARGET,
                route = %ack.shared.settings.name,
                message_id = %ack.message_id,
                "late acknowledgement of a message acknowledged in time; left alone"
            );
            return;
        }
        // Shown under the tag at once, so the admin lookup tells even a failed cancel.
        if let Some(tag) = &self.tag {
            ack.shared.tracker.file_late(
                tag,
                &self.destination,
                &ack.shared.settings.name,
                &ack.message_id,
            );
        }
        let ledger = Arc::clone(self);
        tokio::spawn(async move { ledger.cancel(ack).await });
    }

    async fn cancel(&self, ack: LateAck) {
        let result = send_cancel(&ack).await;
        let shared = &ack.shared;
        let route = shared.settings.name.as_str();
        shared
            .metrics
            .cancels
            .with_label_values(&[route, result])
            .inc();
        if result == "cancelled" {
            if let Some(tag) = &self.tag {
                shared.tracker.cancelled(tag, &ack.message_id);
            }
        }
        tracing::warn!(
            target: TARGET,
            route,
            destination = %self.destination.masked(),
            message_id = %ack.message_id,
            result,
            "the SMSC accepted a segment after its submit answered 504; cancel_sm sent"
        );
    }
}

/// See [`Ledger::settle_on_drop`].
pub(super) struct Settle(Option<Arc<Ledger>>);

impl Settle {
    /// The guarded ledger.
    pub(super) fn ledger(&self) -> &Arc<Ledger> {
        match &self.0 {
            Some(l) => l,
            // Only `settle` (which consumes the guard) takes it.
            None => unreachable!("a Settle always holds its ledger until settled"),
        }
    }

    /// Settles with the submit's outcome.
    pub(super) fn settle(mut self, may_hold: bool) {
        if let Some(l) = self.0.take() {
            l.settle(may_hold);
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if let Some(l) = self.0.take() {
            l.settle(true);
        }
    }
}

/// Sends the cancel_sm on the session that took the segment (else any bound one of the route)
/// and waits up to `response_timeout` for its answer; returns the metric's result label.
async fn send_cancel(ack: &LateAck) -> &'static str {
    let shared = &ack.shared;
    let link: Option<Link> = shared
        .slots
        .get(ack.slot)
        .and_then(super::slot::Slot::link)
        .or_else(|| {
            shared
                .slots
                .iter()
                .filter(|s| s.can_submit())
                .find_map(super::slot::Slot::link)
        });
    let Some(link) = link else {
        return "no_session";
    };
    let Some(injector) = &link.injector else {
        return "unsupported";
    };
    let Ok(message_id) = ack.message_id.parse::<COctetString<1, 65>>() else {
        return "failed";
    };
    let a = &ack.addresses;
    let pdu = CancelSm::builder()
        .service_type(a.service_type.clone())
        .message_id(message_id)
        .source_addr_ton(a.source_ton)
        .source_addr_npi(a.source_npi)
        .source_addr(a.source.clone())
        .dest_addr_ton(a.dest_ton)
        .dest_addr_npi(a.dest_npi)
        .destination_addr(a.dest.clone())
        .build();
    let seq = link.inflight.own_sequence();
    let command = Command::new(CommandStatus::EsmeRok, seq, Pdu::CancelSm(pdu));
    let mut bytes = BytesMut::new();
    if rusmpp::tokio_codec::CommandCodec::new()
        .encode(&command, &mut bytes)
        .is_err()
    {
        return "failed";
    }
    let answer = link.inflight.wait(seq);
    injector.push(bytes.to_vec());
    // rusmppc writes only when it has a frame of its own; this one carries the cancel_sm out.
    if link.client.no_wait().enquire_link().await.is_err() {
        link.inflight.forget(seq);
        return "no_session";
    }
    let wait = shared.settings.options.response_timeout;
    match tokio::time::timeout(wait, answer).await {
        Ok(Ok(resp))
            if resp.id() == CommandId::CancelSmResp && resp.status() == CommandStatus::EsmeRok =>
        {
            "cancelled"
        }
        Ok(Ok(_)) => "failed",
        Ok(Err(_)) => "no_session",
        Err(_) => {
            link.inflight.forget(seq);
            "timeout"
        }
    }
}
