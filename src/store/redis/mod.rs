//! The Redis backend (single node or Redis Cluster), for several replicas sharing one state.
//!
//! Every operation is one Lua script (see `scripts`) over keys that share the hash tag of the
//! number's group (the top 10 bits of its `domain::StoreBucket`), so it is atomic and runs in
//! one Cluster slot. The id carries that bucket, so validate-code, which only knows the id,
//! reaches the same slot. State is packed into a few hashes per group rather than keys per
//! code, because a Redis key costs about 100 bytes before it holds anything:
//!
//! - `<prefix>:{<group>}c<n>`: the challenges whose ids were issued in minute `n` (hash: id →
//!   code HMAC, wrong attempts, expiry), expiring with the last of its codes;
//! - `<prefix>:{<group>}s<n>`: the sends made in slice `n` of the state lifetime (an eighth of
//!   the longest send window or code lifetime), as fixed-size records per number key (hash:
//!   number key → records of time, client tag, challenge id and stage), expiring once no
//!   window can count them. The sliding windows read the slices they overlap.
//!
//! The number key is a keyed hash of the number, so Redis never holds a phone number, and no
//! code is stored, only its HMAC. Every call has a deadline; a Redis that does not answer is a
//! `StoreError::Unavailable` (503), and the connection recovers by itself.

mod pumping;
mod quota;
mod scripts;
#[doc(hidden)]
pub mod testkit;
pub(crate) mod usage;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use ring::hmac;
use tokio::sync::Mutex;

use super::{ChallengeStore, Discard, InsertError, SendQuotas, StoreError};
use crate::domain::{
    AttemptOutcome, Challenge, ChallengeId, ClientTag, CodeHash, PhoneNumber, Secret,
};
use crate::metrics::StoreMetrics;

pub use quota::{QuotaCounter, QuotaPeriod};

static INSERT: LazyLock<Lua> = LazyLock::new(|| Lua::with_records(scripts::INSERT));
static ACTIVATE: LazyLock<Lua> = LazyLock::new(|| Lua::with_records(scripts::ACTIVATE));
static DISCARD: LazyLock<Lua> = LazyLock::new(|| Lua::with_records(scripts::DISCARD));
static ATTEMPT: LazyLock<Lua> = LazyLock::new(|| Lua::new(scripts::ATTEMPT.to_owned()));
static RATE: LazyLock<Lua> = LazyLock::new(|| Lua::new(scripts::RATE.to_owned()));

/// Challenge slices span one minute of issue times.
const CHALLENGE_SLICE_SECS: u64 = 60;
/// The state lifetime is cut into this many send slices (so a window reads at most one more).
const SEND_SLICES: u64 = 8;
/// Bucket bits dropped to form a group: 1,024 hash tags, enough to spread over any Cluster,
/// few enough that a group's slices hold many codes each.
const GROUP_SHIFT: u32 = 4;

/// A script's source and SHA1: sent as `EVALSHA`, and as `EVAL` once per node that does not
/// know it yet (after a restart or a fail-over to a replica that never loaded it).
struct Lua {
    src: String,
    sha: String,
}

impl Lua {
    fn new(src: String) -> Lua {
        let sha = Script::new(&src).get_hash().to_owned();
        Lua { src, sha }
    }

    /// A script that reads send records: the record helpers come first.
    fn with_records(body: &str) -> Lua {
        Lua::new(format!("{}{body}", scripts::RECORDS))
    }
}

/// One script call being built: its keys and arguments, and whether it must reach a replica
/// before it counts (see [`RedisSettings::wait_replicas`]).
struct Call {
    script: &'static Lua,
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
    durable: bool,
}

impl Call {
    fn new(script: &'static Lua) -> Call {
        Call {
            script,
            keys: Vec::with_capacity(12),
            args: Vec::with_capacity(12),
            durable: false,
        }
    }

    fn key(&mut self, key: String) -> &mut Call {
        self.keys.push(key);
        self
    }

    fn arg(&mut self, arg: impl redis::ToRedisArgs) -> &mut Call {
        self.args.extend(arg.to_redis_args());
        self
    }

