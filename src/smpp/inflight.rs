//! Which submit (or cancel) a response answers, per session.
//!
//! submit_sm goes out through rusmppc's `no_wait` path, which hands back the sequence number;
//! every response then arrives on the session's event stream and is routed here. Doing the
//! correlation ourselves (instead of rusmppc's, which ignores a per-request timeout and
//! forgets a request once it timed out) lets the pool wait exactly its own budget and still
//! recognise the answer to a submit it gave up on: a late acceptance, to be cancelled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusmpp::Command;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::cancel::Late;
use crate::sync::lock;

/// How long a response nobody waits for yet is kept (it can overtake the registration).
const EARLY_TTL: Duration = Duration::from_secs(10);
/// How long an abandoned submit's answer is still recognised as a late acceptance.
const LATE_TTL: Duration = Duration::from_secs(600);
/// Bound of each map.
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
struct State {
    waiting: HashMap<u32, oneshot::Sender<Command>>,
    early: HashMap<u32, (Instant, Command)>,
    late: HashMap<u32, (Instant, Late)>,
    closed: bool,
}

/// What became of a response handed to [`Inflight::dispatch`].
pub(super) enum Routed {
    /// Handed to its waiter (or kept for one about to register).
    Taken,
    /// The answer to a submit that was abandoned.
    Late(Late, Box<Command>),
}

/// The correlation state of one session (one TCP connection).
pub(super) struct Inflight {
    state: Mutex<State>,
    /// Sequence numbers of the PDUs the pool writes itself; far above rusmppc's (which count
    /// up from 1 and 2), so they never meet.
    own: AtomicU32,
}

impl Default for Inflight {
    fn default() -> Self {
        Inflight {
            state: Mutex::new(State::default()),
            own: AtomicU32::new(0x7FFF_FFFE),
        }
    }
}

fn purge<V>(map: &mut HashMap<u32, (Instant, V)>, ttl: Duration) {
    if map.len() >= MAX_ENTRIES / 2 {
        let now = Instant::now();
        map.retain(|_, (at, _)| *at + ttl > now);
    }
}

impl Inflight {
    /// A sequence number for a PDU the pool writes through the splice.
    pub(super) fn own_sequence(&self) -> u32 {
        self.own.fetch_sub(2, Ordering::Relaxed)
    }

    /// Waits for the response to `seq` (already there if it overtook this call). The sender is
    /// dropped, so the receiver fails, when the session ends.
    pub(super) fn wait(&self, seq: u32) -> oneshot::Receiver<Command> {
        let (tx, rx) = oneshot::channel();
        let mut s = lock(&self.state);
        if let Some((_, command)) = s.early.remove(&seq) {
            tx.send(command).ok();
        } else if !s.closed && s.waiting.len() < MAX_ENTRIES {
            s.waiting.insert(seq, tx);
        }
        rx
    }

    /// The submit `seq` got no answer in time: its answer, if one comes, is `late`. Returns
    /// the answer when it arrived meanwhile (then it is not late after all).
    pub(super) fn abandon(&self, seq: u32, late: Late) -> Option<Command> {
        let mut s = lock(&self.state);
        s.waiting.remove(&seq);
        if let Some((_, command)) = s.early.remove(&seq) {
            return Some(command);
        }
        if !s.closed {
            purge(&mut s.late, LATE_TTL);
            if s.late.len() < MAX_ENTRIES {
                s.late.insert(seq, (Instant::now(), late));
            }
        }
        None
    }

    /// Stops waiting for `seq` without expecting anything.
    pub(super) fn forget(&self, seq: u32) {
        let mut s = lock(&self.state);
        s.waiting.remove(&seq);
        s.early.remove(&seq);
    }

    /// Routes a response read from the session.
    pub(super) fn dispatch(&self, command: Command) -> Routed {
        let seq = command.sequence_number();
        let mut s = lock(&self.state);
        if let Some(tx) = s.waiting.remove(&seq) {
            // The waiter may have just given up: keep it for its `abandon`.
            if let Err(command) = tx.send(command) {
                s.early.insert(seq, (Instant::now(), command));
            }
            return Routed::Taken;
        }
        if let Some((_, late)) = s.late.remove(&seq) {
            return Routed::Late(late, Box::new(command));
        }
        purge(&mut s.early, EARLY_TTL);
        if s.early.len() < MAX_ENTRIES {
            s.early.insert(seq, (Instant::now(), command));
        }
        Routed::Taken
    }

    /// The session ended: every waiter fails, no late answer can come any more.
    pub(super) fn close(&self) {
        let mut s = lock(&self.state);
        s.closed = true;
        s.waiting.clear();
        s.early.clear();
        s.late.clear();
    }
}

/// A bound session as submitters use it.
#[derive(Clone)]
pub(super) struct Link {
    /// rusmppc's handle.
    pub(super) client: rusmppc::Client,
    /// Its responses.
    pub(super) inflight: Arc<Inflight>,
    /// Its raw PDU path; `None` on `smpps://` (rusmppc owns the TLS stream there).
    pub(super) injector: Option<super::splice::Injector>,
    /// The pool it belongs to (weak: the pool owns its links) and its place there, for
    /// cancelling an answer nobody waits for any more.
    pub(super) route: std::sync::Weak<super::client::Shared>,
    pub(super) slot: usize,
}
