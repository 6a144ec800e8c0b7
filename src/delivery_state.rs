//! The delivery state of tagged SMS in Redis ([`RedisDeliveryState`]), for `store.backend =
//! "redis"`: a receipt that reaches one replica's SMPP session updates the report another
//! replica created, and the admin lookup on any replica reads it.
//!
//! Keys, all under the route's hash tag so every script runs in one Cluster slot (message ids
//! are only unique per SMSC, and a receipt knows its id, not its tag; one slot per route is
//! the price of making "file + apply orphans" and "apply or keep as orphan" atomic):
//!
//! - `<prefix>:{dr:<route>}:t:<tag>`: the report (hash: masked number `m`, route `r`,
//!   acknowledged `s`, updated `u`, segment count `n`, per segment `<i>:id`, `<i>:st` state,
//!   `<i>:e` error, `<i>:at` receipt time), for the receipt retention;
//! - `<prefix>:{dr:<route>}:f:<id key>`: a filed segment, `<segment>|<submitted ms>|<tag>`,
//!   for the receipt retention (until its final receipt);
//! - `<prefix>:{dr:<route>}:o:<id key>`: an orphan receipt, `<state>|<error>`, for a minute.
//!
//! Only the masked number is stored, never the number or the text. Times are Unix ms.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use futures::future::BoxFuture;
use redis::Script;

use crate::smpp::receipts::shared::{
    Applied, Filing, ReceiptUpdate, SharedDeliveryState, StoredReport, StoredSegment,
};
use crate::smpp::{BoxError, DeliveryState};
use crate::store::redis::RedisHandle;

/// Creates (or, with ARGV[6] = 1, extends) a report and files its segments, applying orphans.
///
/// KEYS: 1 report, then per segment its filed key and its orphan key.
/// ARGV: 1 masked number, 2 route, 3 submitted ms, 4 now ms, 5 retention ms, 6 append,
/// 7 tag, 8.. the segments' message ids.
/// Returns the states of the orphans applied.
const FILE: &str = r#"
local r = KEYS[1]
local n0 = 0
if ARGV[6] == '1' then
  n0 = tonumber(redis.call('HGET', r, 'n') or '0')
end
if n0 == 0 then
  redis.call('DEL', r)
  redis.call('HSET', r, 'm', ARGV[1], 'r', ARGV[2], 's', ARGV[4])
  redis.call('PEXPIRE', r, ARGV[5])
end
local applied = {}
local segs = (#KEYS - 1) / 2
for i = 1, segs do
  local seg = n0 + i - 1
  local filed, orphan = KEYS[2 * i], KEYS[2 * i + 1]
  redis.call('HSET', r, seg .. ':id', ARGV[7 + i], seg .. ':st', 'submitted')
  local final = false
  local o = redis.call('GET', orphan)
  if o then
    redis.call('DEL', orphan)
    local sep = string.find(o, '|', 1, true)
    local st = string.sub(o, 1, sep - 1)
    redis.call('HSET', r, seg .. ':st', st, seg .. ':e', string.sub(o, sep + 1), seg .. ':at', ARGV[4])
    table.insert(applied, st)
    final = st ~= 'submitted' and st ~= 'enroute'
  end
  if not final then
    redis.call('SET', filed, seg .. '|' .. ARGV[3] .. '|' .. ARGV[7], 'PX', ARGV[5])
  end
end
redis.call('HSET', r, 'n', n0 + segs, 'u', ARGV[4])
return applied
"#;

/// Applies a receipt to the first filed candidate, or keeps it as an orphan under all of them.
///
/// KEYS: the candidates' filed keys, then their orphan keys (same order).
/// ARGV: 1 state, 2 error ('' for none), 3 now ms, 4 orphan TTL ms, 5 final, 6 the route's
/// report key prefix (the report key is built here from the filed tag: same hash tag, so
/// same slot).
/// Returns the segment's submitted ms when applied, -1 kept as an orphan, -2 report gone.
const RECEIPT: &str = r#"
local k = #KEYS / 2
for i = 1, k do
  local v = redis.call('GET', KEYS[i])
  if v then
    local a = string.find(v, '|', 1, true)
    local b = string.find(v, '|', a + 1, true)
    local seg = string.sub(v, 1, a - 1)
    local submitted = tonumber(string.sub(v, a + 1, b - 1))
    local r = ARGV[6] .. string.sub(v, b + 1)
    if ARGV[5] == '1' then redis.call('DEL', KEYS[i]) end
    if redis.call('EXISTS', r) == 0 then return -2 end
    redis.call('HSET', r, seg .. ':st', ARGV[1], seg .. ':e', ARGV[2], seg .. ':at', ARGV[3], 'u', ARGV[3])
    return submitted
  end
end
for i = 1, k do
  redis.call('SET', KEYS[k + i], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[4])
end
return -1
"#;

/// Marks a segment cancelled and unfiles it.
///
/// KEYS: 1 report, 2 the segment's filed key. ARGV: 1 message id, 2 now ms.
const CANCELLED: &str = r#"
redis.call('DEL', KEYS[2])
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
for i = 0, n - 1 do
  if redis.call('HGET', KEYS[1], i .. ':id') == ARGV[1] then
    redis.call('HSET', KEYS[1], i .. ':st', 'cancelled', 'u', ARGV[2])
    return 1
  end
end
return 0
"#;

/// Reads a report. KEYS: 1 report.
const REPORT: &str = "return redis.call('HGETALL', KEYS[1])";

static FILE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(FILE));
static RECEIPT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RECEIPT));
static CANCELLED_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CANCELLED));
static REPORT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(REPORT));

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// [`SharedDeliveryState`] in the gateway's Redis (through the store's connection).
#[derive(Clone, Debug)]
pub struct RedisDeliveryState {
    redis: RedisHandle,
}

