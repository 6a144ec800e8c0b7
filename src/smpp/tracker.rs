//! Correlates delivery receipts with submitted segments and keeps the
//! delivery state of each tagged message (the gateway tags with the
//! authenticationId) for as long as its challenge lives.
//!
//! Receipts can overtake their submit_sm_resp (the deliver_sm is read
//! before the response is handed to the submitter), so a receipt without a
//! filed id waits briefly as an "orphan" and is applied when the id is
//! filed. Filing and matching run under one lock so neither order loses it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use moka::sync::Cache;
use tokio::time::Instant;

use super::receipt::{receipt_keys, response_key, DeliveryState, MessageIdFormat, Receipt};
use super::{mask_number, TARGET};
use crate::metrics::SmppMetrics;

/// How long a receipt waits for its submit_sm_resp to be filed.
const ORPHAN_TTL: Duration = Duration::from_secs(60);
/// Orphan receipts kept at most.
const MAX_ORPHANS: u64 = 10_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Delivery state of one segment.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentReport {
    /// SMSC message id from submit_sm_resp.
    pub message_id: String,
    /// Latest reported state.
    pub state: DeliveryState,
    /// `err:` of the receipt, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the receipt arrived (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_at: Option<String>,
}

/// Delivery state of one tagged message; never contains the text.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryReport {
    /// The tag (authenticationId).
    pub authentication_id: String,
    /// Masked destination.
    pub phone_number: String,
    /// Route (SMSC) name.
    pub route: String,
    /// Aggregate: `submitted` until every segment has a final receipt, then
    /// `delivered` if all were delivered, else the first failure's state.
    pub state: DeliveryState,
    /// One entry per segment, in order.
    pub segments: Vec<SegmentReport>,
    /// When the SMSC acknowledged the message (RFC 3339).
    pub submitted_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl DeliveryReport {
    fn aggregate(&mut self) {
        let states: Vec<DeliveryState> = self.segments.iter().map(|s| s.state).collect();
        self.state = if states.iter().any(|s| !s.is_final()) {
            if states.contains(&DeliveryState::Enroute) {
                DeliveryState::Enroute
            } else {
                DeliveryState::Submitted
            }
        } else {
            states
                .iter()
                .copied()
                .find(|s| *s != DeliveryState::Delivered)
                .unwrap_or(DeliveryState::Delivered)
        };
    }
}

#[derive(Clone)]
struct Filed {
    tag: String,
    segment: usize,
    submitted: Instant,
}

/// See the module docs.
pub(super) struct Tracker {
    format: MessageIdFormat,
    filed: Cache<String, Filed>,
    orphans: Cache<String, Receipt>,
    reports: Cache<String, Arc<Mutex<DeliveryReport>>>,
    guard: Mutex<()>,
    metrics: Option<SmppMetrics>,
}

impl Tracker {
    pub(super) fn new(
        format: MessageIdFormat,
        retention: Duration,
        capacity: u64,
        metrics: Option<SmppMetrics>,
    ) -> Tracker {
        let retention = retention.max(Duration::from_secs(1));
        Tracker {
            format,
            filed: Cache::builder()
                .max_capacity(capacity.saturating_mul(2))
                .time_to_live(retention)
                .build(),
            orphans: Cache::builder()
                .max_capacity(MAX_ORPHANS)
                .time_to_live(ORPHAN_TTL)
                .build(),
            reports: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(retention)
                .build(),
            guard: Mutex::new(()),
            metrics,
        }
    }

    /// Files the acknowledged segments of a tagged message.
    pub(super) fn file(
        &self,
        tag: &str,
        destination: &str,
        route: &str,
        ids: &[String],
        submitted: Instant,
    ) {
        let now = rfc3339(SystemTime::now());
        let report = Arc::new(Mutex::new(DeliveryReport {
            authentication_id: tag.to_owned(),
            phone_number: mask_number(destination),
            route: route.to_owned(),
            state: DeliveryState::Submitted,
            segments: ids
                .iter()
                .map(|id| SegmentReport {
                    message_id: id.clone(),
                    state: DeliveryState::Submitted,
                    error: None,
                    receipt_at: None,
                })
                .collect(),
            submitted_at: now.clone(),
            updated_at: now,
        }));
        self.reports.insert(tag.to_owned(), Arc::clone(&report));
        let _g = lock(&self.guard);
        for (segment, id) in ids.iter().enumerate() {
            let key = response_key(id, self.format);
            let filed = Filed {
                tag: tag.to_owned(),
                segment,
                submitted,
            };
            match self.orphans.remove(&key) {
                Some(receipt) => {
                    self.apply(&report, &filed, &receipt);
                    if !receipt.state.is_final() {
                        self.filed.insert(key, filed);
                    }
                }
                None => self.filed.insert(key, filed),
            }
        }
    }

