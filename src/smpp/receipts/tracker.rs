//! Correlates delivery receipts with submitted segments and keeps the
//! delivery state of each tagged message (the tag is opaque here: the caller
//! chooses it and reads the state back with it) for the configured retention.
//!
//! Receipts can overtake their submit_sm_resp (the deliver_sm is read
//! before the response is handed to the submitter), so a receipt without a
//! filed id waits briefly as an "orphan" and is applied when the id is
//! filed. Filing and matching run under one lock so neither order loses it.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smallvec::SmallVec;
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

/// What is kept per tag, compact because one is kept per code sent for the whole retention:
/// the number as an integer, the route shared, times as Unix ms, one segment inline. Formatted
/// into a [`DeliveryReport`] only when read, so the send path does no date formatting.
struct Entry {
    destination: u64,
    route: Arc<str>,
    state: DeliveryState,
    segments: SmallVec<[SegmentEntry; 1]>,
    submitted_at_ms: u64,
    updated_at_ms: u64,
}

struct SegmentEntry {
    message_id: Box<str>,
    state: DeliveryState,
    error: Option<Box<str>>,
    /// Unix ms; 0 until a receipt arrived.
    receipt_at_ms: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn masked_number(key: u64) -> String {
    PhoneNumber::parse(&format!("+{key}"))
        .map(|p| p.masked())
        .unwrap_or_default()
}

impl Entry {
    fn new(destination: &PhoneNumber, route: Arc<str>, ids: &[String], now: SystemTime) -> Entry {
        let now = unix_ms(now);
        Entry {
            destination: destination.as_u64(),
            route,
            state: DeliveryState::Submitted,
            segments: ids
                .iter()
                .map(|id| SegmentEntry {
                    message_id: id.as_str().into(),
                    state: DeliveryState::Submitted,
                    error: None,
                    receipt_at_ms: 0,
                })
                .collect(),
            submitted_at_ms: now,
            updated_at_ms: now,
        }
    }

    fn report(&self, tag: &str) -> DeliveryReport {
        DeliveryReport {
            tag: tag.to_owned(),
            phone_number: masked_number(self.destination),
            route: self.route.to_string(),
            state: self.state,
            segments: self
                .segments
                .iter()
                .map(|s| SegmentReport {
                    message_id: s.message_id.to_string(),
                    state: s.state,
                    error: s.error.as_deref().map(str::to_owned),
                    receipt_at: (s.receipt_at_ms > 0)
                        .then(|| rfc3339(from_unix_ms(s.receipt_at_ms))),
                })
                .collect(),
            submitted_at: rfc3339(from_unix_ms(self.submitted_at_ms)),
            updated_at: rfc3339(from_unix_ms(self.updated_at_ms)),
        }
    }

