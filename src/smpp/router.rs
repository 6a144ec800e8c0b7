//! Several SMSCs (`[[smpp.routes]]`): each route is its own session pool
//! ([`SmppClient`]); a message goes to the routes whose prefixes match its
//! destination, best priority first, and fails over to the next one when a
//! route has no bound session.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{DeliveryReport, OutboundSms, SmppClient, SmppError, SubmitReceipt, TARGET};

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

    /// Submits on the first serving route with a bound session, failing over
    /// while routes turn out to have none; the whole call stays within the
    /// first route's `submit_timeout`.
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
        // Bound routes first; a route that is only (re)connecting comes last.
        let (bound, unbound): (Vec<&Route>, Vec<&Route>) =
            candidates.iter().partition(|r| r.client.is_bound());
        for route in bound.into_iter().chain(unbound) {
            if Instant::now() >= deadline {
                break;
            }
            match route.client.submit_until(sms.clone(), tag, deadline).await {
                Err(SmppError::NotBound) => {
                    tracing::debug!(target: TARGET, route = %route.name, "route has no bound session; failing over");
                    last = SmppError::NotBound;
                }
                other => return other,
            }
        }
        Err(last)
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