impl RedisDeliveryState {
    /// Delivery state on the store's connection, under its key prefix.
    pub(crate) fn new(redis: RedisHandle) -> RedisDeliveryState {
        RedisDeliveryState { redis }
    }

    /// `<prefix>:{dr:<route>}`; braces in a route name would move the hash tag, so they go.
    fn base(&self, route: &str) -> String {
        let route: String = route.chars().filter(|c| !matches!(c, '{' | '}')).collect();
        format!("{}:{{dr:{route}}}", self.redis.prefix())
    }
}

fn parse_report(fields: HashMap<String, String>) -> Option<StoredReport> {
    if fields.is_empty() {
        return None;
    }
    let ms = |k: &str| fields.get(k).and_then(|v| v.parse::<u64>().ok());
    let n = ms("n").unwrap_or(0);
    let segments = (0..n)
        .map(|i| StoredSegment {
            message_id: fields.get(&format!("{i}:id")).cloned().unwrap_or_default(),
            state: fields
                .get(&format!("{i}:st"))
                .and_then(|s| DeliveryState::from_label(s))
                .unwrap_or(DeliveryState::Unknown),
            error: fields
                .get(&format!("{i}:e"))
                .filter(|e| !e.is_empty())
                .cloned(),
            receipt_ms: ms(&format!("{i}:at")),
        })
        .collect();
    Some(StoredReport {
        masked_destination: fields.get("m").cloned().unwrap_or_default(),
        route: fields.get("r").cloned().unwrap_or_default(),
        submitted_ms: ms("s").unwrap_or(0),
        updated_ms: ms("u").unwrap_or(0),
        segments,
    })
}

impl SharedDeliveryState for RedisDeliveryState {
    fn file<'a>(&'a self, filing: &'a Filing) -> BoxFuture<'a, Result<Vec<Applied>, BoxError>> {
        Box::pin(async move {
            let base = self.base(&filing.route);
            let mut inv = FILE_SCRIPT.prepare_invoke();
            inv.key(format!("{base}:t:{}", filing.tag));
            for s in &filing.segments {
                inv.key(format!("{base}:f:{}", s.key))
                    .key(format!("{base}:o:{}", s.key));
            }
            inv.arg(&filing.masked_destination)
                .arg(&filing.route)
                .arg(filing.submitted_ms)
                .arg(filing.now_ms)
                .arg(millis(filing.retention))
                .arg(if filing.append { "1" } else { "0" })
                .arg(&filing.tag);
            for s in &filing.segments {
                inv.arg(&s.message_id);
            }
            let states: Vec<String> = self.redis.invoke(inv).await?;
            Ok(states
                .iter()
                .map(|s| Applied {
                    state: DeliveryState::from_label(s).unwrap_or(DeliveryState::Unknown),
                    submitted_ms: filing.submitted_ms,
                })
                .collect())
        })
    }

