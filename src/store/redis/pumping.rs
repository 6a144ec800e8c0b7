//! The SMS-pumping counters in Redis, shared by every replica (the rules are in
//! `policy::pumping`). Every key but the id map shares the hash tag `{pump}`, so each script
//! runs on one Cluster node: `<prefix>:{pump}:pins` (set of admin pins), `<prefix>:{pump}:cool`
//! (hash: prefix → `until_ms:sent:validated`), `<prefix>:{pump}:w:<tracked prefix>:<slice>`
//! (hash with fields `s` and `v`, expiring one window after its slice). The prefix of each
//! sent authenticationId is `<prefix>:pv:<id>`, spread over the Cluster, expiring with the code.
//! Times are the gateway's clock, passed in, so every replica judges by the same slices.

use std::ops::RangeInclusive;
use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::RedisHandle;
use crate::policy::pumping::{Check, Cooling, Event, Thresholds, Verdict};
use crate::store::StoreError;

/// KEYS: pins, cool, then the window's slices. ARGV: prefix, now_ms, min_sends, permille,
/// until_ms. Answers {verdict (0 open, 1 cooling, 2 tripped, 3 pinned), sent, validated,
/// until_ms, prefixes cooling}; expired cool-downs are dropped on the way.
static CHECK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {3, 0, 0, 0, 0} end
local now = tonumber(ARGV[2])
local all = redis.call('HGETALL', KEYS[2])
local count, mine = 0, nil
for i = 1, #all, 2 do
  local u = tonumber(string.match(all[i + 1], '^(%d+):'))
  if u and u > now then
    count = count + 1
    if all[i] == ARGV[1] then mine = all[i + 1] end
  else
    redis.call('HDEL', KEYS[2], all[i])
  end
end
if mine then
  local u, s, v = string.match(mine, '^(%d+):(%d+):(%d+)$')
  return {1, tonumber(s), tonumber(v), tonumber(u), count}
end
local s, v = 0, 0
for i = 3, #KEYS do
  local r = redis.call('HMGET', KEYS[i], 's', 'v')
  s = s + (tonumber(r[1]) or 0)
  v = v + (tonumber(r[2]) or 0)
end
if s >= tonumber(ARGV[3]) and v * 1000 < s * tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[5] .. ':' .. s .. ':' .. v)
  for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
  return {2, s, v, tonumber(ARGV[5]), count + 1}
end
return {0, s, v, 0, count}
",
    )
});
static RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('HINCRBY', KEYS[1], ARGV[1], 1) redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1",
    )
});
static REMEMBER: LazyLock<Script> =
    LazyLock::new(|| Script::new("redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1"));
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('GET', KEYS[1]) if v then redis.call('DEL', KEYS[1]) end return v",
    )
});
static STATUS: LazyLock<Script> = LazyLock::new(|| {
    Script::new("return {redis.call('HGETALL', KEYS[1]), redis.call('SMEMBERS', KEYS[2])}")
});
static LIFT: LazyLock<Script> =
    LazyLock::new(|| Script::new("return redis.call('HDEL', KEYS[1], ARGV[1])"));
static PIN: LazyLock<Script> =
    LazyLock::new(|| Script::new("return redis.call('SADD', KEYS[1], ARGV[1])"));
