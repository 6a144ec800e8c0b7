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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusmpp::pdus::SubmitSm;
use rusmppc::Client;
use tokio::sync::{watch, Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::limiter::SegmentLimiter;
use super::{status, Shared, SmppError, SmppSettings, StatusAction, TARGET};

/// Longest wait for a bind that is in progress when a submit finds no
/// session; bounded so callers get `NotBound` quickly during an outage.
const BIND_GRACE: Duration = Duration::from_secs(1);
/// First pause of a session after a throttling answer.
const THROTTLE_PAUSE_MIN: Duration = Duration::from_millis(20);
/// Lateness after which a planned segment is planned again (well inside
/// the limiter's margin, see `limiter::PERIOD`).
const LATE_LIMIT: Duration = Duration::from_millis(10);
/// Cap of the doubling throttling pause.
const THROTTLE_PAUSE_MAX: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A uniformly random duration in `[d/2, d]`, so sessions that failed
/// together do not retry in lock-step.
pub(super) fn jitter(d: Duration) -> Duration {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    // On a random failure the full delay is still a valid back-off.
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return d;
    }
    let fraction = f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX);
    d.mul_f64(0.5 + fraction / 2.0)
}

/// Throttling state of one session.
#[derive(Debug, Default)]
struct Pause {
    until: Option<Instant>,
    next: Duration,
}

/// One bind of the pool.
pub(super) struct Slot {
    pub(super) index: usize,
    /// `Some` while bound; submitters clone the client out of it.
    pub(super) session: watch::Sender<Option<Client>>,
    /// True while the supervisor is connecting/binding, i.e. the session
    /// may appear shortly; during back-off sleeps it is false.
    pub(super) connecting: AtomicBool,
    pub(super) window: Semaphore,
    /// A bind_receiver session that only takes delivery receipts.
    pub(super) receiver: bool,
    limiter: Option<Mutex<SegmentLimiter>>,
    pause: Mutex<Pause>,
}

impl Slot {
    pub(super) fn new(index: usize, settings: &SmppSettings, receiver: bool) -> Slot {
        Slot {
            index,
            receiver,
            session: watch::Sender::new(None),
            // Set from the start so a submit right after `start` waits for
            // the first bind instead of failing.
            connecting: AtomicBool::new(true),
            window: Semaphore::new(settings.window.clamp(1, Semaphore::MAX_PERMITS)),
            limiter: SegmentLimiter::new(settings.max_tps).map(Mutex::new),
            pause: Mutex::new(Pause::default()),
        }
    }

    pub(super) fn is_bound(&self) -> bool {
        self.session.borrow().is_some()
    }

    /// Bound, and a session submits may use (not the receipts-only one).
    pub(super) fn can_submit(&self) -> bool {
        !self.receiver && self.is_bound()
    }

    fn client(&self) -> Option<Client> {
        self.session.borrow().clone()
    }

    fn paused_until(&self, now: Instant) -> Option<Instant> {
        lock(&self.pause).until.filter(|u| *u > now)
    }

    /// Pauses the session after a throttling answer; each consecutive one
    /// doubles the pause up to [`THROTTLE_PAUSE_MAX`].
    fn slow_down(&self) {
        let mut p = lock(&self.pause);
        let base = p.next.max(THROTTLE_PAUSE_MIN);
        p.until = Some(Instant::now() + jitter(base));
        p.next = (base * 2).min(THROTTLE_PAUSE_MAX);
    }

    fn recovered(&self) {
        let mut p = lock(&self.pause);
        if !p.next.is_zero() {
            *p = Pause::default();
        }
    }

    /// When the limiter could send `n` segments starting now.
    fn plan(&self, n: usize, now: Instant) -> Option<Vec<Instant>> {
        self.limiter.as_ref().map(|l| lock(l).plan(n, now))
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
        if let Some(h) = &shared.hot {
            h.window_in_use.inc();
        }
        WindowPermit {
            _permit: permit,
            shared,
        }
    }
}

