//! Delivery state kept outside the process, so several gateways bound to one SMSC (one
//! `system_id`) read the same state: the SMSC may deliver a receipt on any bound session, so
//! the receipt for a message one replica submitted can arrive at another.
//!
//! [`SharedDeliveryState`] is the small interface a backend implements (the gateway's Redis one
//! lives outside this module); [`Receipts`] is what a route holds: the in-process
//! [`Tracker`] or a [`SharedTracker`] over a backend. The shared tracker never blocks the
//! submit path: every change is queued to one worker task per route, which applies them in
//! order (so a late filing always precedes its cancellation) and off the response path. A
//! receipt that reaches the backend before its filing waits there as an orphan, exactly like
//! in the in-process tracker; the backend makes "file + apply orphans" and "apply receipt or
//! keep as orphan" one atomic step each, so neither order loses it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::parse::{receipt_keys, response_key, DeliveryState, MessageIdFormat, Receipt};
use super::tracker::{rfc3339, Tracker};
use super::{DeliveryReport, SegmentReport};
use crate::domain::PhoneNumber;
use crate::metrics::SmppMetrics;
use crate::smpp::{BoxError, TARGET};

/// How long a receipt waits for its submit_sm_resp to be filed (as in the in-process tracker).
pub const ORPHAN_TTL: Duration = Duration::from_secs(60);
/// Changes queued per route at most; beyond it a change is dropped (and logged) rather than
/// slowing down submits or the session reading receipts.
const QUEUE: usize = 10_000;

/// One acknowledged segment to file.
#[derive(Clone, Debug)]
pub struct FiledSegment {
    /// The id as the SMSC wrote it in submit_sm_resp.
    pub message_id: String,
    /// The normalised key receipts find it by (see [`MessageIdFormat`]).
    pub key: String,
}

/// The segments of a tagged message to file, with the report they start.
#[derive(Clone, Debug)]
pub struct Filing {
    /// Route (SMSC) name; correlation is per route, as ids are only unique per SMSC.
    pub route: String,
    /// The caller's opaque tag.
    pub tag: String,
    /// Masked destination (the only form of the number a backend ever sees).
    pub masked_destination: String,
    /// The segments, in order.
    pub segments: Vec<FiledSegment>,
    /// When the submit started (Unix ms), for the receipt latency.
    pub submitted_ms: u64,
    /// When the SMSC acknowledged it (Unix ms).
    pub now_ms: u64,
    /// How long the report and the correlation live.
    pub retention: Duration,
    /// `false`: a new report replaces any kept under the tag; `true`: the segments are
    /// appended to the tag's report (a late acceptance), which is created if absent.
    pub append: bool,
}

/// A receipt to apply.
#[derive(Clone, Debug)]
pub struct ReceiptUpdate {
    /// Route (SMSC) name.
    pub route: String,
    /// The keys the receipt's id may match, most likely first.
    pub keys: Vec<String>,
    /// Reported state.
    pub state: DeliveryState,
    /// The `err:` code, when given.
    pub error: Option<String>,
    /// When it arrived (Unix ms).
    pub now_ms: u64,
    /// How long it waits as an orphan when no segment is filed under its keys.
    pub orphan_ttl: Duration,
}

/// A receipt applied to a filed segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The state it reported.
    pub state: DeliveryState,
    /// When that segment's submit started (Unix ms).
    pub submitted_ms: u64,
}

/// One segment of a [`StoredReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSegment {
    /// SMSC message id.
    pub message_id: String,
    /// Latest reported state.
    pub state: DeliveryState,
    /// `err:` of the receipt, when given.
    pub error: Option<String>,
    /// When the receipt arrived (Unix ms).
    pub receipt_ms: Option<u64>,
}

/// A report as a backend keeps it (times in Unix ms; formatted when read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredReport {
    /// Masked destination.
    pub masked_destination: String,
    /// Route name.
    pub route: String,
    /// When the SMSC acknowledged the message.
    pub submitted_ms: u64,
    /// Last change.
    pub updated_ms: u64,
    /// The segments, in order.
    pub segments: Vec<StoredSegment>,
}

/// Where the delivery state of tagged messages lives when several gateways share it. Each
/// method is one atomic step on the backend and must honour its own deadline.
pub trait SharedDeliveryState: Send + Sync + 'static {
    /// Starts (or extends) the report and files its segments; a receipt already waiting as an
    /// orphan under a segment's key is applied and removed, and the segment stays filed only
    /// while its state is not final. Returns the orphans applied.
    fn file<'a>(&'a self, filing: &'a Filing) -> BoxFuture<'a, Result<Vec<Applied>, BoxError>>;

    /// Applies the receipt to the segment filed under the first of its keys that is filed
    /// (unfiling it when the state is final); when none is, keeps it as an orphan under every
    /// key for `orphan_ttl`. `None`: kept as an orphan, or the report is gone.
    fn receipt<'a>(
        &'a self,
        receipt: &'a ReceiptUpdate,
    ) -> BoxFuture<'a, Result<Option<Applied>, BoxError>>;

    /// The segment `message_id` (filed under `key`) of `tag` was deleted with cancel_sm.
    fn cancelled<'a>(
        &'a self,
        route: &'a str,
        tag: &'a str,
        message_id: &'a str,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<(), BoxError>>;

    /// The report of `tag` on `route`, while kept.
    fn report<'a>(
        &'a self,
        route: &'a str,
        tag: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredReport>, BoxError>>;
}

