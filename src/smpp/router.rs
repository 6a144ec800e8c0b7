//! Several SMSCs (`[[smpp.routes]]`): each route is its own session pool
//! ([`SmppClient`]); a message goes to the routes whose prefixes match its
//! destination, best priority first, and fails over to the next one when a
//! route has no bound session.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{DeliveryReport, OutboundSms, SmppClient, SmppError, SubmitReceipt, TARGET};

/// Whether another SMSC may take a message this error left unsent: service
/// trouble on this route, not a verdict on the number or the text.
fn fails_over(e: &SmppError) -> bool {
    match e {
        SmppError::NotBound
        | SmppError::Busy
        | SmppError::Throttled { .. }
        | SmppError::Timeout { .. }
        | SmppError::Connection(_) => true,
        SmppError::Rejected { command_status } => *command_status == super::status::SYSERR,
        SmppError::NotAllowed { .. }
        | SmppError::Blocked { .. }
        | SmppError::NoRoute
        | SmppError::Encoding(_) => false,
    }
}

/// One SMSC and the numbers it serves.
pub struct Route {
    /// Name used in logs and metric labels.
    pub name: String,
    /// E.164 prefixes (`+` and digits) this route serves; empty serves every number.
    pub prefixes: Vec<String>,
    /// Lower is tried first.
    pub priority: u32,
    /// The route's session pool.
    pub client: SmppClient,
}

impl Route {
    /// Length of the longest matching prefix, `Some(0)` for a catch-all route.
    fn matches(&self, destination: &str) -> Option<usize> {
        if self.prefixes.is_empty() {
            return Some(0);
        }
        self.prefixes
            .iter()
            .filter(|p| destination.starts_with(p.as_str()))
            .map(String::len)
            .max()
    }
}

/// Routes messages over one or more SMSCs; cheap to clone.
#[derive(Clone)]
pub struct SmppRouter {
    routes: Arc<Vec<Route>>,
}

impl std::fmt::Debug for SmppRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.routes
                    .iter()
                    .map(|r| (&r.name, r.client.bound_sessions())),
            )
            .finish()
    }
}

impl SmppRouter {
    /// A router over `routes` (order breaks priority ties).
    pub fn new(routes: Vec<Route>) -> SmppRouter {
        SmppRouter {
            routes: Arc::new(routes),
        }
    }

    /// A router with one catch-all route.
    pub fn single(name: &str, client: SmppClient) -> SmppRouter {
        SmppRouter::new(vec![Route {
            name: name.to_owned(),
            prefixes: Vec::new(),
            priority: 0,
            client,
        }])
    }

    /// The routes, in configuration order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Routes serving `destination`: best priority first, then the longest
    /// matching prefix, then configuration order.
    fn candidates(&self, destination: &str) -> Vec<&Route> {
        let mut c: Vec<(usize, usize, &Route)> = self
            .routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.matches(destination).map(|len| (i, len, r)))
            .collect();
        c.sort_by_key(|(i, len, r)| (r.priority, std::cmp::Reverse(*len), *i));
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
    ) -> Result<SubmitReceipt, SmppError> {
        let candidates = self.candidates(&sms.destination);
        let Some(first) = candidates.first() else {
            return Err(SmppError::NoRoute);
        };
        let deadline = Instant::now() + first.client.submit_timeout();
        let mut last = SmppError::NotBound;
        // A route that may have taken the message (no answer in time) makes the final outcome
        // unknown, whatever the later routes say.
        let mut uncertain: Option<SmppError> = None;
        // Bound routes first; a route that is only (re)connecting comes last.
        let (bound, unbound): (Vec<&Route>, Vec<&Route>) =
            candidates.iter().partition(|r| r.client.is_bound());
        let mut shares_left = bound.len().max(1);
        for route in bound.into_iter().chain(unbound) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let share = (deadline - now) / u32::try_from(shares_left).unwrap_or(u32::MAX);
            shares_left = shares_left.saturating_sub(1).max(1);
            match route
                .client
                .submit_until(sms.clone(), tag, now + share)
                .await
            {
                Ok(receipt) => return Ok(receipt),
                Err(e) if fails_over(&e) => {
                    tracing::debug!(target: TARGET, route = %route.name, error = %e, "failing over to the next route");
                    if matches!(e, SmppError::Timeout { .. }) {
                        uncertain = Some(e);
                    } else {
                        last = e;
                    }
                }
                Err(e) => return Err(uncertain.unwrap_or(e)),
            }
        }
        Err(uncertain.unwrap_or(last))
    }

    /// Whether any route has a bound session.
    pub fn is_bound(&self) -> bool {
        self.routes.iter().any(|r| r.client.is_bound())
    }

    /// Waits up to `timeout` until every route has at least one bound session.
    pub async fn wait_bound(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        for r in self.routes.iter() {
            let left = until.saturating_duration_since(Instant::now());
            if !r.client.wait_bound(left).await {
                return false;
            }
        }
        true
    }

    /// The delivery report of `tag` from whichever route carried it.
    pub fn delivery_report(&self, tag: &str) -> Option<DeliveryReport> {
        self.routes
            .iter()
            .find_map(|r| r.client.delivery_report(tag))
    }

    /// Unbinds every route.
    pub async fn shutdown(&self) {
        futures::future::join_all(self.routes.iter().map(|r| r.client.shutdown())).await;
    }
}
