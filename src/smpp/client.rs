//! The handle callers hold: [`SmppClient::start`] spawns one supervisor task per bind (see
//! `session`), [`SmppClient::submit_until`] encodes a message (see `pdu`) and hands its
//! segments to the pool (see `pool`), and [`SmppClient::shutdown`] unbinds.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cancel::Ledger;
use super::error::{BoxError, SmppError, Uncertainty};
use super::pdu::{build_submits, OutboundSms};
use super::pool::{self, HotMetrics, Latency};
use super::receipts::shared::{Receipts, SharedTracker};
use super::receipts::tracker::Tracker;
use super::receipts::DeliveryReport;
use super::receipts::SharedDeliveryState;
use super::settings::{BindMode, RouteSettings};
use super::slot::Slot;
use super::{session, TARGET};
use crate::metrics::SmppMetrics;

/// Extra time the outer safety timeout of a submit allows beyond the deadline.
const OUTER_GUARD_SLACK: Duration = Duration::from_millis(20);

/// Outcome of a successful submit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmitReceipt {
    /// SMSC message ids, one per segment, in segment order.
    pub message_ids: Vec<String>,
    /// Number of submit_sm PDUs sent.
    pub segments: usize,
    /// data_coding used (0 = GSM 03.38, 8 = UCS-2).
    pub data_coding: u8,
}

/// State shared between the handles, the submitters and the supervisors.
pub(super) struct Shared {
    pub(super) settings: RouteSettings,
    /// One per configured bind, in configuration order ("first free wins").
    pub(super) slots: Vec<Slot>,
    /// Woken whenever a window slot frees up or a session binds or drops.
    pub(super) changed: Notify,
    /// Cancelled once to ask the supervisors to unbind and stop.
    pub(super) stop: CancellationToken,
    pub(super) metrics: SmppMetrics,
    pub(super) hot: HotMetrics,
    pub(super) tracker: Receipts,
    /// How slowly the SMSC answers, for the "time left for an attempt" rule.
    pub(super) latency: Latency,
}

impl Shared {
    pub(super) fn bound_count(&self) -> usize {
        self.slots.iter().filter(|s| s.can_submit()).count()
    }
}

/// Owned by the handles only, so dropping the last [`SmppClient`] stops the
/// supervisors even without an explicit [`SmppClient::shutdown`].
struct Handles {
    shared: Arc<Shared>,
    supervisors: TaskTracker,
}

impl Drop for Handles {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

/// Handle to one SMSC's session pool; cheap to clone.
#[derive(Clone)]
pub struct SmppClient {
    inner: Arc<Handles>,
}

impl std::fmt::Debug for SmppClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmppClient")
            .field("route", &self.inner.shared.settings.name)
            .field("bound_sessions", &self.bound_sessions())
            .finish_non_exhaustive()
    }
}

impl SmppClient {
    /// Spawns one supervisor per bind (connect → bind → serve, reconnecting with back-off)
    /// and returns immediately, recording into metrics no registry exports.
    ///
    /// Must be called from within a Tokio runtime.
    pub fn start(settings: RouteSettings) -> SmppClient {
        Self::start_with(settings, SmppMetrics::detached(), CancellationToken::new())
    }

    /// Like [`SmppClient::start`], recording into `metrics`; cancelling `stop` (or a parent
    /// of it) unbinds every session.
    pub fn start_with(
        settings: RouteSettings,
        metrics: SmppMetrics,
        stop: CancellationToken,
    ) -> SmppClient {
        Self::start_shared(settings, metrics, stop, None)
    }

