//! The session pool: which session takes a submit, and what happens when
//! the SMSC pushes back.
//!
//! A submit takes the first session (in configuration order) that is bound,
//! not paused after throttling, has a free window slot and whose segment
//! limiter can send every remaining segment before the deadline. Segments
//! go out one after another on that session. On ESME_RTHROTTLED /
//! ESME_RMSGQFUL the session is paused (growing, jittered pause) and the
//! remaining segments are retried; on ESME_RSYSERR, a timeout or a broken
//! session they are retried on another session. Segments already
//! acknowledged are never sent again, so the handset reassembles one message
//! (same UDH reference) whatever session carried each part.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusmpp::pdus::SubmitSm;
use rusmpp::{Command, CommandId, Pdu};
use tokio::sync::SemaphorePermit;
use tokio::time::Instant;

use super::cancel::{Addresses, Late, LateAck, Ledger};
use super::client::Shared;
use super::error::{status, SmppError, Uncertainty};
use super::inflight::Link;
use super::settings::{SessionOptions, StatusAction};
use super::slot::Slot;
use super::TARGET;

/// Longest wait for a bind that is in progress when a submit finds no
/// session; bounded so callers get `NotBound` quickly during an outage.
const BIND_GRACE: Duration = Duration::from_secs(1);
/// Lateness after which a planned segment is planned again (well inside
/// the limiter's margin, see `limiter::PERIOD`).
const LATE_LIMIT: Duration = Duration::from_millis(10);

/// Shortest time left in which an attempt is still started, whatever the SMSC's latency.
const MIN_ATTEMPT: Duration = Duration::from_millis(20);

/// A decaying maximum of the route's submit_sm_resp latency (answers only: a timeout says
/// nothing about how long the answer takes): it jumps to a slower answer at once and comes
/// down by an eighth of the gap per faster answer. An attempt is started only with twice this
/// left: one started later would most likely be answered after the caller was told "unknown"
/// (504), which is how a late acceptance happens. The need is at least [`MIN_ATTEMPT`] and at
/// most `response_timeout` and a quarter of `submit_timeout`, so a fresh message (or a
/// failover route's share of one) always gets its first attempt.
#[derive(Default)]
pub(super) struct Latency {
    micros: AtomicU64,
}

impl Latency {
    fn observe(&self, took: Duration) {
        let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        // Lost updates between concurrent observers only blur the estimate.
        let old = self.micros.load(Ordering::Relaxed);
        let new = if took >= old {
            took
        } else {
            old - (old - took) / 8
        };
        self.micros.store(new, Ordering::Relaxed);
    }

    /// Time an attempt needs left to be started.
    pub(super) fn required(&self, options: &SessionOptions) -> Duration {
        let estimate = Duration::from_micros(self.micros.load(Ordering::Relaxed));
        let cap = options
            .response_timeout
            .min(options.submit_timeout / 4)
            .max(MIN_ATTEMPT);
        (estimate * 2).clamp(MIN_ATTEMPT, cap)
    }
}

/// The per-submit metric series of this route, resolved once: looking
/// label values up on every submit_sm costs hashing and allocation on the
/// hottest path.
pub(super) struct HotMetrics {
    pub(super) submit_latency: prometheus::Histogram,
    window_in_use: prometheus::IntGauge,
    segments_submitted: prometheus::IntCounter,
    submit_ok: prometheus::IntCounter,
}

impl HotMetrics {
    pub(super) fn new(m: &crate::metrics::SmppMetrics, route: &str) -> HotMetrics {
        HotMetrics {
            submit_latency: m.submit_latency.with_label_values(&[route]),
            window_in_use: m.window_in_use.with_label_values(&[route]),
            segments_submitted: m.segments_submitted.with_label_values(&[route]),
            submit_ok: m.submit_results.with_label_values(&[route, "0x00000000"]),
        }
    }
}

/// A taken window slot; releasing it wakes waiting submitters.
struct WindowPermit<'a> {
    _permit: SemaphorePermit<'a>,
    shared: &'a Shared,
}