impl Drop for WindowPermit<'_> {
    fn drop(&mut self) {
        if let Some(h) = &self.shared.hot {
            h.window_in_use.dec();
        }
        self.shared.changed.notify_waiters();
    }
}

/// What [`choose`] found.
enum Choice<'a> {
    /// Send on this session at the planned times (empty: unlimited rate).
    Slot {
        slot: &'a Slot,
        client: Client,
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
    /// Retry on another session.
    Elsewhere(SmppError),
    /// Give up with this error.
    Final(SmppError),
    /// Woke up too late for the rate plan; nothing was sent for this
    /// segment, choose again.
    Replan,
}

/// Sends `submits` on the pool; returns the message id of every segment.
pub(super) async fn submit(
    shared: &Shared,
    submits: &[SubmitSm],
    deadline: Instant,
) -> Result<Vec<String>, SmppError> {
    let mut ids: Vec<String> = Vec::with_capacity(submits.len());
    let mut avoid: Option<usize> = None;
    let mut last_err: Option<SmppError> = None;
    let mut unbound_since: Option<Instant> = None;
    // Set once an SMSC may hold (part of) the message: a segment was acknowledged, or a
    // submit_sm went out and its answer never came. The call can then no longer honestly
    // report "not accepted", so any failure becomes an unknown outcome (Timeout, 504).
    let mut uncertain = false;
    let fail = |uncertain: bool, e: SmppError| {
        if uncertain {
            SmppError::Timeout {
                after: shared.settings.submit_timeout,
            }
        } else {
            e
        }
    };
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(fail(uncertain, last_err.unwrap_or(SmppError::Busy)));
        }
        let rest = &submits[ids.len()..];
        let (slot, client, permit, plan) = {
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
                    client,
                    permit,
                    plan,
                } => (slot, client, permit, plan),
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
                        .any(|s| !s.receiver && s.connecting.load(Ordering::Acquire));
                    let since = *unbound_since.get_or_insert(now);
                    if !connecting || now >= since + BIND_GRACE {
                        return Err(fail(uncertain, last_err.unwrap_or(SmppError::NotBound)));
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
        let outcome = send_on(shared, &client, rest, &plan, deadline, &mut ids).await;
        drop(permit);
        if ids.len() > acknowledged
            || matches!(
                outcome,
                Err(Failure::Elsewhere(
                    SmppError::Timeout { .. } | SmppError::Connection(_)
                ))
            )
        {
            uncertain = true;
        }
        match outcome {
            Ok(()) => {
                slot.recovered();
                return Ok(ids);
            }
            Err(Failure::Throttled(command_status)) => {
                slot.slow_down();
                if let Some(m) = &shared.metrics {
                    m.throttled
                        .with_label_values(&[shared.settings.route.as_str()])
                        .inc();
                }
                tracing::debug!(
                    target: TARGET,
                    session = slot.index,
                    command_status = format_args!("0x{command_status:08X}"),
                    "throttled; pausing session"
                );
                last_err = Some(SmppError::Throttled { command_status });
            }
            Err(Failure::Elsewhere(e)) => {
                tracing::debug!(
                    target: TARGET,
                    session = slot.index,
                    error = %e,
                    "submit failed; retrying on another session"
                );
                avoid = Some(slot.index);
                last_err = Some(e);
            }
            Err(Failure::Final(e)) => return Err(fail(uncertain, e)),
            Err(Failure::Replan) => {
                tracing::debug!(target: TARGET, session = slot.index, "woke up late; planning again");
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
        .any(|s| Some(s.index) != avoid && s.can_submit());
    let mut any_bound = false;
    let mut wake: Option<Instant> = None;
    let mut later: Option<(&Slot, Instant)> = None;
    for slot in &shared.slots {
        if others_bound && Some(slot.index) == avoid {
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
        if slot.window.available_permits() == 0 {
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
    let client = slot.client()?;
    let permit = slot.window.try_acquire().ok()?;
    let plan = match &slot.limiter {
        Some(l) => {
            let mut l = lock(l);
            let plan = l.plan(segments, now);
            l.commit(&plan);
            plan
        }
        None => Vec::new(),
    };
    Some(Choice::Slot {
        slot,
        client,
        permit: WindowPermit::new(permit, shared),
        plan,
    })
}

/// Sends `segments` one after another on one session, appending the
/// message ids to `ids`.
async fn send_on(
    shared: &Shared,
    client: &Client,
    segments: &[SubmitSm],
    plan: &[Instant],
    deadline: Instant,
    ids: &mut Vec<String>,
) -> Result<(), Failure> {
    let settings = &shared.settings;
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
        let wait = settings.response_timeout.min(deadline - now);
        if let Some(h) = &shared.hot {
            h.segments_submitted.inc();
        }
        let result = client
            .response_timeout(wait.max(Duration::from_millis(1)))
            .submit_sm(segment.clone())
            .await;
        match result {
            Ok(resp) => {
                if let Some(h) = &shared.hot {
                    h.submit_ok.inc();
                }
                ids.push(resp.message_id().as_str().to_owned());
            }
            Err(e) => {
                let failure = classify(e, settings);
                if let Some(m) = &shared.metrics {
                    let label = match &failure {
                        Failure::Elsewhere(SmppError::Timeout { .. }) => "timeout".to_owned(),
                        Failure::Elsewhere(SmppError::Connection(_)) => "connection".to_owned(),
                        Failure::Throttled(s) => m.status_label(*s),
                        // classify() never yields it; nothing was answered.
                        Failure::Replan => "other".to_owned(),
                        Failure::Elsewhere(e) | Failure::Final(e) => match status_of(e) {
                            Some(s) => m.status_label(s),
                            None => "other".to_owned(),
                        },
                    };
                    record_status(shared, &label);
                }
                return Err(failure);
            }
        }
    }
    Ok(())
}

fn record_status(shared: &Shared, label: &str) {
    if let Some(m) = &shared.metrics {
        m.submit_results
            .with_label_values(&[shared.settings.route.as_str(), label])
            .inc();
    }
}

fn status_of(e: &SmppError) -> Option<u32> {
    match e {
        SmppError::Throttled { command_status }
        | SmppError::NotAllowed { command_status }
        | SmppError::Blocked { command_status }
        | SmppError::Rejected { command_status } => Some(*command_status),
        SmppError::NotBound
        | SmppError::Busy
        | SmppError::Timeout { .. }
        | SmppError::NoRoute
        | SmppError::Encoding(_)
        | SmppError::Connection(_) => None,
    }
}

/// Decides what a failed submit_sm means for the message.
fn classify(error: rusmppc::error::Error, settings: &SmppSettings) -> Failure {
    use rusmppc::error::Error;
    match error {
        // A submit_sm_resp or generic_nack with a non-zero status.
        Error::UnexpectedResponse { response } => {
            let command_status = u32::from(response.status());
            if command_status == 0 {
                Failure::Elsewhere(SmppError::Connection(format!(
                    "unexpected response {:?}",
                    response.id()
                )))
            } else {
                classify_status(command_status, settings)
            }
        }
        Error::ResponseTimeout { .. } => Failure::Elsewhere(SmppError::Timeout {
            after: settings.submit_timeout,
        }),
        other => Failure::Elsewhere(SmppError::Connection(other.to_string())),
    }
}

fn classify_status(command_status: u32, settings: &SmppSettings) -> Failure {
    match settings.status_map.get(&command_status) {
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
        let mut settings = SmppSettings::default();
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

    #[test]
    fn jitter_stays_within_half_and_full() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(100));
            assert!(j >= Duration::from_millis(50) && j <= Duration::from_millis(100));
        }
    }
}