    /// Like [`SmppClient::start_with`]; with a `shared` backend, the delivery state of tagged
    /// messages lives there (so a receipt another gateway receives updates it) instead of in
    /// this process.
    pub fn start_shared(
        settings: RouteSettings,
        metrics: SmppMetrics,
        stop: CancellationToken,
        shared: Option<Arc<dyn SharedDeliveryState>>,
    ) -> SmppClient {
        let options = &settings.options;
        let submitters = options.binds.max(1);
        // The receipts-only session comes last, so "first free wins" never meets it.
        let receiver = options.receiver_bind && options.bind_mode == BindMode::Transmitter;
        let binds = submitters + usize::from(receiver);
        let slots = (0..binds)
            .map(|i| Slot::new(i, options, i >= submitters))
            .collect();
        let route = settings.name.as_str();
        metrics
            .binds
            .with_label_values(&[route, "down"])
            .set(i64::try_from(binds).unwrap_or(i64::MAX));
        metrics.binds.with_label_values(&[route, "up"]).set(0);
        let tracker = match shared {
            None => Receipts::Local(Tracker::new(
                options.message_id_format,
                settings.receipt_retention,
                settings.receipt_capacity,
                metrics.clone(),
            )),
            Some(backend) => Receipts::Shared(SharedTracker::new(
                route,
                options.message_id_format,
                settings.receipt_retention,
                backend,
                metrics.clone(),
            )),
        };
        let hot = HotMetrics::new(&metrics, route);
        let shared = Arc::new(Shared {
            settings,
            slots,
            changed: Notify::new(),
            stop,
            metrics,
            hot,
            tracker,
            latency: Latency::default(),
        });
        let supervisors = TaskTracker::new();
        for i in 0..binds {
            supervisors.spawn(session::run(Arc::clone(&shared), i));
        }
        supervisors.close();
        SmppClient {
            inner: Arc::new(Handles {
                shared,
                supervisors,
            }),
        }
    }

    /// Records how long a message this route carried took (measured once, by the router).
    pub(super) fn record_latency(&self, elapsed: Duration) {
        self.inner
            .shared
            .hot
            .submit_latency
            .observe(elapsed.as_secs_f64());
    }

    /// The route's name.
    pub fn name(&self) -> &str {
        &self.inner.shared.settings.name
    }

    /// E.164 prefixes the route serves (empty: every number).
    pub fn prefixes(&self) -> &[String] {
        &self.inner.shared.settings.prefixes
    }

    /// The route's priority (lower is tried first).
    pub fn priority(&self) -> u32 {
        self.inner.shared.settings.priority
    }

    /// Whether at least one session is currently bound.
    pub fn is_bound(&self) -> bool {
        self.inner.shared.slots.iter().any(Slot::can_submit)
    }

    /// Number of submit sessions currently bound (the receipts-only session
    /// of `receiver_bind` is not counted).
    pub fn bound_sessions(&self) -> usize {
        self.inner.shared.bound_count()
    }

    /// Waits up to `timeout` until at least one session is bound; returns
    /// whether one is.
    pub async fn wait_bound(&self, timeout: Duration) -> bool {
        self.wait_bound_sessions(1, timeout).await
    }

    /// Waits up to `timeout` until at least `n` sessions are bound.
    pub async fn wait_bound_sessions(&self, n: usize, timeout: Duration) -> bool {
        let shared = &self.inner.shared;
        let until = Instant::now() + timeout;
        loop {
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if shared.bound_count() >= n {
                return true;
            }
            if tokio::time::timeout_at(until, changed).await.is_err() {
                return shared.bound_count() >= n;
            }
        }
    }

    /// Submits every segment of `sms` and waits for all submit_sm_resps.
    ///
    /// The call never takes longer than `submit_timeout`; without a bound
    /// session it fails with [`SmppError::NotBound`] after at most a short
    /// grace period for a bind in progress.
    pub async fn submit(&self, sms: OutboundSms) -> Result<SubmitReceipt, SmppError> {
        self.submit_tagged(sms, None).await
    }

    /// Like [`SmppClient::submit`]; with a `tag`, the message's delivery
    /// receipts are tracked and readable with [`SmppClient::delivery_report`].
    pub async fn submit_tagged(
        &self,
        sms: OutboundSms,
        tag: Option<&str>,
    ) -> Result<SubmitReceipt, SmppError> {
        let deadline = Instant::now() + self.submit_timeout();
        self.submit_until(sms, tag, deadline).await
    }