impl<'a> WindowPermit<'a> {
    fn new(permit: SemaphorePermit<'a>, shared: &'a Shared) -> Self {
        shared.hot.window_in_use.inc();
        WindowPermit {
            _permit: permit,
            shared,
        }
    }
}

impl Drop for WindowPermit<'_> {
    fn drop(&mut self) {
        self.shared.hot.window_in_use.dec();
        self.shared.changed.notify_waiters();
    }
}

/// What [`choose`] found.
enum Choice<'a> {
    /// Send on this session at the planned times (empty: unlimited rate).
    Slot {
        slot: &'a Slot,
        link: Link,
        permit: WindowPermit<'a>,
        plan: Vec<Instant>,
    },
    /// Sessions are bound but none can take the message yet; look again at
    /// this instant or when something changes.
    Wait(Option<Instant>),
    /// No session is bound.
    NoSession,
}

/// How one attempt on one session ended badly.
enum Failure {
    /// Throttled: pause that session, then retry.
    Throttled(u32),
    /// Nothing was accepted; retry on another session.
    Elsewhere(SmppError),
    /// A submit_sm went out and no answer came (no response, or the session broke): the SMSC
    /// may hold it. Retry on another session; the outcome is unknown from here on.
    Unanswered(Uncertainty, SmppError),
    /// Give up with this error.
    Final(SmppError),
    /// Woke up too late for the rate plan; nothing was sent for this
    /// segment, choose again.
    Replan,
    /// Too little time is left for an answer to come: nothing was sent for this segment, and
    /// no further attempt starts.
    OutOfTime,
}

/// Sends `submits` on the pool; returns the message id of every segment.
pub(super) async fn submit(
    shared: &Shared,
    submits: &[SubmitSm],
    deadline: Instant,
    ledger: &Arc<Ledger>,
) -> Result<Vec<String>, SmppError> {
    let mut ids: Vec<String> = Vec::with_capacity(submits.len());
    let mut avoid: Option<usize> = None;
    let mut last_err: Option<SmppError> = None;
    let mut unbound_since: Option<Instant> = None;
    // Set once an SMSC may hold (part of) the message: a segment was acknowledged, or a
    // submit_sm went out and its answer never came. The call can then no longer honestly
    // report "not accepted", so any failure becomes SmppError::MayHold (504).
    let mut uncertain: Option<Uncertainty> = None;
    let fail = |uncertain: Option<Uncertainty>, ids: &[String], e: SmppError| match uncertain {
        None => e,
        Some(why) => SmppError::MayHold {
            // Acknowledged segments say more than the last failure does.
            why: if ids.is_empty() {
                why
            } else {
                Uncertainty::PartlyAcknowledged {
                    acknowledged: ids.len(),
                    segments: submits.len(),
                }
            },
            cause: Some(Box::new(e)),
        },
    };
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(fail(uncertain, &ids, last_err.unwrap_or(SmppError::Busy)));
        }
        let rest = &submits[ids.len()..];
        let (slot, link, permit, plan) = {
            // Register for wake-ups before looking, so a release between the
            // look and the wait is not missed. The registration ends with
            // this block: a submit that is sending must not be on the
            // waiter list every window release walks.
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match choose(shared, rest.len(), avoid, now, deadline) {
                Choice::Slot {
                    slot,
                    link,
                    permit,
                    plan,
                } => (slot, link, permit, plan),
                Choice::Wait(until) => {
                    unbound_since = None;
                    let until = until.map_or(deadline, |u| u.min(deadline));
                    tokio::select! {
                        () = &mut changed => {}
                        () = tokio::time::sleep_until(until) => {}
                    }
                    continue;
                }
                Choice::NoSession => {
                    let connecting = shared
                        .slots
                        .iter()
                        .any(|s| !s.is_receiver() && s.is_connecting());
                    let since = *unbound_since.get_or_insert(now);
                    if !connecting || now >= since + BIND_GRACE {
                        return Err(fail(
                            uncertain,
                            &ids,
                            last_err.unwrap_or(SmppError::NotBound),
                        ));
                    }
                    let until = deadline.min(since + BIND_GRACE);
                    tokio::select! {
                        () = &mut changed => {}
                        () = tokio::time::sleep_until(until) => {}
                    }
                    continue;
                }
            }
        };
        unbound_since = None;
        let acknowledged = ids.len();
        let outcome = send_on(shared, &link, rest, &plan, deadline, ledger, &mut ids).await;
        drop(permit);
        match &outcome {
            Err(Failure::Unanswered(why, _)) => uncertain = Some(*why),
            _ if ids.len() > acknowledged && uncertain.is_none() => {
                uncertain = Some(Uncertainty::PartlyAcknowledged {
                    acknowledged: ids.len(),
                    segments: submits.len(),
                });
            }
            _ => {}
        }
        match outcome {
            Ok(()) => {
                slot.recovered();
                return Ok(ids);
            }
            Err(Failure::Throttled(command_status)) => {
                slot.slow_down();
                shared
                    .metrics
                    .throttled
                    .with_label_values(&[shared.settings.name.as_str()])
                    .inc();
                tracing::debug!(
                    target: TARGET,
                    session = slot.index(),
                    command_status = format_args!("0x{command_status:08X}"),
                    "throttled; pausing session"
                );
                last_err = Some(SmppError::Throttled { command_status });
            }
            Err(Failure::Elsewhere(e) | Failure::Unanswered(_, e)) => {
                tracing::debug!(
                    target: TARGET,
                    session = slot.index(),
                    error = %e,
                    "submit failed; retrying on another session"
                );
                avoid = Some(slot.index());
                last_err = Some(e);
            }
            Err(Failure::Final(e)) => return Err(fail(uncertain, &ids, e)),
            Err(Failure::OutOfTime) => {
                tracing::debug!(target: TARGET, session = slot.index(), "too little time left for another attempt");
                return Err(fail(uncertain, &ids, last_err.unwrap_or(SmppError::Busy)));
            }
            Err(Failure::Replan) => {
                tracing::debug!(target: TARGET, session = slot.index(), "woke up late; planning again");
            }
        }
    }
}

