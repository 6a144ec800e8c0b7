//! The Redis backend (single node or Redis Cluster), for several replicas sharing one state.
//!
//! Every operation is one Lua script (see `scripts`) over keys that share the hash tag of the
//! number's bucket (`domain::StoreBucket`), so it is atomic and runs in one Cluster slot. The id
//! carries that bucket, so validate-code, which only knows the id, reaches the same slot:
//!
//! - `<prefix>:{<bucket>}:c:<id hex>`: the challenge (hash: code HMAC `h`, expiry `x`, wrong
//!   attempts `f`), expiring with the code;
//! - `<prefix>:{<bucket>}:q:<number key>:<client tag>`: that client's sends to the number
//!   (sorted set by time), expiring with the per-client window;
//! - `<prefix>:{<bucket>}:a:<number key>`: every client's sends to the number, expiring with
//!   the all-clients window;
//! - `<prefix>:{<bucket>}:p:<number key>:<client tag>`: the client's current challenge id.
//!
//! The number key is a keyed hash of the number, so Redis never holds a phone number, and no
//! code is stored, only its HMAC. Every call has a deadline; a Redis that does not answer is a
//! `StoreError::Unavailable` (503), and the connection recovers by itself.

mod scripts;
#[doc(hidden)]
pub mod testkit;

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

static INSERT: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::INSERT));
static ACTIVATE: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::ACTIVATE));
static DISCARD: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::DISCARD));
static ATTEMPT: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::ATTEMPT));

/// Where the Redis backend connects. URLs may hold a password, so they are [`Secret`]s.
#[derive(Clone, Debug)]
pub enum RedisTarget {
    /// One server (`redis://` or `rediss://` URL).
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
    number_key: hmac::Key,
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
            number_key: hmac::Key::new(hmac::HMAC_SHA256, sub.as_ref()),
        }
    }

    async fn connection(&self) -> Result<Conn, StoreError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let t = self.settings.timeout;
        let conn = match &self.settings.target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.expose()).map_err(unavailable)?;
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
                let client =
                    redis::cluster::ClusterClientBuilder::new(urls.iter().map(Secret::expose))
                        .connection_timeout(t)
                        .response_timeout(t)
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

    /// Runs one script within the deadline.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        tokio::time::timeout(self.settings.timeout, invocation.invoke_async(&mut conn))
            .await
            .map_err(|_| unavailable("redis did not answer in time"))?
            .map_err(unavailable)
    }

    fn tag(&self, id: ChallengeId) -> String {
        format!("{}:{{{:04x}}}", self.settings.prefix, id.bucket().get())
    }

    fn challenge_key(&self, id: ChallengeId) -> String {
        format!("{}:c:{}", self.tag(id), hex(id.as_bytes()))
    }

    fn number(&self, phone: &PhoneNumber) -> String {
        let tag = hmac::sign(&self.number_key, phone.as_e164().as_bytes());
        hex(&tag.as_ref()[..12])
    }

    /// The keys of a send: this client's sends and every client's sends to the number.
    fn send_keys(
        &self,
        id: ChallengeId,
        client: ClientTag,
        phone: &PhoneNumber,
    ) -> (String, String) {
        let (tag, number) = (self.tag(id), self.number(phone));
        (
            format!("{tag}:q:{number}:{}", hex(client.as_bytes())),
            format!("{tag}:a:{number}"),
        )
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

    /// Runs one script within the store's deadline.
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.0.run(invocation).await
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
        let (mine, all) = self.send_keys(id, client, &challenge.phone);
        let ttl = challenge.expires_at_ms.saturating_sub(now_ms).max(1);
        let mut inv = INSERT.prepare_invoke();
        inv.key(self.challenge_key(id))
            .key(mine)
            .key(all)
            .arg(now_ms)
            .arg(quotas.per_client.max)
            .arg(millis(quotas.per_client.window))
            .arg(quotas.all_clients.max)
            .arg(millis(quotas.all_clients.window))
            .arg(&challenge.code_hash[..])
            .arg(challenge.expires_at_ms)
            .arg(ttl)
            .arg(hex(id.as_bytes()));
        match self.run::<i64>(inv).await? {
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
    ) -> Result<(), StoreError> {
        let pointer = format!(
            "{}:p:{}:{}",
            self.tag(id),
            self.number(phone),
            hex(client.as_bytes())
        );
        let mut inv = ACTIVATE.prepare_invoke();
        inv.key(pointer)
            .arg(hex(id.as_bytes()))
            .arg(format!("{}:c:", self.tag(id)))
            .arg(millis(self.settings.state_ttl));
        self.run::<i64>(inv).await.map(|_| ())
    }

    async fn discard(
        &self,
        id: ChallengeId,
        client: ClientTag,
        phone: &PhoneNumber,
        how: Discard,
    ) -> Result<(), StoreError> {
        let (mine, all) = self.send_keys(id, client, phone);
        let mut inv = DISCARD.prepare_invoke();
        inv.key(self.challenge_key(id))
            .key(mine)
            .key(all)
            .arg(hex(id.as_bytes()))
            .arg(if how == Discard::Refund { "1" } else { "0" });
        self.run::<i64>(inv).await.map(|_| ())
    }

    async fn attempt(
        &self,
        id: ChallengeId,
        presented: CodeHash,
        now_ms: u64,
        max_attempts: u32,
    ) -> Result<AttemptOutcome, StoreError> {
        let mut inv = ATTEMPT.prepare_invoke();
        inv.key(self.challenge_key(id))
            .arg(&presented[..])
            .arg(now_ms)
            .arg(max_attempts);
        let answer: String = self.run(inv).await?;
        Ok(match answer.as_str() {
            "V" => AttemptOutcome::Valid,
            "I" => AttemptOutcome::Invalid,
            "L" => AttemptOutcome::Locked,
            _ => AttemptOutcome::Expired,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let pong: String = tokio::time::timeout(
            self.settings.timeout,
            redis::cmd("PING").query_async(&mut conn),
        )
        .await
        .map_err(|_| unavailable("redis did not answer in time"))?
        .map_err(unavailable)?;
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
