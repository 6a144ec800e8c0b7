//! Several SMSCs (`[[smpp.routes]]`): each route is its own session pool
//! ([`SmppClient`]); a message goes to the routes whose prefixes match its
//! destination, best priority first, and fails over to the next one when a
//! route cannot take it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::cancel::Ledger;
use super::client::{SmppClient, SubmitReceipt};
use super::error::{status, BoxError, SmppError};
use super::pdu::OutboundSms;
use super::receipts::{DeliveryReport, SharedDeliveryState};
use super::settings::RouteSettings;
use super::TARGET;
use crate::metrics::SmppMetrics;

/// Whether another SMSC may take a message this error left unsent: service
/// trouble on this route, not a verdict on the number or the text. A route that
/// may hold the message still fails over (the deadline is shared), but the final
/// answer stays "unknown".
fn fails_over(e: &SmppError) -> bool {
    match e {
        SmppError::NotBound
        | SmppError::Busy
        | SmppError::Throttled { .. }
        | SmppError::MayHold { .. }
        | SmppError::Connection(_) => true,
        SmppError::Rejected { command_status } => *command_status == status::SYSERR,
        SmppError::NotAllowed { .. }
        | SmppError::Blocked { .. }
        | SmppError::NoRoute
        | SmppError::Encoding { .. } => false,
    }
}

/// A failed submit and the route that gave the final answer (none when no route serves
/// the destination), so the log can say which SMSC failed.
#[derive(Debug, thiserror::Error)]
#[error("SMPP route {}", route.as_deref().unwrap_or("(none)"))]
pub struct RoutedError {
    /// The route whose answer decided the outcome.
    pub route: Option<String>,
    /// What went wrong.
    #[source]
    pub error: SmppError,
}

/// A successful submit and the route that carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutedReceipt {
    /// The route's name.
    pub route: String,
    /// What the SMSC answered.
    pub receipt: SubmitReceipt,
}

/// Length of the longest prefix of `prefixes` that `destination` starts with, `Some(0)` for a
/// catch-all route.
fn matches(prefixes: &[String], destination: &str) -> Option<usize> {
    if prefixes.is_empty() {
        return Some(0);
    }
    prefixes
        .iter()
        .filter(|p| destination.starts_with(p.as_str()))
        .map(String::len)
        .max()
}

/// Routes messages over one or more SMSCs; cheap to clone.
#[derive(Clone)]
pub struct SmppRouter {
    routes: Arc<Vec<SmppClient>>,
    metrics: SmppMetrics,
}

impl std::fmt::Debug for SmppRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.routes.iter().map(|r| (r.name(), r.bound_sessions())))
            .finish()
    }
}

impl SmppRouter {
    /// Starts one session pool per route, in configuration order (which breaks priority ties).
    pub fn start(
        routes: Vec<RouteSettings>,
        metrics: &SmppMetrics,
        stop: &CancellationToken,
    ) -> SmppRouter {
        Self::start_shared(routes, metrics, stop, None)
    }

    /// Like [`SmppRouter::start`]; with a `shared` backend, every route keeps the delivery
    /// state of tagged messages there (see [`SmppClient::start_shared`]).
    pub fn start_shared(
        routes: Vec<RouteSettings>,
        metrics: &SmppMetrics,
        stop: &CancellationToken,
        shared: Option<Arc<dyn SharedDeliveryState>>,
    ) -> SmppRouter {
        let clients = routes
            .into_iter()
            .map(|r| {
                SmppClient::start_shared(r, metrics.clone(), stop.child_token(), shared.clone())
            })
            .collect();
        SmppRouter {
            routes: Arc::new(clients),
            metrics: metrics.clone(),
        }
    }

    /// A router over running pools (order breaks priority ties), recording into metrics no
    /// registry exports.
    pub fn new(routes: Vec<SmppClient>) -> SmppRouter {
        SmppRouter {
            routes: Arc::new(routes),
            metrics: SmppMetrics::detached(),
        }
    }

    /// The routes, in configuration order.
    pub fn routes(&self) -> &[SmppClient] {
        &self.routes
    }

