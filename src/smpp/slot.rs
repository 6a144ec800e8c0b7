//! One bind of the pool and the only ways its state changes: the supervisor moves it
//! through connecting → bound → unbound, submitters reserve a window slot and rate budget on
//! it and pause it after throttling. Fields are private so no caller can publish a session
//! without clearing "connecting" in the right order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{watch, Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::inflight::Link;
use super::limiter::SegmentLimiter;
use super::settings::SessionOptions;
use crate::sync::lock;

/// First pause of a session after a throttling answer.
const THROTTLE_PAUSE_MIN: Duration = Duration::from_millis(20);
/// Cap of the doubling throttling pause.
const THROTTLE_PAUSE_MAX: Duration = Duration::from_secs(1);

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

/// What a submitter holds while it sends on a slot.
pub(super) struct Reservation<'a> {
    /// The session.
    pub(super) link: Link,
    /// The window slot; released on drop.
    pub(super) permit: SemaphorePermit<'a>,
    /// When each segment may go (empty: unlimited rate).
    pub(super) plan: Vec<Instant>,
}

/// One bind of the pool.
pub(super) struct Slot {
    index: usize,
    /// `Some` while bound; submitters clone the session out of it.
    session: watch::Sender<Option<Link>>,
    /// True while the supervisor is connecting/binding, i.e. the session
    /// may appear shortly; during back-off sleeps it is false.
    connecting: AtomicBool,
    window: Semaphore,
    /// A bind_receiver session that only takes delivery receipts.
    receiver: bool,
    limiter: Option<Mutex<SegmentLimiter>>,
    pause: Mutex<Pause>,
}

impl Slot {
    pub(super) fn new(index: usize, options: &SessionOptions, receiver: bool) -> Slot {
        Slot {
            index,
            receiver,
            session: watch::Sender::new(None),
            // Set from the start so a submit right after `start` waits for
            // the first bind instead of failing.
            connecting: AtomicBool::new(true),
            window: Semaphore::new(options.window.clamp(1, Semaphore::MAX_PERMITS)),
            limiter: SegmentLimiter::new(options.max_tps).map(Mutex::new),
            pause: Mutex::new(Pause::default()),
        }
    }

    /// Position in the pool (configuration order).
    pub(super) fn index(&self) -> usize {
        self.index
    }

    /// Whether this is the receipts-only bind_receiver session.
    pub(super) fn is_receiver(&self) -> bool {
        self.receiver
    }

    /// Whether a session may appear shortly (the supervisor is connecting or binding).
    pub(super) fn is_connecting(&self) -> bool {
        self.connecting.load(Ordering::Acquire)
    }

    pub(super) fn is_bound(&self) -> bool {
        self.session.borrow().is_some()
    }

    /// Bound, and a session submits may use (not the receipts-only one).
    pub(super) fn can_submit(&self) -> bool {
        !self.receiver && self.is_bound()
    }

    /// Whether a window slot is free now.
    pub(super) fn has_free_window(&self) -> bool {
        self.window.available_permits() > 0
    }

    /// The supervisor starts connecting and binding.
    pub(super) fn connecting(&self) {
        self.connecting.store(true, Ordering::Release);
    }

    /// The session is bound: published before "connecting" is cleared, so a submit never
    /// sees "not bound and not connecting" in between.
    pub(super) fn bound(&self, link: Link) {
        self.session.send_replace(Some(link));
        self.connecting.store(false, Ordering::Release);
    }

    /// The bound session, if any.
    pub(super) fn link(&self) -> Option<Link> {
        self.session.borrow().clone()
    }

    /// Connecting failed; the supervisor backs off before the next try.
    pub(super) fn backing_off(&self) {
        self.connecting.store(false, Ordering::Release);
    }

    /// The session is gone (lost, or unbound on stop).
    pub(super) fn unbound(&self) {
        self.session.send_replace(None);
    }

    /// The supervisor stopped: no session, none coming.
    pub(super) fn stopped(&self) {
        self.connecting.store(false, Ordering::Release);
        self.session.send_replace(None);
    }

    pub(super) fn paused_until(&self, now: Instant) -> Option<Instant> {
        lock(&self.pause).until.filter(|u| *u > now)
    }

    /// Pauses the session after a throttling answer; each consecutive one
    /// doubles the pause up to [`THROTTLE_PAUSE_MAX`].
    pub(super) fn slow_down(&self) {
        let mut p = lock(&self.pause);
        let base = p.next.max(THROTTLE_PAUSE_MIN);
        p.until = Some(Instant::now() + jitter(base));
        p.next = (base * 2).min(THROTTLE_PAUSE_MAX);
    }

    /// A submit went through: the throttling pause starts again from its minimum.
    pub(super) fn recovered(&self) {
        let mut p = lock(&self.pause);
        if !p.next.is_zero() {
            *p = Pause::default();
        }
    }

    /// When the limiter could send `n` segments starting now (`None`: unlimited rate).
    pub(super) fn plan(&self, n: usize, now: Instant) -> Option<Vec<Instant>> {
        self.limiter.as_ref().map(|l| lock(l).plan(n, now))
    }

    /// Holds a window slot as a stuck in-flight message would.
    #[cfg(test)]
    pub(super) async fn occupy(&self) -> SemaphorePermit<'_> {
        match self.window.acquire().await {
            Ok(p) => p,
            Err(_) => unreachable!("the window semaphore is never closed"),
        }
    }

    /// Takes a window slot and reserves the rate budget of `segments`.
    pub(super) fn reserve(&self, segments: usize, now: Instant) -> Option<Reservation<'_>> {
        let link = self.session.borrow().clone()?;
        let permit = self.window.try_acquire().ok()?;
        let plan = match &self.limiter {
            Some(l) => {
                let mut l = lock(l);
                let plan = l.plan(segments, now);
                l.commit(&plan);
                plan
            }
            None => Vec::new(),
        };
        Some(Reservation { link, permit, plan })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_full() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(100));
            assert!(j >= Duration::from_millis(50) && j <= Duration::from_millis(100));
        }
    }
}
