//! The project's own SMSC simulator: a small SMPP 3.4 server for local runs
//! and tests.
//!
//! It accepts binds, answers enquire_link/unbind, acknowledges submit_sm,
//! reassembles concatenated messages into one [`ReceivedSms`] per text,
//! keeps them in a bounded inbox and sends delivery receipts. It plays the
//! handset, so it is the only component that logs message texts (target
//! `otp_gateway::smsc_sim::handset`, only when `print_messages` is set).
//!
//! [`SimFaults`] injects what production SMSCs do to an ESME: per-bind TPS
//! throttling, random or per-prefix errors, dropped connections, slow
//! responses, late or failed receipts, hex or decimal message ids and
//! receipts that overtake their submit_sm_resp, and submit_sm answered after the ESME gave up
//! (`late_submits`). A `cancel_sm` deletes a message whose receipt is not yet sent.

mod codec;
pub mod faults;
mod session;

pub use faults::{MessageIdFormat, ReceiptState, SimFaults};

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::sync::lock;

/// tracing target for the simulator's own events (no message texts).
pub const TARGET: &str = "otp_gateway::smsc_sim";
/// tracing target of the "handset" lines that show delivered texts.
pub const HANDSET_TARGET: &str = "otp_gateway::smsc_sim::handset";

/// Maximum concurrent SMPP connections.
const MAX_CONNECTIONS: u32 = 64;
/// Incomplete concatenated messages kept at most; the oldest is dropped.
const MAX_PENDING_PARTS: usize = 1024;
/// submit_sm arrival times kept for throttle-adherence checks.
const MAX_ARRIVALS: usize = 200_000;
/// How long [`SmscHandle::stop`] waits for sessions to finish.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// Simulator configuration.
#[derive(Clone, Debug)]
pub struct SimSettings {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// system_id an ESME must bind with.
    pub system_id: String,
    /// password an ESME must bind with.
    pub password: String,
    /// Delay before a requested delivery receipt is sent.
    pub receipt_delay: Duration,
    /// Log every received SMS (full number and text) like a handset would show it.
    pub print_messages: bool,
    /// Maximum messages kept in the inbox; older ones are dropped.
    pub inbox_capacity: usize,
    /// Injected faults (none by default); changeable at run time with
    /// [`SmscHandle::set_faults`].
    pub faults: SimFaults,
}

/// A message as the simulated handset received it.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedSms {
    /// `+` followed by the destination digits.
    pub phone_number: String,
    /// Decoded (and, if concatenated, reassembled) text.
    pub text: String,
    /// RFC 3339 UTC timestamp of the (last) submit_sm.
    pub received_at: String,
    /// The submit_sm's source_addr and source_addr_ton, as the handset would show the sender
    /// (for tests; not in the inbox's JSON).
    #[serde(skip)]
    pub source: (String, u8),
    /// Which inbox entry a cancel_sm removes.
    #[serde(skip)]
    inbox_id: u64,
}

/// A message the simulator accepted (ESME_ROK), whatever became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedSms {
    /// The message id of the submit_sm_resp.
    pub message_id: String,
    /// `+` followed by the destination digits.
    pub phone_number: String,
}

/// An accepted message not yet "delivered" (its receipt not yet sent): a cancel_sm may still
/// delete it.
struct Held {
    source: String,
    phone: String,
    /// The concatenated message it is a part of, while incomplete.
    parts: Option<PartsKey>,
    /// The inbox entry showing the (complete) message.
    inbox_id: Option<u64>,
}

/// Held messages kept at most; past it new ones are not cancellable.
const MAX_HELD: usize = 100_000;

/// How the simulator answers submit_sm.
#[derive(Clone, Debug)]
pub enum SimBehaviour {
    /// Acknowledge with ESME_ROK and deliver.
    Accept,
    /// Answer with the given non-zero command_status.
    Reject {
        /// command_status to return, e.g. 0x0B.
        command_status: u32,
    },
    /// Never answer (lets tests provoke client timeouts).
    Ignore,
    /// Answer with a generic_nack carrying this command_status.
    Nack {
        /// command_status of the generic_nack.
        command_status: u32,
    },
}

/// Parts of a concatenated message seen so far.
struct Pending {
    data_coding: u8,
    total: u8,
    parts: HashMap<u8, Vec<u8>>,
    first_seen: tokio::time::Instant,
}

/// Key of a concatenated message: source, destination, reference.
type PartsKey = (String, String, u16);