    /// The answer is withheld until `wait_replicas` replicas hold the write.
    fn durable(&mut self) -> &mut Call {
        self.durable = true;
        self
    }
}

/// Where the Redis backend connects. URLs may hold a password, so they are [`Secret`]s.
#[derive(Clone, Debug)]
pub enum RedisTarget {
    /// One server (`redis://` URL).
    Single(Secret),
    /// A Cluster, by any of its nodes' URLs.
    Cluster(Vec<Secret>),
}

/// Settings of the Redis backend.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// Where to connect.
    pub target: RedisTarget,
    /// Prefix of every key, so several deployments can share a server.
    pub prefix: String,
    /// Deadline of every call (connect included).
    pub timeout: Duration,
    /// How long per-client "current challenge" pointers live (the longest of the code lifetime
    /// and the send windows).
    pub state_ttl: Duration,
    /// Replicas that must acknowledge an insert or an attempt (`WAIT`, in the same round trip
    /// as the script) before the gateway answers; fewer within `timeout` is a 503. Redis
    /// replicates asynchronously, so with 0 a master killed right after answering may lose an
    /// acknowledged code, or forget that a code was used, once its replica takes over.
    pub wait_replicas: u32,
    /// Certificates for `rediss://` beyond the system's roots.
    pub tls: RedisTls,
}

/// TLS material for `rediss://` URLs (the URL scheme turns TLS on; this only says whom to
/// trust and who we are).
#[derive(Clone, Debug, Default)]
pub struct RedisTls {
    /// PEM CA bundle that signs the servers' certificates; none trusts the system's roots.
    pub ca: Option<Vec<u8>>,
    /// PEM client certificate and key, for servers that authenticate clients (Redis's
    /// `tls-auth-clients yes`, its default).
    pub client: Option<(Vec<u8>, Secret<Vec<u8>>)>,
}

impl RedisTls {
    fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }

    fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.expose_value().clone(),
                }),
            root_cert: self.ca.clone(),
        }
    }
}