    fn receipt<'a>(
        &'a self,
        receipt: &'a ReceiptUpdate,
    ) -> BoxFuture<'a, Result<Option<Applied>, BoxError>> {
        Box::pin(async move {
            let base = self.base(&receipt.route);
            let mut inv = RECEIPT_SCRIPT.prepare_invoke();
            for k in &receipt.keys {
                inv.key(format!("{base}:f:{k}"));
            }
            for k in &receipt.keys {
                inv.key(format!("{base}:o:{k}"));
            }
            inv.arg(receipt.state.label())
                .arg(receipt.error.as_deref().unwrap_or(""))
                .arg(receipt.now_ms)
                .arg(millis(receipt.orphan_ttl))
                .arg(if receipt.state.is_final() { "1" } else { "0" })
                .arg(format!("{base}:t:"));
            let answer: i64 = self.redis.invoke(inv).await?;
            Ok(u64::try_from(answer).ok().map(|submitted_ms| Applied {
                state: receipt.state,
                submitted_ms,
            }))
        })
    }

    fn cancelled<'a>(
        &'a self,
        route: &'a str,
        tag: &'a str,
        message_id: &'a str,
        key: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let base = self.base(route);
            let mut inv = CANCELLED_SCRIPT.prepare_invoke();
            inv.key(format!("{base}:t:{tag}"))
                .key(format!("{base}:f:{key}"))
                .arg(message_id)
                .arg(now_ms);
            let _: i64 = self.redis.invoke(inv).await?;
            Ok(())
        })
    }

    fn report<'a>(
        &'a self,
        route: &'a str,
        tag: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredReport>, BoxError>> {
        Box::pin(async move {
            let mut inv = REPORT_SCRIPT.prepare_invoke();
            inv.key(format!("{}:t:{tag}", self.base(route)));
            let fields: HashMap<String, String> = self.redis.invoke(inv).await?;
            Ok(parse_report(fields))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::Secret;
    use crate::smpp::receipts::shared::FiledSegment;
    use crate::store::redis::testkit::{RedisCluster, RedisServer};
    use crate::store::{RedisSettings, RedisStore, RedisTarget};

    fn backend(target: RedisTarget) -> RedisDeliveryState {
        let store = RedisStore::new(
            RedisSettings {
                target,
                prefix: format!("dr{}", std::process::id()),
                timeout: Duration::from_secs(2),
                state_ttl: Duration::from_secs(600),
                wait_replicas: 0,
                tls: Default::default(),
            },
            b"delivery-state-key-delivery-state-key",
        );
        RedisDeliveryState::new(store.handle())
    }

    fn filing(tag: &str, ids: &[&str], append: bool) -> Filing {
        Filing {
            route: "default".into(),
            tag: tag.into(),
            masked_destination: "+346******01".into(),
            segments: ids
                .iter()
                .map(|id| FiledSegment {
                    message_id: (*id).into(),
                    key: format!("s:{id}"),
                })
                .collect(),
            submitted_ms: 1_000,
            now_ms: 2_000,
            retention: Duration::from_secs(60),
            append,
        }
    }

    fn receipt(id: &str, state: DeliveryState) -> ReceiptUpdate {
        ReceiptUpdate {
            route: "default".into(),
            keys: vec![format!("s:{id}"), format!("s:alt-{id}")],
            state,
            error: (state != DeliveryState::Delivered).then(|| "005".into()),
            now_ms: 3_000,
            orphan_ttl: Duration::from_secs(60),
        }
    }

    /// One contract, run against one server and against a Cluster: receipts before and after
    /// filing, per segment, a cancellation, and nothing for unknown tags.
    async fn contract(b: &RedisDeliveryState) {
        // Segment B's final receipt overtakes the filing; A's comes after it.
        assert_eq!(
            b.receipt(&receipt("B", DeliveryState::Delivered))
                .await
                .unwrap(),
            None,
            "kept as an orphan"
        );
        let applied = b.file(&filing("tag-1", &["A", "B"], false)).await.unwrap();
        assert_eq!(
            applied,
            vec![Applied {
                state: DeliveryState::Delivered,
                submitted_ms: 1_000
            }]
        );
        let r = b.report("default", "tag-1").await.unwrap().unwrap();
        assert_eq!(r.masked_destination, "+346******01");
        assert_eq!(r.segments[0].state, DeliveryState::Submitted);
        assert_eq!(r.segments[1].state, DeliveryState::Delivered);
        assert_eq!(r.segments[1].receipt_ms, Some(2_000));
        // An intermediate receipt keeps the segment filed; the final one unfiles it.
        let enroute = b
            .receipt(&receipt("A", DeliveryState::Enroute))
            .await
            .unwrap();
        assert_eq!(enroute.map(|a| a.submitted_ms), Some(1_000));
        assert!(b
            .receipt(&receipt("A", DeliveryState::Undeliverable))
            .await
            .unwrap()
            .is_some());
        let r = b.report("default", "tag-1").await.unwrap().unwrap();
        assert_eq!(r.segments[0].state, DeliveryState::Undeliverable);
        assert_eq!(r.segments[0].error.as_deref(), Some("005"));
        assert_eq!(
            r.clone().into_report("tag-1").state,
            DeliveryState::Undeliverable
        );
        assert_eq!(r.updated_ms, 3_000);
        // A receipt for the unfiled segment again is an orphan (no second application).
        assert_eq!(
            b.receipt(&receipt("A", DeliveryState::Delivered))
                .await
                .unwrap(),
            None
        );
        // A late acceptance appends a segment; its cancellation shows.
        b.file(&filing("tag-1", &["C"], true)).await.unwrap();
        b.cancelled("default", "tag-1", "C", "s:C", 4_000)
            .await
            .unwrap();
        let r = b.report("default", "tag-1").await.unwrap().unwrap();
        assert_eq!(r.segments.len(), 3);
        assert_eq!(r.segments[2].state, DeliveryState::Cancelled);
        assert!(b.report("default", "unknown").await.unwrap().is_none());
        // Other routes are other SMSCs: the same id files apart.
        assert!(b.report("other", "tag-1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn redis_delivery_state_on_one_node() {
        let server = RedisServer::start().unwrap();
        contract(&backend(RedisTarget::Single(Secret::new(server.url())))).await;
    }

    #[tokio::test]
    async fn redis_delivery_state_on_a_cluster() {
        let cluster = RedisCluster::start(3, 0).unwrap();
        let urls = cluster.urls();
        contract(&backend(RedisTarget::Cluster(
            urls.iter().map(|u| Secret::new(u.as_str())).collect(),
        )))
        .await;
    }
}
