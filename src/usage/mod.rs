//! Usage counters per client and UTC day, behind the admin usage report: codes sent, their
//! segments, validations that succeeded, failed (wrong code), found the id expired, or found
//! it locked.
//!
//! Counting never waits for Redis on the request path: an outcome, once known, increments an
//! in-process accumulator under a short mutex. With the memory store that accumulator is the
//! record. With Redis a background task adds what gathered to the shared per-day hashes every
//! `usage.flush_interval` (one script call per day touched, whatever the traffic), so every
//! replica's counts end up in one place and Redis sees a write a second, not one per request;
//! a report adds this process's not yet flushed counts to what Redis holds. A flush that fails
//! is merged back and tried again; at most the counts of the last interval are lost if the
//! process dies.

mod receipts;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use receipts::ReceiptLookup;

use crate::domain::AuthenticationId;
use crate::store::redis::{usage as shared, RedisHandle};
use crate::store::StoreError;
use crate::sync::lock;

const TARGET: &str = "otp_gateway::usage";
const DAY_MS: u64 = 86_400_000;

/// The counts of one client on one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Codes whose SMS the channel accepted (send-code 200).
    pub codes_sent: u64,
    /// SMS segments of those codes.
    pub segments: u64,
    /// Right codes (validate-code 204).
    pub validated: u64,
    /// Wrong codes with attempts left (INVALID_OTP).
    pub failed: u64,
    /// Used, superseded or expired ids (VERIFICATION_EXPIRED).
    pub expired: u64,
    /// Attempts exhausted (VERIFICATION_FAILED).
    pub locked: u64,
    /// SMS whose receipts said DELIVRD when checked.
    pub receipts_delivered: u64,
    /// UNDELIV.
    pub receipts_undeliverable: u64,
    /// EXPIRED (the SMSC gave up within the code's validity).
    pub receipts_expired: u64,
    /// REJECTD.
    pub receipts_rejected: u64,
    /// DELETED.
    pub receipts_deleted: u64,
    /// UNKNOWN or an undocumented state word.
    pub receipts_unknown: u64,
    /// No final receipt yet when checked (submitted, enroute).
    pub receipts_pending: u64,
    /// The delivery state was gone when checked (past its retention or evicted).
    pub receipts_missing: u64,
}

/// The counter names, as JSON keys, CSV columns and Redis field suffixes.
pub const COUNTERS: [&str; 14] = [
    "codesSent",
    "segments",
    "validated",
    "failed",
    "expired",
    "locked",
    "receiptsDelivered",
    "receiptsUndeliverable",
    "receiptsExpired",
    "receiptsRejected",
    "receiptsDeleted",
    "receiptsUnknown",
    "receiptsPending",
    "receiptsMissing",
];

impl Counts {
    fn values(&self) -> [u64; 14] {
        [
            self.codes_sent,
            self.segments,
            self.validated,
            self.failed,
            self.expired,
            self.locked,
            self.receipts_delivered,
            self.receipts_undeliverable,
            self.receipts_expired,
            self.receipts_rejected,
            self.receipts_deleted,
            self.receipts_unknown,
            self.receipts_pending,
            self.receipts_missing,
        ]
    }

    fn slot(&mut self, counter: &str) -> Option<&mut u64> {
        Some(match counter {
            "codesSent" => &mut self.codes_sent,
            "segments" => &mut self.segments,
            "validated" => &mut self.validated,
            "failed" => &mut self.failed,
            "expired" => &mut self.expired,
            "locked" => &mut self.locked,
            "receiptsDelivered" => &mut self.receipts_delivered,
            "receiptsUndeliverable" => &mut self.receipts_undeliverable,
            "receiptsExpired" => &mut self.receipts_expired,
            "receiptsRejected" => &mut self.receipts_rejected,
            "receiptsDeleted" => &mut self.receipts_deleted,
            "receiptsUnknown" => &mut self.receipts_unknown,
            "receiptsPending" => &mut self.receipts_pending,
            "receiptsMissing" => &mut self.receipts_missing,
            _ => return None,
        })
    }