    /// Applies a receipt read from a deliver_sm.
    pub(super) fn on_receipt(&self, receipt: Receipt) {
        let keys = receipt_keys(&receipt.message_id, self.format);
        let _g = lock(&self.guard);
        let found = keys
            .iter()
            .find_map(|k| self.filed.get(k).map(|f| (k.clone(), f)));
        match found {
            Some((key, filed)) => {
                if receipt.state.is_final() {
                    self.filed.invalidate(&key);
                }
                if let Some(report) = self.reports.get(&filed.tag) {
                    self.apply(&report, &filed, &receipt);
                }
            }
            None => {
                tracing::debug!(
                    target: TARGET,
                    receipt_id = %receipt.message_id,
                    "receipt for an id not (yet) filed; keeping it briefly"
                );
                for key in keys {
                    self.orphans.insert(key, receipt.clone());
                }
            }
        }
    }

    fn apply(&self, report: &Mutex<DeliveryReport>, filed: &Filed, receipt: &Receipt) {
        let mut r = lock(report);
        let now = rfc3339(SystemTime::now());
        let Some(segment) = r.segments.get_mut(filed.segment) else {
            return;
        };
        segment.state = receipt.state;
        segment.error.clone_from(&receipt.error);
        segment.receipt_at = Some(now.clone());
        r.updated_at = now;
        r.aggregate();
        if receipt.state.is_final() {
            if let Some(m) = &self.metrics {
                m.receipts.with_label_values(&[receipt.state.label()]).inc();
                m.receipt_latency
                    .observe(filed.submitted.elapsed().as_secs_f64());
            }
        }
        tracing::debug!(
            target: TARGET,
            receipt_id = %receipt.message_id,
            segment = filed.segment,
            state = receipt.state.label(),
            "delivery receipt"
        );
    }

    /// The delivery report of `tag`, if it is still kept.
    pub(super) fn report(&self, tag: &str) -> Option<DeliveryReport> {
        self.reports.get(tag).map(|r| lock(&r).clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn receipt(id: &str, state: DeliveryState) -> Receipt {
        Receipt {
            message_id: id.into(),
            state,
            error: None,
        }
    }

    #[tokio::test]
    async fn receipts_per_segment_in_either_order() {
        let metrics = SmppMetrics::new().unwrap();
        let t = Tracker::new(
            MessageIdFormat::Auto,
            Duration::from_secs(60),
            100,
            Some(metrics.clone()),
        );
        // Segment 2's receipt overtakes the submit_sm_resp (decimal id).
        t.on_receipt(receipt(&0xB2u32.to_string(), DeliveryState::Delivered));
        t.file(
            "auth-1",
            "+34600000001",
            "default",
            &["00000000B1".into(), "00000000B2".into()],
            Instant::now(),
        );
        let r = t.report("auth-1").unwrap();
        assert_eq!(r.phone_number, "+346******01");
        assert_eq!(r.segments[1].state, DeliveryState::Delivered);
        assert_eq!(r.state, DeliveryState::Submitted);
        t.on_receipt(receipt("B1", DeliveryState::Enroute));
        assert_eq!(t.report("auth-1").unwrap().state, DeliveryState::Enroute);
        t.on_receipt(receipt("b1", DeliveryState::Undeliverable));
        let r = t.report("auth-1").unwrap();
        assert_eq!(r.state, DeliveryState::Undeliverable);
        assert!(r.segments.iter().all(|s| s.receipt_at.is_some()));
        assert_eq!(metrics.receipts.with_label_values(&["delivered"]).get(), 1);
        assert_eq!(metrics.receipt_latency.get_sample_count(), 2);
        assert!(t.report("unknown").is_none());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["segments"][0]["messageId"], "00000000B1");
        assert_eq!(json["state"], "undeliverable");
    }
}