struct SimShared {
    settings: SimSettings,
    local_addr: SocketAddr,
    inbox: Mutex<VecDeque<ReceivedSms>>,
    pending: Mutex<HashMap<PartsKey, Pending>>,
    behaviour: Mutex<SimBehaviour>,
    submit_count: AtomicU64,
    unbind_count: AtomicU64,
    receipts_acked: AtomicU64,
    throttled_count: AtomicU64,
    /// submit_sm seen by the `late_submits` fault.
    late_count: AtomicU64,
    next_inbox_id: AtomicU64,
    held: Mutex<HashMap<String, Held>>,
    /// Every accepted message (capped at [`MAX_ARRIVALS`]), and the cancelled ones.
    accepted: Mutex<Vec<AcceptedSms>>,
    cancelled: Mutex<Vec<AcceptedSms>>,
    faults: Mutex<SimFaults>,
    /// xorshift state for error rates and state mixes (not security relevant).
    rng: Mutex<u64>,
    next_session: AtomicU64,
    /// Sessions that take deliver_sm (receiver or transceiver binds):
    /// (session, system_id, outbound queue). A transmitter's receipts go to
    /// one of these with the same system_id.
    receivers: Mutex<Vec<(u64, String, tokio::sync::mpsc::Sender<rusmpp::Command>)>>,
    /// (session, arrival) of every submit_sm, capped at [`MAX_ARRIVALS`].
    arrivals: Mutex<Vec<(u64, tokio::time::Instant)>>,
    /// Bumped to make every live session drop its socket.
    disconnect: watch::Sender<u64>,
    /// Cancelled to stop: by [`SmscHandle::stop`], or by the parent token the gateway's
    /// shutdown owns.
    stop: CancellationToken,
    /// Every task the simulator spawns, so stopping can wait until they are all gone.
    tasks: TaskTracker,
    connections: Arc<Semaphore>,
}

/// Handle to a running simulator; cheap to clone.
#[derive(Clone)]
pub struct SmscHandle {
    shared: Arc<SimShared>,
}

impl std::fmt::Debug for SmscHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmscHandle")
            .field("local_addr", &self.shared.local_addr)
            .finish_non_exhaustive()
    }
}

/// Binds the listener (port 0 allowed) and spawns the accept loop.
pub async fn start(settings: SimSettings) -> std::io::Result<SmscHandle> {
    start_with_token(settings, CancellationToken::new()).await
}

/// Like [`start`], but the simulator also stops when `stop` is cancelled (the gateway passes
/// a child of its shutdown token).
pub async fn start_with_token(
    settings: SimSettings,
    stop: CancellationToken,
) -> std::io::Result<SmscHandle> {
    let listener = TcpListener::bind(settings.listen).await?;
    let local_addr = listener.local_addr()?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9E37_79B9, |d| d.as_nanos() as u64)
        | 1;
    let faults = settings.faults.clone();
    let shared = Arc::new(SimShared {
        settings,
        throttled_count: AtomicU64::new(0),
        late_count: AtomicU64::new(0),
        next_inbox_id: AtomicU64::new(1),
        held: Mutex::new(HashMap::new()),
        accepted: Mutex::new(Vec::new()),
        cancelled: Mutex::new(Vec::new()),
        faults: Mutex::new(faults),
        rng: Mutex::new(seed),
        next_session: AtomicU64::new(1),
        arrivals: Mutex::new(Vec::new()),
        receivers: Mutex::new(Vec::new()),
        local_addr,
        inbox: Mutex::new(VecDeque::new()),
        pending: Mutex::new(HashMap::new()),
        behaviour: Mutex::new(SimBehaviour::Accept),
        submit_count: AtomicU64::new(0),
        unbind_count: AtomicU64::new(0),
        receipts_acked: AtomicU64::new(0),
        disconnect: watch::Sender::new(0),
        stop,
        tasks: TaskTracker::new(),
        connections: Arc::new(Semaphore::new(MAX_CONNECTIONS as usize)),
    });
    shared
        .tasks
        .spawn(accept_loop(listener, Arc::clone(&shared)));
    tracing::info!(target: TARGET, %local_addr, "SMSC simulator listening");
    Ok(SmscHandle { shared })
}

async fn accept_loop(listener: TcpListener, shared: Arc<SimShared>) {
    let stop = shared.stop.clone();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(ok) => ok,
            Err(e) => {
                // Typically EMFILE; back off instead of spinning.
                tracing::warn!(target: TARGET, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&shared.connections).try_acquire_owned() else {
            tracing::warn!(target: TARGET, %peer, "connection limit reached; closing");
            continue;
        };
        stream.set_nodelay(true).ok();
        tracing::debug!(target: TARGET, %peer, "connection accepted");
        shared
            .tasks
            .spawn(session::run(stream, peer, Arc::clone(&shared), permit));
    }
    tracing::info!(target: TARGET, "SMSC simulator stopped accepting");
}