/// Unix milliseconds of `t`.
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl StoredReport {
    /// The report in the form callers read, under `tag`.
    pub fn into_report(self, tag: &str) -> DeliveryReport {
        DeliveryReport {
            tag: tag.to_owned(),
            phone_number: self.masked_destination,
            route: self.route,
            state: DeliveryState::aggregate(self.segments.iter().map(|s| s.state)),
            segments: self
                .segments
                .into_iter()
                .map(|s| SegmentReport {
                    message_id: s.message_id,
                    state: s.state,
                    error: s.error,
                    receipt_at: s.receipt_ms.map(|ms| rfc3339(from_unix_ms(ms))),
                })
                .collect(),
            submitted_at: rfc3339(from_unix_ms(self.submitted_ms)),
            updated_at: rfc3339(from_unix_ms(self.updated_ms)),
        }
    }
}

enum Change {
    File(Filing),
    Receipt(ReceiptUpdate),
    Cancelled { tag: String, message_id: String },
}

/// A route's delivery state in a [`SharedDeliveryState`]; changes go through one worker.
pub(in crate::smpp) struct SharedTracker {
    route: String,
    format: MessageIdFormat,
    retention: Duration,
    backend: Arc<dyn SharedDeliveryState>,
    queue: mpsc::Sender<Change>,
}

impl SharedTracker {
    /// Spawns the route's worker (it ends when the tracker is dropped); must be called within
    /// a Tokio runtime.
    pub(in crate::smpp) fn new(
        route: &str,
        format: MessageIdFormat,
        retention: Duration,
        backend: Arc<dyn SharedDeliveryState>,
        metrics: SmppMetrics,
    ) -> SharedTracker {
        let (queue, changes) = mpsc::channel(QUEUE);
        tokio::spawn(work(
            route.to_owned(),
            format,
            Arc::clone(&backend),
            metrics,
            changes,
        ));
        SharedTracker {
            route: route.to_owned(),
            format,
            retention: retention.max(Duration::from_secs(1)),
            backend,
            queue,
        }
    }

    fn enqueue(&self, change: Change) {
        if self.queue.try_send(change).is_err() {
            tracing::warn!(
                target: TARGET,
                route = %self.route,
                "delivery-state queue full or closed; a delivery update was dropped"
            );
        }
    }

    fn filing(
        &self,
        tag: &str,
        destination: &PhoneNumber,
        ids: &[String],
        submitted_ms: u64,
        append: bool,
    ) -> Filing {
        Filing {
            route: self.route.clone(),
            tag: tag.to_owned(),
            masked_destination: destination.masked(),
            segments: ids
                .iter()
                .map(|id| FiledSegment {
                    message_id: id.clone(),
                    key: response_key(id, self.format),
                })
                .collect(),
            submitted_ms,
            now_ms: unix_ms(SystemTime::now()),
            retention: self.retention,
            append,
        }
    }

    fn file(&self, tag: &str, destination: &PhoneNumber, ids: &[String], submitted: Instant) {
        let submitted_ms = unix_ms(SystemTime::now() - submitted.elapsed());
        self.enqueue(Change::File(self.filing(
            tag,
            destination,
            ids,
            submitted_ms,
            false,
        )));
    }

    fn file_late(&self, tag: &str, destination: &PhoneNumber, id: &str) {
        let now = unix_ms(SystemTime::now());
        self.enqueue(Change::File(self.filing(
            tag,
            destination,
            &[id.to_owned()],
            now,
            true,
        )));
    }

    fn cancelled(&self, tag: &str, id: &str) {
        self.enqueue(Change::Cancelled {
            tag: tag.to_owned(),
            message_id: id.to_owned(),
        });
    }

    fn on_receipt(&self, receipt: Receipt) {
        self.enqueue(Change::Receipt(ReceiptUpdate {
            route: self.route.clone(),
            keys: receipt_keys(&receipt.message_id, self.format),
            state: receipt.state,
            error: receipt.error,
            now_ms: unix_ms(SystemTime::now()),
            orphan_ttl: ORPHAN_TTL,
        }));
    }

    async fn report(&self, tag: &str) -> Result<Option<DeliveryReport>, BoxError> {
        Ok(self
            .backend
            .report(&self.route, tag)
            .await?
            .map(|r| r.into_report(tag)))
    }
}