/// A live connection: a reconnecting single-node manager or a Cluster connection (which
/// follows slot moves and fail-overs itself). Both are cheap clones of one multiplexed socket.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Redis-backed [`ChallengeStore`]; cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    settings: Arc<RedisSettings>,
    /// Connected on first use (a Redis that is down at start makes the gateway not ready
    /// rather than stopping it) and kept; both kinds reconnect on their own afterwards.
    conn: Arc<Mutex<Option<Conn>>>,
    /// When a failed call last dropped the Cluster connection (see [`RedisStore::forget`]).
    forgot_at: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    number_key: hmac::Key,
    /// Recorded by the [`super::Store`] dispatch, the one place every backend call passes.
    pub(in crate::store) metrics: StoreMetrics,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.settings.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisStore {
    /// A store that connects on first use. `secret` is the gateway's hash key, from which the
    /// key that hashes numbers into key names is derived.
    pub fn new(settings: RedisSettings, secret: &[u8]) -> RedisStore {
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let sub = hmac::sign(&root, b"otp-gateway/redis-number-key/v1");
        RedisStore {
            settings: Arc::new(settings),
            conn: Arc::new(Mutex::new(None)),
            forgot_at: Arc::new(std::sync::Mutex::new(None)),
            number_key: hmac::Key::new(hmac::HMAC_SHA256, sub.as_ref()),
            metrics: StoreMetrics::detached(),
        }
    }

    /// The same store, recording into `metrics` (the gateway's registry).
    pub fn with_metrics(mut self, metrics: StoreMetrics) -> RedisStore {
        self.metrics = metrics;
        self
    }

    async fn connection(&self) -> Result<Conn, StoreError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let t = self.settings.timeout;
        let conn = match &self.settings.target {
            RedisTarget::Single(url) => {
                let tls = &self.settings.tls;
                let client = if tls.is_set() {
                    redis::Client::build_with_tls(url.expose(), tls.certificates())
                } else {
                    redis::Client::open(url.expose())
                }
                .map_err(unavailable)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(t))
                    .set_response_timeout(Some(t))
                    .set_number_of_retries(1);
                let m = tokio::time::timeout(t, ConnectionManager::new_with_config(client, config))
                    .await
                    .map_err(|_| unavailable("connect timed out"))?
                    .map_err(unavailable)?;
                Conn::Single(m)
            }
            RedisTarget::Cluster(urls) => {
                let mut builder =
                    redis::cluster::ClusterClientBuilder::new(urls.iter().map(Secret::expose));
                if self.settings.tls.is_set() {
                    builder = builder.certs(self.settings.tls.certificates());
                }
                let client = builder
                    .connection_timeout(t)
                    .response_timeout(t)
                    // No retry of a request: one whose connection broke may have run, and
                    // running a script twice would spend an attempt twice (or report a
                    // used code as expired). A failed call is a 503 the caller may repeat;
                    // the error still makes the connection re-read the slot map, so
                    // requests reach a promoted replica as soon as the Cluster has one.
                    .retries(0)
                    .build()
                    .map_err(unavailable)?;
                let c = tokio::time::timeout(t, client.get_async_connection())
                    .await
                    .map_err(|_| unavailable("connect timed out"))?
                    .map_err(unavailable)?;
                Conn::Cluster(c)
            }
        };
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// After a failed call on a Cluster: drops the connection, so the next call builds a new
    /// one from the Cluster's current slot map. The redis crate re-reads the map on MOVED
    /// and on a missing node, but a master that died keeps its slots in the map and is only
    /// reconnected to, forever; after a fail-over only a fresh map reaches the promoted
    /// replica. At most every 250 ms, so an outage does not become a reconnect storm.
    async fn forget(&self, conn: &Conn) {
        if !matches!(conn, Conn::Cluster(_)) {
            return;
        }
        {
            let mut at = self.forgot_at.lock().unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            if at.is_some_and(|t| now.duration_since(t) < Duration::from_millis(250)) {
                return;
            }
            *at = Some(now);
        }
        *self.conn.lock().await = None;
    }

    /// Runs one script within the deadline, in one round trip (two the first time a node
    /// meets the script), followed by `WAIT` in the same pipeline for a durable call.
    async fn run<T: redis::FromRedisValue>(&self, call: &Call) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        let wait = if call.durable {
            self.settings.wait_replicas
        } else {
            0
        };
        let attempt = async {
            match self.exec(&mut conn, call, false, wait).await {
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    self.exec(&mut conn, call, true, wait).await
                }
                other => other,
            }
        };
        let answer = tokio::time::timeout(self.settings.timeout, attempt)
            .await
            .map_err(|_| unavailable("redis did not answer in time"))
            .and_then(|r| r.map_err(unavailable));
        if answer.is_err() {
            self.forget(&conn).await;
        }
        let (value, acked) = answer?;
        if acked < i64::from(wait) {
            return Err(unavailable(format!(
                "{acked} of {wait} replicas acknowledged the write in time"
            )));
        }
        redis::from_redis_value(value).map_err(unavailable)
    }

    async fn exec(
        &self,
        conn: &mut Conn,
        call: &Call,
        with_source: bool,
        wait: u32,
    ) -> redis::RedisResult<(Value, i64)> {
        let mut pipe = redis::pipe();
        if with_source {
            pipe.cmd("EVAL").arg(&call.script.src);
        } else {
            pipe.cmd("EVALSHA").arg(&call.script.sha);
        }
        pipe.arg(call.keys.len()).arg(&call.keys).arg(&call.args);
        if wait == 0 {
            let (value,): (Value,) = pipe.query_async(conn).await?;
            return Ok((value, 0));
        }
        // Without a key, WAIT follows the script to its node (the pipeline's route); its own
        // deadline leaves room for the answer within ours.
        pipe.cmd("WAIT")
            .arg(wait)
            .arg(millis(self.settings.timeout / 2));
        pipe.query_async(conn).await
    }

    /// Takes one request from `client_id`'s token bucket (`rate` per second, burst `rate`),
    /// shared by every replica: true when the request may proceed. One script on the key
    /// `<prefix>:{rl:<client id hex>}:rl`, timed by the Redis server's clock so replicas with
    /// skewed clocks still share one bucket.
    pub async fn take_token(&self, client_id: &str, rate: u32) -> Result<bool, StoreError> {
        let started = std::time::Instant::now();
        let mut call = Call::new(&RATE);
        call.key(format!(
            "{}:{{rl:{}}}:rl",
            self.settings.prefix,
            hex(client_id.as_bytes())
        ))
        .arg(rate);
        let result = self.run::<i64>(&call).await.map(|allowed| allowed == 1);
        self.metrics.record(
            "rate_limit",
            started.elapsed(),
            result.as_ref().err().map(|_| "unavailable"),
        );
        result
    }

    /// The hash tag of the challenge's group, with the prefix: every key of one number.
    fn tag(&self, id: ChallengeId) -> String {
        format!(
            "{}:{{{:03x}}}",
            self.settings.prefix,
            id.bucket().get() >> GROUP_SHIFT
        )
    }

    fn challenge_slice(id: ChallengeId) -> u64 {
        id.issued_at_secs() / CHALLENGE_SLICE_SECS
    }

    /// The challenge slice holding `id`.
    fn challenge_key(&self, id: ChallengeId) -> String {
        format!("{}c{}", self.tag(id), Self::challenge_slice(id))
    }

    /// The number's key within its group's slices: 12 bytes of a keyed hash.
    fn number(&self, phone: &PhoneNumber) -> [u8; 12] {
        let tag = hmac::sign(&self.number_key, phone.as_e164().as_bytes());
        let mut key = [0u8; 12];
        key.copy_from_slice(&tag.as_ref()[..12]);
        key
    }

    /// Length of a send slice: an eighth of the state lifetime, in whole seconds, so a send's
    /// slice follows from its time alone.
    fn send_slice_ms(&self) -> u64 {
        (millis(self.settings.state_ttl) / SEND_SLICES / 1000).max(1) * 1000
    }

    /// The send slices a look `span` back from `now_ms` reads, oldest first (the last one is
    /// the current slice).
    fn send_keys(&self, id: ChallengeId, now_ms: u64, span: u64) -> Vec<String> {
        let slice = self.send_slice_ms();
        let tag = self.tag(id);
        (now_ms.saturating_sub(span) / slice..=now_ms / slice)
            .map(|n| format!("{tag}s{n}"))
            .collect()
    }

    /// One send record (layout in `scripts`).
    fn record(at_ms: u64, client: ClientTag, id: ChallengeId, stage: u8) -> Vec<u8> {
        let mut r = Vec::with_capacity(scripts::RECORD);
        r.extend_from_slice(&at_ms.to_be_bytes()[2..]);
        r.extend_from_slice(client.as_bytes());
        r.extend_from_slice(id.as_bytes());
        let slice = u32::try_from(Self::challenge_slice(id)).unwrap_or(u32::MAX);
        r.extend_from_slice(&slice.to_be_bytes());
        r.push(stage);
        r
    }
}