    fn aggregate(&mut self) {
        self.state = DeliveryState::aggregate(self.segments.iter().map(|s| s.state));
    }
}

/// The 16-byte key of a tag: the UUID it spells (the gateway tags each SMS with its
/// authenticationId), else the first 16 bytes of its SHA-256; a 36-character string key would
/// cost more than the report.
fn tag_key(tag: &str) -> u128 {
    match uuid::Uuid::try_parse(tag) {
        Ok(u) => u.as_u128(),
        Err(_) => {
            let d = ring::digest::digest(&ring::digest::SHA256, tag.as_bytes());
            let mut first = [0u8; 16];
            first.copy_from_slice(&d.as_ref()[..16]);
            u128::from_be_bytes(first)
        }
    }
}

/// As many as the memory store has: with a million reports kept, a shard's table growth
/// (which copies it, under its lock) stays a fraction of a millisecond.
const REPORT_SHARDS: usize = 64;

/// Reports by tag for one retention, bounded: per shard a map and an insertion-ordered queue
/// (one retention for all entries, so the queue's front is always the oldest), read by the
/// admin listener while sends write, hence sharded locks rather than one.
struct Reports {
    retention: Duration,
    per_shard: usize,
    shards: Box<[Mutex<ReportShard>]>,
}

#[derive(Default)]
struct ReportShard {
    map: HashMap<u128, (Instant, Entry)>,
    order: VecDeque<(Instant, u128)>,
}

impl Reports {
    fn new(retention: Duration, capacity: u64) -> Reports {
        let per_shard = usize::try_from(capacity.div_ceil(REPORT_SHARDS as u64))
            .unwrap_or(usize::MAX)
            .max(1);
        Reports {
            retention,
            per_shard,
            shards: (0..REPORT_SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, key: u128) -> &Mutex<ReportShard> {
        // Tag keys are UUIDs or digests: their low bits are already spread.
        &self.shards[(key as usize) % REPORT_SHARDS]
    }

    /// Runs `f` on the report of `tag`, creating it with `make` when absent or expired.
    fn upsert<T>(
        &self,
        tag: &str,
        make: impl FnOnce() -> Entry,
        f: impl FnOnce(&mut Entry) -> T,
    ) -> T {
        let key = tag_key(tag);
        let now = Instant::now();
        let mut shard = lock(self.shard(key));
        let shard = &mut *shard;
        Self::purge(shard, now, self.retention, self.per_shard);
        let live = shard
            .map
            .get(&key)
            .is_some_and(|(at, _)| *at + self.retention > now);
        if !live {
            shard.order.push_back((now, key));
        }
        let slot = match shard.map.entry(key) {
            MapEntry::Occupied(o) if live => o.into_mut(),
            MapEntry::Occupied(mut o) => {
                o.insert((now, make()));
                o.into_mut()
            }
            MapEntry::Vacant(v) => v.insert((now, make())),
        };
        f(&mut slot.1)
    }

    /// Keeps a fresh report for `tag`, replacing any earlier one (a tag is sent once).
    fn put(&self, tag: &str, entry: Entry) {
        let key = tag_key(tag);
        let now = Instant::now();
        let mut shard = lock(self.shard(key));
        let shard = &mut *shard;
        Self::purge(shard, now, self.retention, self.per_shard);
        shard.order.push_back((now, key));
        shard.map.insert(key, (now, entry));
    }

    /// Runs `f` on the report of `tag` if it is kept.
    fn with<T>(&self, tag: &str, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let key = tag_key(tag);
        let now = Instant::now();
        let mut shard = lock(self.shard(key));
        match shard.map.get_mut(&key) {
            Some((at, entry)) if *at + self.retention > now => Some(f(entry)),
            _ => None,
        }
    }

    /// Drops expired reports and, past the bound, the oldest ones.
    fn purge(shard: &mut ReportShard, now: Instant, retention: Duration, max: usize) {
        while let Some(&(at, key)) = shard.order.front() {
            if at + retention > now && shard.map.len() < max {
                break;
            }
            // Only if the map entry is still the one this queue slot was made for.
            if shard.map.get(&key).is_some_and(|(t, _)| *t == at) {
                shard.map.remove(&key);
            }
            shard.order.pop_front();
        }
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

    /// Drops expired entries and, past the size bound, the oldest ones; and queue slots whose
    /// entry is already gone (most filed ids leave at their final receipt, a few hundred
    /// milliseconds after filing, in about filing order), so the queue does not hold a key
    /// per message for the whole retention.
    fn purge(&mut self, now: Instant) {
        while let Some((at, key)) = self.order.front() {
            let expired = *at + self.ttl <= now;
            let gone = self.map.get(key).is_none_or(|(t, _)| t != at);
            if !gone && !expired && self.map.len() < self.max && self.order.len() < self.max * 2 {
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
    reports: Reports,
    /// Route names, shared by every report of the route.
    routes: Mutex<Vec<Arc<str>>>,
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
            reports: Reports::new(retention, capacity),
            routes: Mutex::new(Vec::new()),
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
        let route = self.route(route);
        let entry = Entry::new(destination, route, ids, SystemTime::now());
        self.reports.put(tag, entry);
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
                    self.apply(&filed, &receipt);
                    if !receipt.state.is_final() {
                        c.filed.insert(key, filed);
                    }
                }
                None => c.filed.insert(key, filed),
            }
        }
    }

    /// The shared name of `route` (a handful per gateway).
    fn route(&self, route: &str) -> Arc<str> {
        let mut routes = lock(&self.routes);
        if let Some(r) = routes.iter().find(|r| &***r == route) {
            return Arc::clone(r);
        }
        let r: Arc<str> = route.into();
        routes.push(Arc::clone(&r));
        r
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
        let route = self.route(route);
        let segment = self.reports.upsert(
            tag,
            || Entry::new(destination, route, &[], SystemTime::now()),
            |r| {
                r.segments.push(SegmentEntry {
                    message_id: id.into(),
                    state: DeliveryState::Submitted,
                    error: None,
                    receipt_at_ms: 0,
                });
                r.updated_at_ms = unix_ms(SystemTime::now());
                r.aggregate();
                r.segments.len() - 1
            },
        );
        let key = response_key(id, self.format);
        let filed = Filed {
            tag: tag.to_owned(),
            segment,
            submitted: Instant::now(),
        };
        let mut c = lock(&self.correlation);
        match c.orphans.remove(&key) {
            Some(receipt) => self.apply(&filed, &receipt),
            None => c.filed.insert(key, filed),
        }
    }

    /// The segment `id` of `tag` was deleted with cancel_sm: no receipt will come for it.
    pub(in crate::smpp) fn cancelled(&self, tag: &str, id: &str) {
        lock(&self.correlation)
            .filed
            .remove(&response_key(id, self.format));
        self.reports.with(tag, |r| {
            if let Some(segment) = r.segments.iter_mut().find(|s| &*s.message_id == id) {
                segment.state = DeliveryState::Cancelled;
                r.updated_at_ms = unix_ms(SystemTime::now());
                r.aggregate();
            }
        });
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
                self.apply(&filed, &receipt);
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

    /// Applies a receipt to its report, if the report is still kept.
    fn apply(&self, filed: &Filed, receipt: &Receipt) {
        let now = unix_ms(SystemTime::now());
        let applied = self.reports.with(&filed.tag, |r| {
            let Some(segment) = r.segments.get_mut(filed.segment) else {
                return false;
            };
            segment.state = receipt.state;
            segment.error = receipt.error.as_deref().map(Box::from);
            segment.receipt_at_ms = now;
            r.updated_at_ms = now;
            r.aggregate();
            true
        });
        if applied != Some(true) {
            return;
        }
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

    /// The aggregate delivery state of `tag`, if its report is still kept.
    pub(in crate::smpp) fn state(&self, tag: &str) -> Option<DeliveryState> {
        self.reports.with(tag, |r| r.state)
    }

    /// The delivery report of `tag`, if it is still kept.
    pub(in crate::smpp) fn report(&self, tag: &str) -> Option<DeliveryReport> {
        self.reports.with(tag, |r| r.report(tag))
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

    #[tokio::test(start_paused = true)]
    async fn reports_are_kept_for_the_retention_and_bounded() {
        let t = Tracker::new(
            MessageIdFormat::Auto,
            Duration::from_secs(60),
            128,
            SmppMetrics::new().unwrap(),
        );
        let phone = PhoneNumber::parse("+34600000001").unwrap();
        let tags: Vec<String> = (0..1000u32)
            .map(|i| uuid::Uuid::from_u128(u128::from(i) * 0x9e37_79b9_7f4a_7c15).to_string())
            .collect();
        for (i, tag) in tags.iter().enumerate() {
            t.file(tag, &phone, "default", &[format!("{i:x}")], Instant::now());
        }
        let kept = tags.iter().filter(|t_| t.report(t_).is_some()).count();
        // 128 over 64 shards: at most 2 each.
        assert!((64..=128).contains(&kept), "{kept} reports kept");
        let last = tags.last().unwrap();
        let r = t.report(last).unwrap();
        assert_eq!(r.tag, *last);
        assert_eq!(r.route, "default");
        assert_eq!(r.segments[0].message_id, "3e7");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(t.report(last).is_none(), "past the retention");
    }
}