    fn add(&mut self, other: &Counts) {
        for (name, n) in COUNTERS.iter().zip(other.values()) {
            if let Some(slot) = self.slot(name) {
                *slot = slot.saturating_add(n);
            }
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageRow {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The client.
    pub client_id: String,
    /// Its counts that day.
    #[serde(flatten)]
    pub counts: Counts,
}

/// A validate-code outcome, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// 204.
    Valid,
    /// INVALID_OTP.
    Failed,
    /// VERIFICATION_EXPIRED.
    Expired,
    /// VERIFICATION_FAILED.
    Locked,
}

type Key = (u64, String);

/// Shards of the accumulator, so request workers rarely meet on one lock.
const SHARDS: usize = 16;

/// Day → client → counts; nested so that counting an existing client borrows its id instead
/// of allocating a key.
type Shard = HashMap<u64, HashMap<String, Counts>>;

struct Inner {
    /// Memory store: every count. Redis: the counts not yet flushed. Sharded by client id.
    local: [Mutex<Shard>; SHARDS],
    shared: Option<RedisHandle>,
    retention: Duration,
    /// Sent codes whose delivery state is still to be read, oldest first.
    receipts: Mutex<receipts::Queue>,
    receipt_check: OnceLock<receipts::ReceiptCheck>,
}

impl Inner {
    fn new(shared: Option<RedisHandle>, retention: Duration) -> Inner {
        Inner {
            local: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            shared,
            retention,
            receipts: Mutex::new(receipts::Queue::default()),
            receipt_check: OnceLock::new(),
        }
    }

    fn shard(&self, client_id: &str) -> &Mutex<Shard> {
        let h = client_id.bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        &self.local[h % SHARDS]
    }

    fn add(&self, day: u64, client_id: &str, f: impl FnOnce(&mut Counts)) {
        let mut shard = lock(self.shard(client_id));
        let clients = shard.entry(day).or_default();
        match clients.get_mut(client_id) {
            Some(counts) => f(counts),
            None => f(clients.entry(client_id.to_owned()).or_default()),
        }
    }

    /// Every local count, leaving the accumulator empty (`take`) or as it is.
    fn collect(&self, take: bool) -> HashMap<Key, Counts> {
        let mut out = HashMap::new();
        for shard in &self.local {
            let mut shard = lock(shard);
            let days = if take {
                std::mem::take(&mut *shard)
            } else {
                shard.clone()
            };
            for (day, clients) in days {
                for (client, counts) in clients {
                    out.insert((day, client), counts);
                }
            }
        }
        out
    }
}

/// The usage counters (cheap to clone).
#[derive(Clone)]
pub struct Usage(Arc<Inner>);

impl Default for Usage {
    fn default() -> Self {
        Usage::in_process(Duration::from_secs(400 * 86_400))
    }
}

impl Usage {
    /// Counters kept in this process (the memory store), days older than `retention` pruned.
    pub fn in_process(retention: Duration) -> Usage {
        Usage(Arc::new(Inner::new(None, retention)))
    }

    /// Counters shared through Redis; start [`Usage::flush_every`] to move them there.
    pub(crate) fn shared(redis: RedisHandle, retention: Duration) -> Usage {
        Usage(Arc::new(Inner::new(Some(redis), retention)))
    }

    fn bump(&self, client_id: &str, now_ms: u64, f: impl FnOnce(&mut Counts)) {
        self.0.add(now_ms / DAY_MS, client_id, f);
    }

    /// Counts a code whose SMS (of `segments` parts) was accepted; with `tag` (an SMS that
    /// went to an SMSC), its delivery state is counted once checked.
    pub fn sent(
        &self,
        client_id: &str,
        now_ms: u64,
        segments: usize,
        tag: Option<&AuthenticationId>,
    ) {
        self.bump(client_id, now_ms, |c| {
            c.codes_sent += 1;
            c.segments += segments as u64;
        });
        let (Some(check), Some(tag)) = (self.0.receipt_check.get(), tag) else {
            return;
        };
        let mut queue = lock(&self.0.receipts);
        if queue.pending.len() >= check.max_pending {
            // Bounded: past it a receipt goes uncounted rather than memory growing.
            return;
        }
        let client_id = queue.name(client_id);
        queue.pending.push_back(receipts::Pending {
            due: tokio::time::Instant::now() + check.after,
            tag: *tag,
            client_id,
            day: now_ms / DAY_MS,
        });
    }

    /// Counts receipts by delivery state: each sent code's state is read with `lookup`
    /// `after` its send (by [`Usage::flush_every`]), at most `max_pending` waiting.
    pub fn check_receipts(&self, lookup: ReceiptLookup, after: Duration, max_pending: usize) {
        let _ = self.0.receipt_check.set(receipts::ReceiptCheck {
            lookup,
            after,
            max_pending,
        });
    }

    /// Reads the delivery state of every sent code now due.
    async fn check_due_receipts(&self) {
        let Some(check) = self.0.receipt_check.get() else {
            return;
        };
        let due = receipts::due(
            &mut lock(&self.0.receipts).pending,
            tokio::time::Instant::now(),
        );
        for (i, p) in due.into_iter().enumerate() {
            // Thousands may come due at once: give the thread back now and then, so the
            // requests and SMPP sessions sharing it never wait behind the whole batch.
            if i % 256 == 255 {
                tokio::task::yield_now().await;
            }
            match (check.lookup)(p.tag.to_string()).await {
                Ok(state) => self.0.add(p.day, &p.client_id, receipts::count(state)),
                Err(e) => {
                    tracing::warn!(target: TARGET, error = %e, "delivery state not read; its receipt goes uncounted");
                }
            }
        }
    }

    /// Counts a validation outcome.
    pub fn validated(&self, client_id: &str, now_ms: u64, outcome: Validation) {
        self.bump(client_id, now_ms, |c| match outcome {
            Validation::Valid => c.validated += 1,
            Validation::Failed => c.failed += 1,
            Validation::Expired => c.expired += 1,
            Validation::Locked => c.locked += 1,
        });
    }

    /// Rows for the days `from..=to` (day numbers since the epoch), by day then client.
    pub async fn report(&self, from: u64, to: u64) -> Result<Vec<UsageRow>, StoreError> {
        let mut merged: BTreeMap<Key, Counts> = BTreeMap::new();
        if let Some(redis) = &self.0.shared {
            for day in from..=to {
                for (field, n) in shared::read_usage(redis, &format_day(day)).await? {
                    let Some((client, counter)) = field.rsplit_once(':') else {
                        continue;
                    };
                    let counts = merged.entry((day, client.to_owned())).or_default();
                    if let Some(slot) = counts.slot(counter) {
                        *slot = slot.saturating_add(n);
                    }
                }
            }
        }
        for ((day, client), counts) in self.0.collect(false) {
            if (from..=to).contains(&day) {
                merged.entry((day, client)).or_default().add(&counts);
            }
        }
        Ok(merged
            .into_iter()
            .map(|((day, client_id), counts)| UsageRow {
                day: format_day(day),
                client_id,
                counts,
            })
            .collect())
    }

    /// Moves the gathered counts to Redis every `every` and once more at `stop`; with the
    /// memory store only prunes days past the retention.
    pub async fn flush_every(self, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tick.tick() => false,
            };
            self.check_due_receipts().await;
            self.flush().await;
            if stopping {
                return;
            }
        }
    }