/// The store's connection, deadline and key prefix, for other state kept in the same Redis
/// (the shared delivery state): one connection and one set of timeouts per gateway.
#[derive(Clone, Debug)]
pub(crate) struct RedisHandle(RedisStore);

impl RedisHandle {
    /// Prefix of every key this deployment owns.
    pub(crate) fn prefix(&self) -> &str {
        &self.0.settings.prefix
    }

    /// Runs one script within the store's deadline (EVALSHA, loading the script when the node
    /// does not know it yet); a failure makes a Cluster connection re-read the slot map, as the
    /// store's own calls do.
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let store = &self.0;
        let mut conn = store.connection().await?;
        let answer =
            tokio::time::timeout(store.settings.timeout, invocation.invoke_async(&mut conn))
                .await
                .map_err(|_| unavailable("redis did not answer in time"))
                .and_then(|r| r.map_err(unavailable));
        if answer.is_err() {
            store.forget(&conn).await;
        }
        answer
    }
}

impl RedisStore {
    /// A handle on this store's connection for other Redis users.
    pub(crate) fn handle(&self) -> RedisHandle {
        RedisHandle(self.clone())
    }
}

impl ChallengeStore for RedisStore {
    async fn insert_pending(
        &self,
        challenge: Challenge,
        client: ClientTag,
        quotas: SendQuotas,
        now_ms: u64,
    ) -> Result<(), InsertError> {
        let id = challenge.id;
        let per_client_ms = millis(quotas.per_client.window);
        let all_clients_ms = millis(quotas.all_clients.window);
        let ttl = challenge.expires_at_ms.saturating_sub(now_ms).max(1);
        // Records stay while a window may count them or their challenge may still be live.
        let span = per_client_ms
            .max(all_clients_ms)
            .max(millis(self.settings.state_ttl));
        let mut value = Vec::with_capacity(48);
        value.extend_from_slice(&challenge.code_hash);
        value.push(0);
        value.extend_from_slice(challenge.expires_at_ms.to_string().as_bytes());
        let mut inv = Call::new(&INSERT);
        inv.durable().key(self.challenge_key(id));
        for key in self.send_keys(id, now_ms, per_client_ms.max(all_clients_ms)) {
            inv.key(key);
        }
        inv.arg(now_ms)
            .arg(quotas.per_client.max)
            .arg(per_client_ms)
            .arg(quotas.all_clients.max)
            .arg(all_clients_ms)
            .arg(&id.as_bytes()[..])
            .arg(value)
            .arg(ttl)
            .arg(&self.number(&challenge.phone)[..])
            .arg(Self::record(now_ms, client, id, b'p'))
            .arg(&client.as_bytes()[..])
            .arg(self.send_slice_ms().saturating_add(span));
        match self.run::<i64>(&inv).await? {
            0 => Ok(()),
            1 => Err(InsertError::QuotaExceeded),
            2 => Err(InsertError::NumberCapExceeded),
            // Two live challenges with one id: refuse rather than overwrite the other one.
            _ => Err(unavailable("challenge id collision").into()),
        }
    }