/// Picks the session for the next attempt (see the module docs).
fn choose<'a>(
    shared: &'a Shared,
    segments: usize,
    avoid: Option<usize>,
    now: Instant,
    deadline: Instant,
) -> Choice<'a> {
    let others_bound = shared
        .slots
        .iter()
        .any(|s| Some(s.index()) != avoid && s.can_submit());
    let mut any_bound = false;
    let mut wake: Option<Instant> = None;
    let mut later: Option<(&Slot, Instant)> = None;
    for slot in &shared.slots {
        if others_bound && Some(slot.index()) == avoid {
            continue;
        }
        if !slot.can_submit() {
            continue;
        }
        any_bound = true;
        if let Some(until) = slot.paused_until(now) {
            wake = Some(wake.map_or(until, |w| w.min(until)));
            continue;
        }
        if !slot.has_free_window() {
            continue;
        }
        let ready = slot
            .plan(segments, now)
            .and_then(|p| p.last().copied())
            .unwrap_or(now);
        if ready <= now {
            if let Some(choice) = take(shared, slot, segments, now) {
                return choice;
            }
        } else if ready <= deadline && later.is_none_or(|(_, r)| ready < r) {
            later = Some((slot, ready));
        }
    }
    if let Some((slot, _)) = later {
        if let Some(choice) = take(shared, slot, segments, now) {
            return choice;
        }
    }
    if any_bound {
        Choice::Wait(wake)
    } else {
        Choice::NoSession
    }
}

/// Takes a window slot and reserves the rate budget on `slot`.
fn take<'a>(
    shared: &'a Shared,
    slot: &'a Slot,
    segments: usize,
    now: Instant,
) -> Option<Choice<'a>> {
    let r = slot.reserve(segments, now)?;
    Some(Choice::Slot {
        slot,
        link: r.link,
        permit: WindowPermit::new(r.permit, shared),
        plan: r.plan,
    })
}

