//! Receipts by delivery state per client and day. The SMPP layer knows a message by its tag
//! (the authenticationId) and keeps its delivery state for the code's lifetime, but not who
//! sent it; so a sent code is remembered here as (tag, client, day) and its state looked up
//! once, `usage.receipt_check_after` after the send, by the flush task, never on a request.
//! The SMS's validity period is the code's lifetime, so an SMSC settles nearly every message
//! within it; one still without a final receipt counts as `receiptsPending`.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::Counts;
use crate::domain::AuthenticationId;

/// Looks up the aggregate delivery state of a tag (`crate::smpp::DeliveryState::label`);
/// `Ok(None)` when the state is gone.
pub type ReceiptLookup =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<Option<&'static str>, String>> + Send + Sync>;

/// How and when receipts are checked.
pub(super) struct ReceiptCheck {
    pub(super) lookup: ReceiptLookup,
    pub(super) after: Duration,
    pub(super) max_pending: usize,
}

/// A sent code whose state is to be read at `due`: 64 bytes, no heap of its own. One is held
/// per code sent within the last `receipt_check_after` (a minute by default), so at a
/// million sends a minute it weighs as much as a live code's store record.
pub(super) struct Pending {
    pub(super) due: Instant,
    pub(super) tag: AuthenticationId,
    /// Shared by every pending check of the client.
    pub(super) client_id: Arc<str>,
    pub(super) day: u64,
}

/// The pending checks, oldest first, and the client ids they share.
#[derive(Default)]
pub(super) struct Queue {
    pub(super) pending: VecDeque<Pending>,
    names: HashSet<Arc<str>>,
}

impl Queue {
    /// The shared form of `client_id` (one allocation per client, not per send).
    pub(super) fn name(&mut self, client_id: &str) -> Arc<str> {
        if let Some(n) = self.names.get(client_id) {
            return Arc::clone(n);
        }
        // Names of clients with nothing pending go, so the set stays as small as the clients
        // that are sending.
        if self.pending.is_empty() {
            self.names.clear();
        }
        let n: Arc<str> = client_id.into();
        self.names.insert(Arc::clone(&n));
        n
    }
}

/// Most checks one flush tick makes, so a backlog is worked off over several ticks.
pub(super) const CHECKS_PER_TICK: usize = 10_000;

/// The counter a checked state goes to.
pub(super) fn count(state: Option<&str>) -> impl FnOnce(&mut Counts) + use<'_> {
    move |c: &mut Counts| {
        let slot = match state {
            Some("delivered") => &mut c.receipts_delivered,
            Some("undeliverable") => &mut c.receipts_undeliverable,
            Some("expired") => &mut c.receipts_expired,
            Some("rejected") => &mut c.receipts_rejected,
            // A cancelled message (only ever a 504's late acceptance) was deleted by the SMSC.
            Some("deleted" | "cancelled") => &mut c.receipts_deleted,
            Some("submitted" | "enroute") => &mut c.receipts_pending,
            Some(_) => &mut c.receipts_unknown,
            None => &mut c.receipts_missing,
        };
        *slot += 1;
    }
}

/// Takes the entries due by `now` (at most [`CHECKS_PER_TICK`]) off the front of the queue.
pub(super) fn due(queue: &mut VecDeque<Pending>, now: Instant) -> Vec<Pending> {
    let mut out = Vec::new();
    while out.len() < CHECKS_PER_TICK && queue.front().is_some_and(|p| p.due <= now) {
        if let Some(p) = queue.pop_front() {
            out.push(p);
        }
    }
    out
}