    /// The configured `submit_timeout`.
    pub fn submit_timeout(&self) -> Duration {
        self.inner.shared.settings.options.submit_timeout
    }

    /// Like [`SmppClient::submit_tagged`] with an explicit deadline (the
    /// router shares one deadline across failover).
    pub async fn submit_until(
        &self,
        sms: OutboundSms,
        tag: Option<&str>,
        deadline: Instant,
    ) -> Result<SubmitReceipt, SmppError> {
        let settle = Ledger::new(tag, &sms.destination).settle_on_drop();
        let result = self.submit_in(sms, tag, deadline, settle.ledger()).await;
        settle.settle(matches!(result, Err(SmppError::MayHold { .. })));
        result
    }

    /// Like [`SmppClient::submit_until`], for a message whose `ledger` the caller settles once
    /// its outcome is final (the router, after failover).
    pub(super) async fn submit_in(
        &self,
        sms: OutboundSms,
        tag: Option<&str>,
        deadline: Instant,
        ledger: &std::sync::Arc<Ledger>,
    ) -> Result<SubmitReceipt, SmppError> {
        let shared = &self.inner.shared;
        let started = Instant::now();
        let (encoded, submits) = build_submits(&shared.settings.options, &sms)?;
        // Each stage honours `deadline` itself and reports its own error
        // (NotBound / Busy / MayHold); this outer guard only catches stalls.
        let guard = deadline + OUTER_GUARD_SLACK;
        let message_ids =
            match tokio::time::timeout_at(guard, pool::submit(shared, &submits, deadline, ledger))
                .await
            {
                Ok(result) => result?,
                // No submit_sm went out: the SMSC holds nothing, "may hold" would be wrong.
                Err(_) if !ledger.was_sent() => return Err(SmppError::Busy),
                Err(_) => {
                    return Err(SmppError::MayHold {
                        why: Uncertainty::NoResponse {
                            after: shared.settings.options.submit_timeout,
                        },
                        cause: None,
                    })
                }
            };
        if let Some(tag) = tag {
            shared.tracker.file(
                tag,
                &sms.destination,
                &shared.settings.name,
                &message_ids,
                started,
            );
        }
        tracing::debug!(
            target: TARGET,
            destination = %sms.destination.masked(),
            segments = message_ids.len(),
            data_coding = encoded.data_coding,
            message_ids = ?message_ids,
            "message submitted"
        );
        Ok(SubmitReceipt {
            segments: message_ids.len(),
            message_ids,
            data_coding: encoded.data_coding,
        })
    }

    /// Delivery state of the message submitted with `tag`, while kept in this process (always
    /// `None` with a shared backend: use [`SmppClient::lookup_report`]).
    pub fn delivery_report(&self, tag: &str) -> Option<DeliveryReport> {
        self.inner.shared.tracker.report(tag)
    }

    /// Delivery state of the message submitted with `tag`, wherever it is kept; an error when
    /// the shared backend cannot answer.
    pub async fn lookup_report(&self, tag: &str) -> Result<Option<DeliveryReport>, BoxError> {
        self.inner.shared.tracker.lookup(tag).await
    }

    /// Only the aggregate delivery state of `tag` (cheaper than [`Self::lookup_report`]).
    pub async fn lookup_state(&self, tag: &str) -> Result<Option<super::DeliveryState>, BoxError> {
        self.inner.shared.tracker.lookup_state(tag).await
    }

    #[cfg(test)]
    pub(super) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Unbinds every session (waiting briefly for unbind_resp), closes them
    /// and stops reconnecting. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shared.stop.cancel();
        if tokio::time::timeout(session::SHUTDOWN_WAIT, self.inner.supervisors.wait())
            .await
            .is_err()
        {
            tracing::warn!(target: TARGET, route = %self.name(), "SMPP supervisors did not stop in time");
        }
    }
}