    async fn activate(
        &self,
        id: ChallengeId,
        client: ClientTag,
        phone: &PhoneNumber,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut inv = Call::new(&ACTIVATE);
        for key in self.send_keys(id, now_ms, millis(self.settings.state_ttl)) {
            inv.key(key);
        }
        inv.arg(&self.number(phone)[..])
            .arg(&client.as_bytes()[..])
            .arg(&id.as_bytes()[..])
            .arg(format!("{}c", self.tag(id)))
            // At time 0 no window counts it: it only keeps the challenge findable.
            .arg(Self::record(0, client, id, b'c'));
        self.run::<i64>(&inv).await.map(|_| ())
    }

    async fn discard(
        &self,
        id: ChallengeId,
        client: ClientTag,
        phone: &PhoneNumber,
        how: Discard,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut inv = Call::new(&DISCARD);
        inv.key(self.challenge_key(id));
        for key in self.send_keys(id, now_ms, millis(self.settings.state_ttl)) {
            inv.key(key);
        }
        inv.arg(&id.as_bytes()[..])
            .arg(&self.number(phone)[..])
            .arg(&client.as_bytes()[..])
            .arg(if how == Discard::Refund { "1" } else { "0" });
        self.run::<i64>(&inv).await.map(|_| ())
    }