/// Sends `segments` one after another on one session, appending the
/// message ids to `ids`.
async fn send_on(
    shared: &Shared,
    link: &Link,
    segments: &[SubmitSm],
    plan: &[Instant],
    deadline: Instant,
    ledger: &Arc<Ledger>,
    ids: &mut Vec<String>,
) -> Result<(), Failure> {
    let options = &shared.settings.options;
    for (k, segment) in segments.iter().enumerate() {
        if let Some(at) = plan.get(k) {
            tokio::time::sleep_until(*at).await;
            // A segment sent later than planned would sit closer to the
            // segments planned after it than the limiter allowed; past the
            // limiter's margin, plan again instead of overrunning the grant.
            if Instant::now() > *at + LATE_LIMIT {
                return Err(Failure::Replan);
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Failure::Elsewhere(SmppError::Busy));
        }
        let left = deadline - now;
        if left < shared.latency.required(options) {
            return Err(Failure::OutOfTime);
        }
        // Our own timer: rusmppc applies its connection-wide timeout to every request and
        // ignores a per-request one.
        let wait = options.response_timeout.min(left);
        shared.hot.segments_submitted.inc();
        ledger.mark_sent();
        // The attempt runs in its own task, so that a caller dropped mid-wait (the outer
        // guard, a client that hung up) still leaves its submit_sm recognisable: the task
        // waits out the budget and marks it abandoned, so a late ESME_ROK is cancelled.
        let (reply, answered) = tokio::sync::oneshot::channel();
        tokio::spawn(attempt(
            link.clone(),
            segment.clone(),
            wait,
            Late {
                ledger: Arc::clone(ledger),
                addresses: Addresses::of(segment),
            },
            reply,
        ));
        let (answer, took) = match answered.await {
            Ok(done) => done,
            // Only a panic in the task: nothing is known of the submit_sm.
            Err(_) => (
                Answer::Lost(rusmppc::error::Error::ConnectionClosed),
                Duration::ZERO,
            ),
        };
        if matches!(answer, Answer::Command(_)) {
            shared.latency.observe(took);
        }
        let failure = match answer {
            Answer::Command(command) => match accepted(&command) {
                Some(id) => {
                    shared.hot.submit_ok.inc();
                    ids.push(id);
                    continue;
                }
                None => classify_status(u32::from(command.status()), options),
            },
            Answer::Timeout => {
                let why = Uncertainty::NoResponse {
                    after: options.submit_timeout,
                };
                Failure::Unanswered(why, SmppError::MayHold { why, cause: None })
            }
            // The submit_sm may have reached the SMSC before the session broke.
            Answer::Lost(e) => {
                Failure::Unanswered(Uncertainty::SessionLost, SmppError::Connection(e))
            }
        };
        let m = &shared.metrics;
        let label = match &failure {
            Failure::Unanswered(Uncertainty::NoResponse { .. }, _) => "timeout".to_owned(),
            Failure::Unanswered(..) => "connection".to_owned(),
            Failure::Throttled(s) => m.status_label(*s),
            // Never built from an answer; nothing was answered.
            Failure::Replan | Failure::OutOfTime => "other".to_owned(),
            Failure::Elsewhere(e) | Failure::Final(e) => match e.command_status() {
                Some(s) => m.status_label(s),
                None => "other".to_owned(),
            },
        };
        m.submit_results
            .with_label_values(&[shared.settings.name.as_str(), &label])
            .inc();
        return Err(failure);
    }
    Ok(())
}

