//! Correlates delivery receipts with submitted segments and keeps the
//! delivery state of each tagged message (the tag is opaque here: the caller
//! chooses it and reads the state back with it) for the configured retention.
//!
//! Receipts can overtake their submit_sm_resp (the deliver_sm is read
//! before the response is handed to the submitter), so a receipt without a
//! filed id waits briefly as an "orphan" and is applied when the id is
//! filed. Filing and matching run under one lock so neither order loses it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use moka::sync::Cache;
use tokio::time::Instant;

use super::parse::{receipt_keys, response_key, DeliveryState, MessageIdFormat, Receipt};
use crate::domain::PhoneNumber;
use crate::metrics::SmppMetrics;
use crate::smpp::TARGET;
use crate::sync::lock;

/// How long a receipt waits for its submit_sm_resp to be filed.
const ORPHAN_TTL: Duration = Duration::from_secs(60);
/// Orphan receipts kept at most.
const MAX_ORPHANS: u64 = 10_000;

pub(super) fn rfc3339(t: SystemTime) -> String {
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
    /// The tag the message was submitted with (not serialised: the caller names it).
    #[serde(skip)]
    pub tag: String,
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

/// What is kept per tag; formatted into a [`DeliveryReport`] only when read,
/// so the send path does no date formatting.
struct Entry {
    tag: String,
    destination: PhoneNumber,
    route: String,
    state: DeliveryState,
    segments: Vec<SegmentEntry>,
    submitted_at: SystemTime,
    updated_at: SystemTime,
}

struct SegmentEntry {
    message_id: String,
    state: DeliveryState,
    error: Option<String>,
    receipt_at: Option<SystemTime>,
}

impl Entry {
    fn report(&self) -> DeliveryReport {
        DeliveryReport {
            tag: self.tag.clone(),
            phone_number: self.destination.masked(),
            route: self.route.clone(),
            state: self.state,
            segments: self
                .segments
                .iter()
                .map(|s| SegmentReport {
                    message_id: s.message_id.clone(),
                    state: s.state,
                    error: s.error.clone(),
                    receipt_at: s.receipt_at.map(rfc3339),
                })
                .collect(),
            submitted_at: rfc3339(self.submitted_at),
            updated_at: rfc3339(self.updated_at),
        }
    }

    fn aggregate(&mut self) {
        self.state = DeliveryState::aggregate(self.segments.iter().map(|s| s.state));
    }
}

#[derive(Clone)]
struct Filed {
    tag: String,
    segment: usize,
    submitted: Instant,
}

/// A map whose entries expire after a fixed time, bounded in size. Every
/// access already runs under the tracker's one lock, so a plain `HashMap`
/// with an insertion-ordered expiry queue is cheaper than a concurrent cache.
struct Expiring<V> {
    ttl: Duration,
    max: usize,
    map: std::collections::HashMap<String, (Instant, V)>,
    order: std::collections::VecDeque<(Instant, String)>,
}

impl<V> Expiring<V> {
    fn new(ttl: Duration, max: usize) -> Self {
        Expiring {
            ttl,
            max: max.max(1),
            map: std::collections::HashMap::new(),
            order: std::collections::VecDeque::new(),
        }
    }

    /// Drops expired entries and, past the size bound, the oldest ones.
    fn purge(&mut self, now: Instant) {
        while let Some((at, key)) = self.order.front() {
            let expired = *at + self.ttl <= now;
            if !expired && self.map.len() < self.max && self.order.len() < self.max * 2 {
                break;
            }
            // Only remove the map entry if it is still the one this queue
            // slot was created for (a key may have been re-inserted).
            if self.map.get(key).is_some_and(|(t, _)| t == at) {
                self.map.remove(key);
            }
            self.order.pop_front();
        }
    }

    fn insert(&mut self, key: String, value: V) {
        let now = Instant::now();
        self.purge(now);
        self.order.push_back((now, key.clone()));
        self.map.insert(key, (now, value));
    }

    fn get(&self, key: &str) -> Option<&V> {
        self.map
            .get(key)
            .filter(|(at, _)| *at + self.ttl > Instant::now())
            .map(|(_, v)| v)
    }

    fn remove(&mut self, key: &str) -> Option<V> {
        let (at, v) = self.map.remove(key)?;
        (at + self.ttl > Instant::now()).then_some(v)
    }
}

/// Filed ids and orphan receipts, changed together under one lock.
struct Correlation {
    filed: Expiring<Filed>,
    orphans: Expiring<Receipt>,
}

/// See the module docs.
pub(in crate::smpp) struct Tracker {
    format: MessageIdFormat,
    correlation: Mutex<Correlation>,
    reports: Cache<String, Arc<Mutex<Entry>>>,
    metrics: SmppMetrics,
}

impl Tracker {
    pub(in crate::smpp) fn new(
        format: MessageIdFormat,
        retention: Duration,
        capacity: u64,
        metrics: SmppMetrics,
    ) -> Tracker {
        let retention = retention.max(Duration::from_secs(1));
        // Reports are read from the admin listener concurrently with sends,
        // so they stay in a concurrent cache.
        Tracker {
            format,
            correlation: Mutex::new(Correlation {
                filed: Expiring::new(
                    retention,
                    usize::try_from(capacity.saturating_mul(2)).unwrap_or(usize::MAX),
                ),
                orphans: Expiring::new(
                    ORPHAN_TTL,
                    usize::try_from(MAX_ORPHANS).unwrap_or(usize::MAX),
                ),
            }),
            reports: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(retention)
                .build(),
            metrics,
        }
    }

    /// Files the acknowledged segments of a tagged message.
    pub(in crate::smpp) fn file(
        &self,
        tag: &str,
        destination: &PhoneNumber,
        route: &str,
        ids: &[String],
        submitted: Instant,
    ) {
        let now = SystemTime::now();
        let report = Arc::new(Mutex::new(Entry {
            tag: tag.to_owned(),
            destination: destination.clone(),
            route: route.to_owned(),
            state: DeliveryState::Submitted,
            segments: ids
                .iter()
                .map(|id| SegmentEntry {
                    message_id: id.clone(),
                    state: DeliveryState::Submitted,
                    error: None,
                    receipt_at: None,
                })
                .collect(),
            submitted_at: now,
            updated_at: now,
        }));
        self.reports.insert(tag.to_owned(), Arc::clone(&report));
        let mut c = lock(&self.correlation);
        for (segment, id) in ids.iter().enumerate() {
            let key = response_key(id, self.format);
            let filed = Filed {
                tag: tag.to_owned(),
                segment,
                submitted,
            };
            match c.orphans.remove(&key) {
                Some(receipt) => {
                    self.apply(&report, &filed, &receipt);
                    if !receipt.state.is_final() {
                        c.filed.insert(key, filed);
                    }
                }
                None => c.filed.insert(key, filed),
            }
        }
    }

    /// Files one segment the SMSC accepted after its submit answered "may hold": the entry of
    /// `tag` is created if the message had none, and receipts for the segment still apply.
    pub(in crate::smpp) fn file_late(
        &self,
        tag: &str,
        destination: &PhoneNumber,
        route: &str,
        id: &str,
    ) {
        let now = SystemTime::now();
        let report = self.reports.get_with(tag.to_owned(), || {
            Arc::new(Mutex::new(Entry {
                tag: tag.to_owned(),
                destination: destination.clone(),
                route: route.to_owned(),
                state: DeliveryState::Submitted,
                segments: Vec::new(),
                submitted_at: now,
                updated_at: now,
            }))
        });
        let segment = {
            let mut r = lock(&report);
            r.segments.push(SegmentEntry {
                message_id: id.to_owned(),
                state: DeliveryState::Submitted,
                error: None,
                receipt_at: None,
            });
            r.updated_at = now;
            r.aggregate();
            r.segments.len() - 1
        };
        let key = response_key(id, self.format);
        let filed = Filed {
            tag: tag.to_owned(),
            segment,
            submitted: Instant::now(),
        };
        let mut c = lock(&self.correlation);
        match c.orphans.remove(&key) {
            Some(receipt) => self.apply(&report, &filed, &receipt),
            None => c.filed.insert(key, filed),
        }
    }

    /// The segment `id` of `tag` was deleted with cancel_sm: no receipt will come for it.
    pub(in crate::smpp) fn cancelled(&self, tag: &str, id: &str) {
        lock(&self.correlation)
            .filed
            .remove(&response_key(id, self.format));
        let Some(report) = self.reports.get(tag) else {
            return;
        };
        let mut r = lock(&report);
        if let Some(segment) = r.segments.iter_mut().find(|s| s.message_id == id) {
            segment.state = DeliveryState::Cancelled;
            r.updated_at = SystemTime::now();
            r.aggregate();
        }
    }

    /// Applies a receipt read from a deliver_sm.
    pub(in crate::smpp) fn on_receipt(&self, receipt: Receipt) {
        let keys = receipt_keys(&receipt.message_id, self.format);
        let mut c = lock(&self.correlation);
        let found = keys
            .iter()
            .find_map(|k| c.filed.get(k).map(|f| (k.clone(), f.clone())));
        match found {
            Some((key, filed)) => {
                if receipt.state.is_final() {
                    c.filed.remove(&key);
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
                    c.orphans.insert(key, receipt.clone());
                }
            }
        }
    }

    fn apply(&self, report: &Mutex<Entry>, filed: &Filed, receipt: &Receipt) {
        let mut r = lock(report);
        let now = SystemTime::now();
        let Some(segment) = r.segments.get_mut(filed.segment) else {
            return;
        };
        segment.state = receipt.state;
        segment.error.clone_from(&receipt.error);
        segment.receipt_at = Some(now);
        r.updated_at = now;
        r.aggregate();
        if receipt.state.is_final() {
            let m = &self.metrics;
            m.receipts.with_label_values(&[receipt.state.label()]).inc();
            m.receipt_latency
                .observe(filed.submitted.elapsed().as_secs_f64());
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
    pub(in crate::smpp) fn report(&self, tag: &str) -> Option<DeliveryReport> {
        self.reports.get(tag).map(|r| lock(&r).report())
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

    #[tokio::test(start_paused = true)]
    async fn expiring_entries_go_after_their_ttl_and_past_the_bound() {
        let mut e = Expiring::new(Duration::from_secs(10), 2);
        e.insert("a".into(), 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        e.insert("b".into(), 2);
        assert_eq!(e.get("a"), Some(&1));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(e.get("a"), None, "expired");
        assert_eq!(e.remove("b"), Some(2));
        e.insert("c".into(), 3);
        e.insert("d".into(), 4);
        e.insert("f".into(), 5);
        assert!(e.map.len() <= 2, "bounded");
        assert_eq!(e.get("f"), Some(&5));
    }

    #[tokio::test]
    async fn receipts_per_segment_in_either_order() {
        let metrics = SmppMetrics::new().unwrap();
        let t = Tracker::new(
            MessageIdFormat::Auto,
            Duration::from_secs(60),
            100,
            metrics.clone(),
        );
        // Segment 2's receipt overtakes the submit_sm_resp (decimal id).
        t.on_receipt(receipt(&0xB2u32.to_string(), DeliveryState::Delivered));
        t.file(
            "auth-1",
            &PhoneNumber::parse("+34600000001").unwrap(),
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