    /// One flush (or prune); see [`Usage::flush_every`].
    pub async fn flush(&self) {
        let retention_days = self.0.retention.as_secs() / 86_400;
        let Some(redis) = &self.0.shared else {
            let today = now_ms() / DAY_MS;
            for shard in &self.0.local {
                lock(shard).retain(|day, _| day + retention_days >= today);
            }
            return;
        };
        let pending = self.0.collect(true);
        if pending.is_empty() {
            return;
        }
        let mut by_day: BTreeMap<u64, Vec<(String, u64)>> = BTreeMap::new();
        for ((day, client), counts) in &pending {
            let fields = by_day.entry(*day).or_default();
            for (name, n) in COUNTERS.iter().zip(counts.values()) {
                if n > 0 {
                    fields.push((format!("{client}:{name}"), n));
                }
            }
        }
        let ttl = self.0.retention.as_secs();
        let mut failed = Vec::new();
        for (day, fields) in by_day {
            if let Err(e) = shared::add_usage(redis, &format_day(day), &fields, ttl).await {
                tracing::warn!(target: TARGET, error = %e, "usage counts not flushed to Redis; kept for the next flush");
                failed.push(day);
            }
        }
        if failed.is_empty() {
            return;
        }
        for ((day, client), counts) in pending {
            if failed.contains(&day) {
                self.0.add(day, &client, |c| c.add(&counts));
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `YYYY-MM-DD` of a day number since the epoch.
pub fn format_day(day: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(day.saturating_mul(86_400));
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .chars()
        .take(10)
        .collect()
}

/// The day number of `YYYY-MM-DD` (a real calendar day), or `None`.
pub fn parse_day(s: &str) -> Option<u64> {
    let shaped = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !shaped {
        return None;
    }
    let t = humantime::parse_rfc3339(&format!("{s}T00:00:00Z")).ok()?;
    let day = t.duration_since(UNIX_EPOCH).ok()?.as_secs() / 86_400;
    // humantime accepts 2026-02-30 and rolls it over; a day that does not print back is not one.
    (format_day(day) == s).then_some(day)
}

/// Today's day number (UTC).
pub fn today() -> u64 {
    now_ms() / DAY_MS
}

/// The longest range one report covers, in days.
pub const MAX_REPORT_DAYS: u64 = 400;

/// Renders rows as CSV: a header, then one line per row (client ids are quoted when they
/// hold a comma, quote or line break).
pub fn to_csv(rows: &[UsageRow]) -> String {
    let mut out = String::from("day,clientId");
    for name in COUNTERS {
        out.push(',');
        out.push_str(name);
    }
    out.push_str("\r\n");
    for row in rows {
        out.push_str(&row.day);
        out.push(',');
        out.push_str(&csv_field(&row.client_id));
        for n in row.counts.values() {
            out.push(',');
            out.push_str(&n.to_string());
        }
        out.push_str("\r\n");
    }
    out
}

fn csv_field(s: &str) -> String {
    // A leading = + - @ would make a spreadsheet run it as a formula; a quote keeps it text.
    let formula = s.starts_with(['=', '+', '-', '@']);
    if formula || s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn days_print_and_parse_as_utc_calendar_days() {
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(parse_day("1970-01-02"), Some(1));
        assert_eq!(
            parse_day("2026-12-01").map(format_day).unwrap(),
            "2026-12-01"
        );
        for bad in [
            "2026-02-30",
            "2026-1-01",
            "20261201",
            "2026-12-01T00",
            "abcd-ef-gh",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn counts_are_kept_per_client_and_day_and_reported_in_range() {
        let usage = Usage::in_process(Duration::from_secs(86_400 * 10));
        let day = 20_000;
        let at = day * DAY_MS + 5;
        usage.sent("a", at, 2, None);
        usage.sent("a", at, 1, None);
        usage.validated("a", at, Validation::Valid);
        usage.validated("a", at, Validation::Failed);
        usage.validated("b", at + DAY_MS, Validation::Locked);
        usage.validated("b", at + DAY_MS, Validation::Expired);
        let rows = usage.report(day, day + 1).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].counts,
            Counts {
                codes_sent: 2,
                segments: 3,
                validated: 1,
                failed: 1,
                ..Counts::default()
            }
        );
        assert_eq!(rows[1].client_id, "b");
        assert_eq!(rows[1].counts.locked, 1);
        assert_eq!(usage.report(day + 1, day + 1).await.unwrap().len(), 1);
        let csv = to_csv(&rows);
        let lines: Vec<_> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "day,clientId,codesSent,segments,validated,failed,expired,locked,receiptsDelivered,receiptsUndeliverable,receiptsExpired,receiptsRejected,receiptsDeleted,receiptsUnknown,receiptsPending,receiptsMissing"
        );
        assert_eq!(
            lines[1],
            format!("{},a,2,3,1,1,0,0,0,0,0,0,0,0,0,0", format_day(day))
        );
    }

    #[test]
    fn each_delivery_state_has_its_receipt_counter() {
        let mut c = Counts::default();
        for state in [
            Some("delivered"),
            Some("undeliverable"),
            Some("expired"),
            Some("rejected"),
            Some("deleted"),
            Some("cancelled"),
            Some("unknown"),
            Some("submitted"),
            Some("enroute"),
            None,
        ] {
            receipts::count(state)(&mut c);
        }
        let receipts = &c.values()[6..];
        assert_eq!(receipts, [1, 1, 1, 1, 2, 1, 2, 1]);
    }

    #[test]
    fn csv_quotes_what_a_spreadsheet_would_misread() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("=cmd()"), "\"=cmd()\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