    async fn attempt(
        &self,
        id: ChallengeId,
        presented: CodeHash,
        now_ms: u64,
        max_attempts: u32,
    ) -> Result<AttemptOutcome, StoreError> {
        let mut inv = Call::new(&ATTEMPT);
        inv.durable()
            .key(self.challenge_key(id))
            .arg(&id.as_bytes()[..])
            .arg(&presented[..])
            .arg(now_ms)
            // The count is one byte on the server.
            .arg(max_attempts.min(255));
        let answer: String = self.run(&inv).await?;
        Ok(match answer.as_str() {
            "V" => AttemptOutcome::Valid,
            "I" => AttemptOutcome::Invalid,
            "L" => AttemptOutcome::Locked,
            _ => AttemptOutcome::Expired,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let answer = tokio::time::timeout(
            self.settings.timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .map_err(|_| unavailable("redis did not answer in time"))
        .and_then(|r| r.map_err(unavailable));
        if answer.is_err() {
            self.forget(&conn).await;
        }
        let pong = answer?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(unavailable(format!("unexpected PING answer {pong:?}")))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::testkit::{RedisCluster, RedisServer};
    use super::*;

    fn settings(target: RedisTarget) -> RedisSettings {
        RedisSettings {
            target,
            prefix: format!("t{}", std::process::id()),
            timeout: Duration::from_secs(2),
            state_ttl: Duration::from_secs(600),
            wait_replicas: 0,
            tls: RedisTls::default(),
        }
    }

    #[tokio::test]
    async fn redis_store_satisfies_the_store_contract_on_one_node() {
        let server = RedisServer::start().unwrap();
        let url = server.url();
        let n = std::sync::atomic::AtomicU32::new(0);
        crate::store::contract::run(|| {
            // A fresh prefix per check, as a fresh memory store is empty.
            let mut s = settings(RedisTarget::Single(Secret::new(url.clone())));
            s.prefix = format!(
                "{}-{}",
                s.prefix,
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            RedisStore::new(s, b"redis-contract-key-redis-contract-key")
        })
        .await;
    }

    #[tokio::test]
    async fn redis_store_satisfies_the_store_contract_on_a_cluster() {
        let cluster = RedisCluster::start(3, 0).unwrap();
        let urls = cluster.urls();
        let n = std::sync::atomic::AtomicU32::new(0);
        crate::store::contract::run(|| {
            let mut s = settings(RedisTarget::Cluster(
                urls.iter().map(|u| Secret::new(u.as_str())).collect(),
            ));
            s.prefix = format!(
                "{}-{}",
                s.prefix,
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            RedisStore::new(s, b"redis-contract-key-redis-contract-key")
        })
        .await;
    }

    #[tokio::test]
    async fn every_key_expires_and_none_holds_a_phone_number() {
        let server = RedisServer::start().unwrap();
        let store = RedisStore::new(
            settings(RedisTarget::Single(Secret::new(server.url()))),
            b"redis-contract-key-redis-contract-key",
        );
        let quotas = SendQuotas {
            per_client: super::super::SendQuota {
                max: 5,
                window: Duration::from_secs(3600),
            },
            all_clients: super::super::SendQuota {
                max: 10,
                window: Duration::from_secs(86_400),
            },
        };
        let now = 1_800_000_000_000;
        let client = ClientTag::of("app");
        let key = crate::domain::IdKey::derive(b"id-key");
        let bucket = crate::domain::StoreBucket::of(&PhoneNumber::parse("+34612340000").unwrap());
        for i in 0..20u8 {
            let phone = PhoneNumber::parse(&format!("+3461234{i:04}")).unwrap();
            let minted = crate::domain::AuthenticationId::mint_in_bucket(
                &key,
                "app",
                now / 1000,
                u64::from(i) << 20,
                bucket,
            );
            let id = ChallengeId::from(&minted);
            let challenge = Challenge {
                id,
                phone: phone.clone(),
                code_hash: [0xc0; 32],
                expires_at_ms: now + 300_000,
                failed_attempts: 0,
            };
            store
                .insert_pending(challenge, client, quotas, now)
                .await
                .unwrap();
            if i % 2 == 0 {
                store.activate(id, client, &phone, now + 1).await.unwrap();
            } else {
                store
                    .discard(id, client, &phone, Discard::KeepCounted, now + 1)
                    .await
                    .unwrap();
            }
        }
        let mut conn = redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg(format!("{}*", store.settings.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        // Twenty codes in one group, issued in one minute: one challenge slice, one send slice.
        let names: Vec<_> = keys.iter().map(|k| String::from_utf8_lossy(k)).collect();
        assert_eq!(keys.len(), 2, "keys: {names:?}");
        for key in &keys {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(ttl > 0, "{} has no expiry", String::from_utf8_lossy(key));
            let fields: Vec<Vec<u8>> = redis::cmd("HGETALL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            let dump: Vec<u8> = key.iter().chain(fields.iter().flatten()).copied().collect();
            // The store is handed code HMACs only; numbers it hashes itself.
            assert!(
                !dump.windows(5).any(|w| w == b"61234"),
                "a phone number in the clear"
            );
        }
    }

    /// A throw-away CA, a server certificate for 127.0.0.1 and a client certificate, as PEM
    /// files in `dir`: (ca, server cert, server key, client cert, client key).
    fn certificates(dir: &std::path::Path) -> [std::path::PathBuf; 5] {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        // OpenSSL (redis-server) wants a named issuer that may sign certificates.
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "otp-gateway test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
                .unwrap()
                .signed_by(&key, &ca, &ca_key)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf("127.0.0.1");
        let (client_cert, client_key) = leaf("otp-gateway");
        std::fs::create_dir_all(dir).unwrap();
        [
            ("ca.pem", ca.pem()),
            ("server.pem", server_cert),
            ("server-key.pem", server_key),
            ("client.pem", client_cert),
            ("client-key.pem", client_key),
        ]
        .map(|(name, pem)| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        })
    }

    #[tokio::test]
    async fn rediss_connects_with_the_configured_ca_and_client_certificate_only() {
        let dir = std::env::temp_dir().join(format!("otpgw-rediss-{}", std::process::id()));
        let [ca, cert, key, client_cert, client_key] = certificates(&dir);
        let (_server, tls_port) = RedisServer::start_tls(&cert, &key, &ca).unwrap();
        let url = Secret::new(format!("rediss://127.0.0.1:{tls_port}/"));
        let store = |tls: RedisTls| {
            let mut s = settings(RedisTarget::Single(url.clone()));
            s.timeout = Duration::from_millis(1500);
            s.tls = tls;
            RedisStore::new(s, b"redis-contract-key-redis-contract-key")
        };
        let ca_pem = std::fs::read(&ca).unwrap();
        let client = (
            std::fs::read(&client_cert).unwrap(),
            Secret::wrap(std::fs::read(&client_key).unwrap()),
        );

        let trusted = store(RedisTls {
            ca: Some(ca_pem.clone()),
            client: Some(client.clone()),
        });
        trusted.ping().await.unwrap();
        let id = ChallengeId::from_bytes(crate::domain::with_bucket_bits([5; 16], 9));
        let phone = PhoneNumber::parse("+34612345678").unwrap();
        let challenge = Challenge {
            id,
            phone,
            code_hash: [5; 32],
            expires_at_ms: 60_000,
            failed_attempts: 0,
        };
        let quota = super::super::SendQuota {
            max: 1,
            window: Duration::from_secs(60),
        };
        let quotas = SendQuotas {
            per_client: quota,
            all_clients: quota,
        };
        trusted
            .insert_pending(challenge, ClientTag::of("app"), quotas, 0)
            .await
            .unwrap();
        assert_eq!(
            trusted.attempt(id, [5; 32], 1, 3).await.unwrap(),
            AttemptOutcome::Valid
        );

        // The system's roots do not know the test CA; the server demands a client certificate.
        let unknown_ca = store(RedisTls {
            ca: None,
            client: Some(client),
        });
        assert!(matches!(
            unknown_ca.ping().await,
            Err(StoreError::Unavailable(_))
        ));
        let anonymous = store(RedisTls {
            ca: Some(ca_pem),
            client: None,
        });
        assert!(matches!(
            anonymous.ping().await,
            Err(StoreError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn a_redis_that_is_down_is_unavailable_and_recovers_by_itself() {
        let mut server = RedisServer::start().unwrap();
        let addr = server.addr();
        let mut s = settings(RedisTarget::Single(Secret::new(server.url())));
        s.timeout = Duration::from_millis(500);
        let store = RedisStore::new(s, b"redis-contract-key-redis-contract-key");
        store.ping().await.unwrap();
        server.kill();
        assert!(matches!(
            store.ping().await,
            Err(StoreError::Unavailable(_))
        ));
        let _again = RedisServer::start_on(addr.port()).unwrap();
        let mut up = false;
        for _ in 0..50 {
            if store.ping().await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "the store reconnected");
    }
}