    /// Routes serving `destination`: best priority first, then the longest
    /// matching prefix, then configuration order.
    fn candidates(&self, destination: &str) -> Vec<&SmppClient> {
        let mut c: Vec<(usize, usize, &SmppClient)> = self
            .routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| matches(r.prefixes(), destination).map(|len| (i, len, r)))
            .collect();
        c.sort_by_key(|(i, len, r)| (r.priority(), std::cmp::Reverse(*len), *i));
        c.into_iter().map(|(_, _, r)| r).collect()
    }

    /// Submits on the first serving route with a bound session. A route
    /// without a bound session is skipped; a route that cannot take the
    /// message in its share of the time (no free window, still throttled,
    /// ESME_RSYSERR, no answer, broken session) hands it to the next one.
    /// Each bound route gets an equal share of what is left of the first
    /// route's `submit_timeout`, so the whole call stays within it.
    pub async fn submit_tagged(
        &self,
        sms: OutboundSms,
        tag: Option<&str>,
    ) -> Result<RoutedReceipt, RoutedError> {
        // Measured here only: the whole call, and per route the one that carried the message.
        let started = Instant::now();
        // One ledger across every route: a late acceptance is cancelled only when the whole
        // call answers "may hold".
        let settle = Ledger::new(tag, &sms.destination).settle_on_drop();
        let result = self.submit_routed(sms, tag, settle.ledger()).await;
        settle.settle(matches!(
            result,
            Err(RoutedError {
                error: SmppError::MayHold { .. },
                ..
            })
        ));
        let elapsed = started.elapsed();
        self.metrics.submit_duration.observe(elapsed.as_secs_f64());
        if let Ok(sent) = &result {
            if let Some(route) = self.routes.iter().find(|r| r.name() == sent.route) {
                route.record_latency(elapsed);
            }
        }
        result
    }

    async fn submit_routed(
        &self,
        sms: OutboundSms,
        tag: Option<&str>,
        ledger: &Arc<Ledger>,
    ) -> Result<RoutedReceipt, RoutedError> {
        let candidates = self.candidates(sms.destination.as_e164());
        let Some(first) = candidates.first() else {
            return Err(RoutedError {
                route: None,
                error: SmppError::NoRoute,
            });
        };
        let deadline = Instant::now() + first.submit_timeout();
        let mut last = RoutedError {
            route: Some(first.name().to_owned()),
            error: SmppError::NotBound,
        };
        // A route that may have taken the message makes the final outcome unknown, whatever
        // the later routes say.
        let mut uncertain: Option<RoutedError> = None;
        // Bound routes first; a route that is only (re)connecting comes last.
        let (bound, unbound): (Vec<&SmppClient>, Vec<&SmppClient>) =
            candidates.iter().partition(|r| r.is_bound());
        let mut shares_left = bound.len().max(1);
        for route in bound.into_iter().chain(unbound) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let share = (deadline - now) / u32::try_from(shares_left).unwrap_or(u32::MAX);
            shares_left = shares_left.saturating_sub(1).max(1);
            let failed = |error| RoutedError {
                route: Some(route.name().to_owned()),
                error,
            };
            match route.submit_in(sms.clone(), tag, now + share, ledger).await {
                Ok(receipt) => {
                    return Ok(RoutedReceipt {
                        route: route.name().to_owned(),
                        receipt,
                    })
                }
                Err(e) if fails_over(&e) => {
                    tracing::debug!(target: TARGET, route = %route.name(), error = %e, "failing over to the next route");
                    if matches!(e, SmppError::MayHold { .. }) {
                        uncertain = Some(failed(e));
                    } else {
                        last = failed(e);
                    }
                }
                Err(e) => return Err(uncertain.unwrap_or(failed(e))),
            }
        }
        Err(uncertain.unwrap_or(last))
    }

    /// Whether any route has a bound session.
    pub fn is_bound(&self) -> bool {
        self.routes.iter().any(SmppClient::is_bound)
    }

    /// Waits up to `timeout` until every route has at least one bound session.
    pub async fn wait_bound(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        for r in self.routes.iter() {
            let left = until.saturating_duration_since(Instant::now());
            if !r.wait_bound(left).await {
                return false;
            }
        }
        true
    }

    /// The delivery report of `tag` from whichever route carried it (in-process state only).
    pub fn delivery_report(&self, tag: &str) -> Option<DeliveryReport> {
        self.routes.iter().find_map(|r| r.delivery_report(tag))
    }

    /// The delivery report of `tag` from whichever route carried it, wherever it is kept (one
    /// backend call per route with a shared backend, in configuration order).
    pub async fn lookup_report(&self, tag: &str) -> Result<Option<DeliveryReport>, BoxError> {
        for route in self.routes.iter() {
            if let Some(report) = route.lookup_report(tag).await? {
                return Ok(Some(report));
            }
        }
        Ok(None)
    }

    /// Only the aggregate delivery state of `tag`, from the first route that knows it.
    pub async fn lookup_state(&self, tag: &str) -> Result<Option<super::DeliveryState>, BoxError> {
        for route in self.routes.iter() {
            if let Some(state) = route.lookup_state(tag).await? {
                return Ok(Some(state));
            }
        }
        Ok(None)
    }

    /// Unbinds every route.
    pub async fn shutdown(&self) {
        futures::future::join_all(self.routes.iter().map(SmppClient::shutdown)).await;
    }
}