/// Applies a route's changes in order, recording final receipts as the in-process tracker does.
async fn work(
    route: String,
    format: MessageIdFormat,
    backend: Arc<dyn SharedDeliveryState>,
    metrics: SmppMetrics,
    mut changes: mpsc::Receiver<Change>,
) {
    let record = |a: Applied| {
        if a.state.is_final() {
            metrics.receipts.with_label_values(&[a.state.label()]).inc();
            let now = unix_ms(SystemTime::now());
            // Wall clocks of two replicas: the latency is only as good as their sync.
            let latency = Duration::from_millis(now.saturating_sub(a.submitted_ms));
            metrics.receipt_latency.observe(latency.as_secs_f64());
        }
    };
    while let Some(change) = changes.recv().await {
        let failed = match change {
            Change::File(filing) => match backend.file(&filing).await {
                Ok(applied) => {
                    applied.into_iter().for_each(record);
                    None
                }
                Err(e) => Some(("filing", e)),
            },
            Change::Receipt(receipt) => match backend.receipt(&receipt).await {
                Ok(Some(applied)) => {
                    record(applied);
                    None
                }
                Ok(None) => {
                    tracing::debug!(
                        target: TARGET,
                        route = %route,
                        state = receipt.state.label(),
                        "receipt for an id not (yet) filed; kept briefly in the shared state"
                    );
                    None
                }
                Err(e) => Some(("receipt", e)),
            },
            Change::Cancelled { tag, message_id } => {
                let key = response_key(&message_id, format);
                let now = unix_ms(SystemTime::now());
                backend
                    .cancelled(&route, &tag, &message_id, &key, now)
                    .await
                    .err()
                    .map(|e| ("cancellation", e))
            }
        };
        if let Some((what, e)) = failed {
            tracing::warn!(
                target: TARGET,
                route = %route,
                error = %e,
                "could not record a delivery {what} in the shared state"
            );
        }
    }
}

/// A route's delivery state: in process (the memory backend) or shared between replicas.
// One per route, inside the route's shared state: its size does not matter, and boxing the
// in-process tracker would add an indirection to the memory backend's send path.
#[allow(clippy::large_enum_variant)]
pub(in crate::smpp) enum Receipts {
    /// The in-process tracker.
    Local(Tracker),
    /// A shared backend.
    Shared(SharedTracker),
}

impl Receipts {
    /// Files the acknowledged segments of a tagged message.
    pub(in crate::smpp) fn file(
        &self,
        tag: &str,
        destination: &PhoneNumber,
        route: &str,
        ids: &[String],
        submitted: Instant,
    ) {
        match self {
            Receipts::Local(t) => t.file(tag, destination, route, ids, submitted),
            Receipts::Shared(t) => t.file(tag, destination, ids, submitted),
        }
    }

    /// Files one segment the SMSC accepted after its submit answered "may hold".
    pub(in crate::smpp) fn file_late(
        &self,
        tag: &str,
        destination: &PhoneNumber,
        route: &str,
        id: &str,
    ) {
        match self {
            Receipts::Local(t) => t.file_late(tag, destination, route, id),
            Receipts::Shared(t) => t.file_late(tag, destination, id),
        }
    }

    /// The segment `id` of `tag` was deleted with cancel_sm.
    pub(in crate::smpp) fn cancelled(&self, tag: &str, id: &str) {
        match self {
            Receipts::Local(t) => t.cancelled(tag, id),
            Receipts::Shared(t) => t.cancelled(tag, id),
        }
    }

    /// Applies a receipt read from a deliver_sm.
    pub(in crate::smpp) fn on_receipt(&self, receipt: Receipt) {
        match self {
            Receipts::Local(t) => t.on_receipt(receipt),
            Receipts::Shared(t) => t.on_receipt(receipt),
        }
    }

    /// The in-process report of `tag`; `None` with a shared backend (see [`Receipts::lookup`]).
    pub(in crate::smpp) fn report(&self, tag: &str) -> Option<DeliveryReport> {
        match self {
            Receipts::Local(t) => t.report(tag),
            Receipts::Shared(_) => None,
        }
    }

    /// The report of `tag` wherever it is kept.
    pub(in crate::smpp) async fn lookup(
        &self,
        tag: &str,
    ) -> Result<Option<DeliveryReport>, BoxError> {
        match self {
            Receipts::Local(t) => Ok(t.report(tag)),
            Receipts::Shared(t) => t.report(tag).await,
        }
    }

    /// Only the aggregate state of `tag`'s report: in process without building the report
    /// (no strings, no dates), for the usage counting that reads one per code sent.
    pub(in crate::smpp) async fn lookup_state(
        &self,
        tag: &str,
    ) -> Result<Option<DeliveryState>, BoxError> {
        match self {
            Receipts::Local(t) => Ok(t.state(tag)),
            Receipts::Shared(t) => Ok(t.report(tag).await?.map(|r| r.state)),
        }
    }
}