static UNPIN: LazyLock<Script> =
    LazyLock::new(|| Script::new("return redis.call('SREM', KEYS[1], ARGV[1])"));

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisHandle {
    fn pump(&self, what: &str) -> String {
        format!("{}:{{pump}}:{what}", self.prefix())
    }

    fn slice_key(&self, prefix: &str, slice: u64) -> String {
        self.pump(&format!("w:{prefix}:{slice}"))
    }

    /// Judges `prefix` by its window (see `CHECK`), tripping it when the thresholds say so.
    pub(crate) async fn pumping_check(
        &self,
        prefix: &str,
        now_ms: u64,
        slices: RangeInclusive<u64>,
        limits: Thresholds,
    ) -> Result<Check, StoreError> {
        let mut inv = CHECK.prepare_invoke();
        inv.key(self.pump("pins")).key(self.pump("cool"));
        for slice in slices {
            inv.key(self.slice_key(prefix, slice));
        }
        inv.arg(prefix)
            .arg(now_ms)
            .arg(limits.min_sends)
            .arg(limits.permille)
            .arg(limits.until_ms);
        let r: Vec<u64> = self.invoke(inv).await?;
        let [verdict, sent, validated, until_ms, cooling] = r[..] else {
            return Err(StoreError::Unavailable("unexpected pumping answer".into()));
        };
        let verdict = match verdict {
            1 => Verdict::Cooling,
            2 => Verdict::Tripped,
            3 => Verdict::Pinned,
            _ => Verdict::Open,
        };
        Ok(Check {
            verdict,
            sent,
            validated,
            until_ms,
            cooling,
        })
    }

    /// Counts a send or a validation in `slice`, kept for `keep_ms`.
    pub(crate) async fn pumping_record(
        &self,
        prefix: &str,
        event: Event,
        slice: u64,
        keep_ms: u64,
    ) -> Result<(), StoreError> {
        let mut inv = RECORD.prepare_invoke();
        inv.key(self.slice_key(prefix, slice))
            .arg(match event {
                Event::Sent => "s",
                Event::Validated => "v",
            })
            .arg(keep_ms);
        self.invoke::<i64>(inv).await.map(|_| ())
    }

    /// Remembers which prefix `id` was sent to, for the code's lifetime.
    pub(crate) async fn pumping_remember(
        &self,
        id: &str,
        prefix: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut inv = REMEMBER.prepare_invoke();
        inv.key(format!("{}:pv:{id}", self.prefix()))
            .arg(prefix)
            .arg(ms(ttl));
        self.invoke::<i64>(inv).await.map(|_| ())
    }

    /// The prefix `id` was sent to, forgotten as it is read (a code validates once).
    pub(crate) async fn pumping_take(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut inv = TAKE.prepare_invoke();
        inv.key(format!("{}:pv:{id}", self.prefix()));
        self.invoke(inv).await
    }

    /// The prefixes cooling down at `now_ms`, and the admin pins.
    pub(crate) async fn pumping_status(
        &self,
        now_ms: u64,
    ) -> Result<(Vec<Cooling>, Vec<String>), StoreError> {
        let mut inv = STATUS.prepare_invoke();
        inv.key(self.pump("cool")).key(self.pump("pins"));
        let (flat, pins): (Vec<String>, Vec<String>) = self.invoke(inv).await?;
        let cooling = flat
            .chunks_exact(2)
            .filter_map(|kv| {
                let mut parts = kv[1].split(':').map(str::parse::<u64>);
                let (Some(Ok(until_ms)), Some(Ok(sent)), Some(Ok(validated))) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return None;
                };
                (until_ms > now_ms).then(|| Cooling {
                    prefix: kv[0].clone(),
                    until_ms,
                    sent,
                    validated,
                })
            })
            .collect();
        Ok((cooling, pins))
    }

    /// Ends a cool-down: true when there was one.
    pub(crate) async fn pumping_lift(&self, prefix: &str) -> Result<bool, StoreError> {
        let mut inv = LIFT.prepare_invoke();
        inv.key(self.pump("cool")).arg(prefix);
        Ok(self.invoke::<i64>(inv).await? == 1)
    }

    /// Adds (`on`) or removes an admin pin: true when that changed something.
    pub(crate) async fn pumping_pin(&self, prefix: &str, on: bool) -> Result<bool, StoreError> {
        let mut inv = if on {
            PIN.prepare_invoke()
        } else {
            UNPIN.prepare_invoke()
        };
        inv.key(self.pump("pins")).arg(prefix);
        Ok(self.invoke::<i64>(inv).await? == 1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::super::testkit::RedisCluster;
    use super::super::{RedisSettings, RedisStore, RedisTarget, RedisTls};
    use crate::config::PumpingSettings;
    use crate::domain::{PhoneNumber, Secret};
    use crate::otp::ManualClock;
    use crate::policy::pumping::{PumpingGuard, PumpingMetrics};

    use super::*;

    fn guard(urls: &[String], clock: &ManualClock) -> PumpingGuard {
        let store = RedisStore::new(
            RedisSettings {
                target: RedisTarget::Cluster(
                    urls.iter().map(|u| Secret::new(u.as_str())).collect(),
                ),
                prefix: format!("pump{}", std::process::id()),
                timeout: Duration::from_secs(2),
                state_ttl: Duration::from_secs(600),
                wait_replicas: 0,
                tls: RedisTls::default(),
            },
            b"pumping-test-key-pumping-test-key",
        );
        PumpingGuard::new(
            &PumpingSettings {
                window: Duration::from_secs(100),
                min_sends: 3,
                min_conversion: 0.5,
                cooldown: Duration::from_secs(30),
                prefix_digits: 4,
                prefixes: Vec::new(),
                pinned_prefixes: Vec::new(),
            },
            Duration::from_secs(60),
            Arc::new(clock.clone()),
            PumpingMetrics::new().unwrap(),
        )
        .shared(&store)
    }

    #[tokio::test]
    async fn two_guards_on_a_cluster_share_counts_cool_downs_and_pins() {
        let cluster = RedisCluster::start(3, 0).unwrap();
        let clock = ManualClock::new();
        let a = guard(&cluster.urls(), &clock);
        let b = guard(&cluster.urls(), &clock);
        let phone = PhoneNumber::parse("+34600000001").unwrap();
        a.sent("id-1", &phone).await;
        b.validated("id-1").await;
        b.validated("id-1").await;
        a.sent("id-2", &phone).await;
        b.sent("id-3", &phone).await;
        // 3 sent, 1 validated (a code counts once, whichever replica validates it).
        assert!(!a.allows(&phone).await, "tripped");
        assert!(
            !b.allows(&phone).await,
            "cooling down on the other replica too"
        );
        let (cooling, _) = b.status().await.unwrap();
        assert_eq!(cooling.len(), 1);
        assert_eq!(
            (
                cooling[0].prefix.as_str(),
                cooling[0].sent,
                cooling[0].validated
            ),
            ("+3460", 3, 1)
        );
        assert!(a.lift("+3460").await.unwrap());
        assert!(!a.lift("+3460").await.unwrap());
        assert!(b.allows(&phone).await, "lifted for both, window empty");

        assert!(b.pin("+3460").await.unwrap());
        for i in 0..5 {
            a.sent(&format!("p-{i}"), &phone).await;
        }
        assert!(a.allows(&phone).await, "pinned on the other replica");
        assert_eq!(a.status().await.unwrap().1.len(), 1);
        assert!(a.unpin("+3460").await.unwrap());
        assert!(!b.allows(&phone).await, "5 sent, none validated");
        clock.advance(Duration::from_secs(31));
        assert!(
            a.allows(&phone).await,
            "the cool-down ended on the gateway clock"
        );
    }
}