/// One submit_sm and its wait (see `send_on`); sends the answer and how long it took to
/// `reply`. An ESME_ROK whose submitter is gone by then is a late acceptance.
async fn attempt(
    link: Link,
    segment: SubmitSm,
    wait: Duration,
    late: Late,
    reply: tokio::sync::oneshot::Sender<(Answer, Duration)>,
) {
    let sent = Instant::now();
    let mut late = Some(late);
    let answer = match link.client.no_wait().submit_sm(segment).await {
        Ok(seq) => {
            let pending = link.inflight.wait(seq);
            match tokio::time::timeout(wait, pending).await {
                Ok(Ok(command)) => Answer::Command(Box::new(command)),
                Ok(Err(_)) => Answer::Lost(rusmppc::error::Error::ConnectionClosed),
                Err(_) => match late.take().and_then(|l| link.inflight.abandon(seq, l)) {
                    Some(command) => Answer::Command(Box::new(command)),
                    None => Answer::Timeout,
                },
            }
        }
        Err(e) => Answer::Lost(e),
    };
    let Err((answer, _)) = reply.send((answer, sent.elapsed())) else {
        return;
    };
    // The submit already answered (its outer guard fired, or its caller hung up).
    let (Answer::Command(command), Some(late), Some(shared)) = (answer, late, link.route.upgrade())
    else {
        return;
    };
    if let Some(message_id) = accepted(&command) {
        late.ledger.late_ack(LateAck {
            shared,
            slot: link.slot,
            message_id,
            addresses: late.addresses,
        });
    }
}

/// What came of one submit_sm.
enum Answer {
    Command(Box<Command>),
    Timeout,
    Lost(rusmppc::error::Error),
}

/// The message id of an ESME_ROK submit_sm_resp.
pub(super) fn accepted(command: &Command) -> Option<String> {
    if command.id() != CommandId::SubmitSmResp || u32::from(command.status()) != 0 {
        return None;
    }
    match command.pdu() {
        Some(Pdu::SubmitSmResp(resp)) => Some(resp.message_id().as_str().to_owned()),
        // An ESME_ROK without a body: accepted, with an empty id.
        _ => Some(String::new()),
    }
}

fn classify_status(command_status: u32, options: &SessionOptions) -> Failure {
    match options.status_map.get(command_status) {
        Some(StatusAction::NotAllowed) => Failure::Final(SmppError::NotAllowed { command_status }),
        Some(StatusAction::Blocked) => Failure::Final(SmppError::Blocked { command_status }),
        Some(StatusAction::Unavailable) => Failure::Final(SmppError::Rejected { command_status }),
        None => match command_status {
            status::THROTTLED | status::MSGQFUL => Failure::Throttled(command_status),
            status::SYSERR => Failure::Elsewhere(SmppError::Rejected { command_status }),
            s if status::DESTINATION.contains(&s) => {
                Failure::Final(SmppError::NotAllowed { command_status })
            }
            _ => Failure::Final(SmppError::Rejected { command_status }),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_map_takes_precedence() {
        let mut settings = SessionOptions::default();
        settings.status_map.insert(0x0B, StatusAction::Unavailable);
        settings.status_map.insert(0x0400, StatusAction::Blocked);
        settings.status_map.insert(0x0401, StatusAction::NotAllowed);
        assert!(matches!(
            classify_status(0x0B, &settings),
            Failure::Final(SmppError::Rejected {
                command_status: 0x0B
            })
        ));
        assert!(matches!(
            classify_status(0x0400, &settings),
            Failure::Final(SmppError::Blocked { .. })
        ));
        assert!(matches!(
            classify_status(0x0401, &settings),
            Failure::Final(SmppError::NotAllowed { .. })
        ));
        assert!(matches!(
            classify_status(0x50, &settings),
            Failure::Final(SmppError::NotAllowed { .. })
        ));
        assert!(matches!(
            classify_status(0x58, &settings),
            Failure::Throttled(0x58)
        ));
        assert!(matches!(
            classify_status(0x14, &settings),
            Failure::Throttled(0x14)
        ));
        assert!(matches!(
            classify_status(0x08, &settings),
            Failure::Elsewhere(SmppError::Rejected { .. })
        ));
        assert!(matches!(
            classify_status(0x45, &settings),
            Failure::Final(SmppError::Rejected {
                command_status: 0x45
            })
        ));
    }
}