impl SmscHandle {
    /// Address the simulator listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The settings it was started with (a test restarts a stopped
    /// simulator on the same address with them).
    pub fn settings(&self) -> SimSettings {
        self.shared.settings.clone()
    }

    /// Messages received for `phone_number` (`+` and digits), newest first.
    pub fn messages_for(&self, phone_number: &str) -> Vec<ReceivedSms> {
        lock(&self.shared.inbox)
            .iter()
            .filter(|m| m.phone_number == phone_number)
            .cloned()
            .collect()
    }

    /// All messages in the inbox, newest first.
    pub fn messages(&self) -> Vec<ReceivedSms> {
        lock(&self.shared.inbox).iter().cloned().collect()
    }

    /// Number of submit_sm PDUs acknowledged with ESME_ROK.
    pub fn submit_count(&self) -> u64 {
        self.shared.submit_count.load(Ordering::Relaxed)
    }

    /// Number of sessions the ESME closed with a proper unbind.
    pub fn unbind_count(&self) -> u64 {
        self.shared.unbind_count.load(Ordering::Relaxed)
    }

    /// Number of deliver_sm_resp PDUs received from ESMEs.
    pub fn receipts_acked(&self) -> u64 {
        self.shared.receipts_acked.load(Ordering::Relaxed)
    }

    /// Number of live SMPP connections.
    pub fn active_sessions(&self) -> usize {
        (MAX_CONNECTIONS as usize).saturating_sub(self.shared.connections.available_permits())
    }

    /// Number of submit_sm answered with ESME_RTHROTTLED by the TPS fault.
    pub fn throttled_count(&self) -> u64 {
        self.shared.throttled_count.load(Ordering::Relaxed)
    }

    /// (session number, arrival instant) of every submit_sm so far, in
    /// arrival order (capped).
    pub fn submit_arrivals(&self) -> Vec<(u64, tokio::time::Instant)> {
        lock(&self.shared.arrivals).clone()
    }

    /// Every message accepted with ESME_ROK, in order (capped), cancelled ones included.
    pub fn accepted(&self) -> Vec<AcceptedSms> {
        lock(&self.shared.accepted).clone()
    }

    /// Messages deleted by a cancel_sm before they were delivered, in order.
    pub fn cancelled(&self) -> Vec<AcceptedSms> {
        lock(&self.shared.cancelled).clone()
    }

    /// Replaces the injected faults for subsequent PDUs.
    pub fn set_faults(&self, faults: SimFaults) {
        *lock(&self.shared.faults) = faults;
    }

    /// Changes how subsequent submit_sm PDUs are answered.
    pub fn set_behaviour(&self, b: SimBehaviour) {
        *lock(&self.shared.behaviour) = b;
    }

    /// Drops every live session without unbind (simulates a network cut).
    pub fn disconnect_all(&self) {
        self.shared
            .disconnect
            .send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Stops accepting, unbinds and closes every session, and waits (briefly)
    /// for every simulator task to finish. Safe to call more than once, and after the
    /// parent token was cancelled.
    pub async fn stop(&self) {
        self.shared.stop.cancel();
        // The accept loop ends on the cancellation, so nothing is spawned after this.
        self.shared.tasks.close();
        if tokio::time::timeout(STOP_WAIT, self.shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(target: TARGET, tasks = self.shared.tasks.len(), "simulator tasks still running after the stop wait");
        }
    }
}

impl SimShared {
    fn behaviour(&self) -> SimBehaviour {
        lock(&self.behaviour).clone()
    }

    fn faults(&self) -> SimFaults {
        lock(&self.faults).clone()
    }

    /// Uniform in [0, 1).
    fn random(&self) -> f64 {
        let mut x = lock(&self.rng);
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        (*x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn record_arrival(&self, session: u64) {
        let mut a = lock(&self.arrivals);
        if a.len() < MAX_ARRIVALS {
            a.push((session, tokio::time::Instant::now()));
        }
    }

    /// Picks a receipt state from the configured mix.
    fn receipt_state(&self, mix: &faults::ReceiptMix) -> ReceiptState {
        let mix = mix.weights();
        let total: u64 = mix.iter().map(|(_, w)| u64::from(*w)).sum();
        if total == 0 {
            return ReceiptState::Delivered;
        }
        let mut pick = (self.random() * total as f64) as u64;
        for (state, weight) in mix {
            if pick < u64::from(*weight) {
                return *state;
            }
            pick -= u64::from(*weight);
        }
        ReceiptState::Delivered
    }

    /// Stores a complete message and plays it on the "handset"; returns its inbox id.
    fn deliver(&self, phone_number: String, text: String, source: (String, u8)) -> u64 {
        if self.settings.print_messages {
            tracing::info!(target: HANDSET_TARGET, "SMS to {phone_number}: {}", crate::telemetry::escape_control(&text));
        }
        let inbox_id = self.next_inbox_id.fetch_add(1, Ordering::Relaxed);
        let sms = ReceivedSms {
            phone_number,
            text,
            received_at: now_rfc3339(),
            source,
            inbox_id,
        };
        let mut inbox = lock(&self.inbox);
        inbox.push_front(sms);
        inbox.truncate(self.settings.inbox_capacity);
        inbox_id
    }

    fn record_accepted(&self, message_id: &str, phone: &str) {
        let mut a = lock(&self.accepted);
        if a.len() < MAX_ARRIVALS {
            a.push(AcceptedSms {
                message_id: message_id.to_owned(),
                phone_number: phone.to_owned(),
            });
        }
    }

    /// Keeps an accepted message cancellable until its receipt is sent.
    fn hold(&self, message_id: &str, held: Held) {
        let mut h = lock(&self.held);
        if let (Some(parts), Some(inbox_id)) = (&held.parts, held.inbox_id) {
            // This part completed the message: its earlier parts now show as this entry.
            for other in h.values_mut() {
                if other.parts.as_ref() == Some(parts) {
                    other.inbox_id = Some(inbox_id);
                }
            }
        }
        if h.len() < MAX_HELD {
            h.insert(message_id.to_owned(), held);
        }
    }

    /// The receipt of `message_id` is due: false when it was cancelled (no receipt then).
    fn release(&self, message_id: &str) -> bool {
        lock(&self.held).remove(message_id).is_some()
            || !lock(&self.cancelled)
                .iter()
                .any(|c| c.message_id == message_id)
    }

    /// cancel_sm of a held message: true when it was deleted. Empty source or destination
    /// addresses match any (SMPP 3.4 §4.9.1: NULL when not known).
    fn cancel(&self, message_id: &str, source: &str, destination: &str) -> bool {
        let mut held = lock(&self.held);
        let Some(h) = held.get(message_id) else {
            return false;
        };
        let dest_digits = h.phone.trim_start_matches('+');
        if (!source.is_empty() && source != h.source)
            || (!destination.is_empty() && destination.trim_start_matches('+') != dest_digits)
        {
            return false;
        }
        let Some(h) = held.remove(message_id) else {
            return false;
        };
        drop(held);
        match (h.inbox_id, &h.parts) {
            (Some(id), _) => lock(&self.inbox).retain(|m| m.inbox_id != id),
            (None, Some(parts)) => {
                lock(&self.pending).remove(parts);
            }
            (None, None) => {}
        }
        lock(&self.cancelled).push(AcceptedSms {
            message_id: message_id.to_owned(),
            phone_number: h.phone,
        });
        true
    }

    /// Records one part; returns (data_coding, payload) once all are present.
    fn add_part(
        &self,
        key: PartsKey,
        data_coding: u8,
        total: u8,
        sequence: u8,
        payload: &[u8],
    ) -> Option<(u8, Vec<u8>)> {
        let mut pending = lock(&self.pending);
        if !pending.contains_key(&key) && pending.len() >= MAX_PENDING_PARTS {
            let oldest = pending
                .iter()
                .min_by_key(|(_, p)| p.first_seen)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                pending.remove(&oldest);
            }
        }
        let entry = pending.entry(key.clone()).or_insert_with(|| Pending {
            data_coding,
            total,
            parts: HashMap::new(),
            first_seen: tokio::time::Instant::now(),
        });
        entry.parts.insert(sequence, payload.to_vec());
        if entry.parts.len() < usize::from(entry.total) {
            return None;
        }
        let done = pending.remove(&key)?;
        let mut bytes = Vec::new();
        for seq in 1..=done.total {
            bytes.extend_from_slice(done.parts.get(&seq)?);
        }
        Some((done.data_coding, bytes))
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `YYMMDDhhmm` as used in SMPP delivery receipts.
fn receipt_date(t: time::OffsetDateTime) -> String {
    format!(
        "{:02}{:02}{:02}{:02}{:02}",
        t.year().rem_euclid(100),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

#[cfg(test)]
mod tests;
