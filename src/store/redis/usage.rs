//! The usage counters' Redis side: one hash per UTC day, `<prefix>:usage:<YYYY-MM-DD>`, whose
//! fields are `<client id>:<counter>`, so a report over a range reads one hash per day and
//! sees every client, those of external issuers included, without a registry of ids. Each
//! addition re-arms the hash's TTL (the retention), so old days expire on their own.

use std::sync::LazyLock;

use super::RedisHandle;
use crate::store::StoreError;

/// KEYS: 1 the day's hash. ARGV: 1 TTL in seconds, then field, increment pairs.
static ADD: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
for i = 2, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
",
    )
});

static READ: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new("return redis.call('HGETALL', KEYS[1])"));

fn day_key(redis: &RedisHandle, day: &str) -> String {
    format!("{}:usage:{day}", redis.prefix())
}

/// Adds `increments` (field, amount) to the day's hash in one call and re-arms its TTL.
pub(crate) async fn add_usage(
    redis: &RedisHandle,
    day: &str,
    increments: &[(String, u64)],
    ttl_secs: u64,
) -> Result<(), StoreError> {
    let mut inv = ADD.prepare_invoke();
    inv.key(day_key(redis, day)).arg(ttl_secs);
    for (field, n) in increments {
        inv.arg(field).arg(*n);
    }
    redis.invoke::<i64>(inv).await.map(|_| ())
}

/// Every (field, count) of the day's hash.
pub(crate) async fn read_usage(
    redis: &RedisHandle,
    day: &str,
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut inv = READ.prepare_invoke();
    inv.key(day_key(redis, day));
    let flat: Vec<String> = redis.invoke(inv).await?;
    Ok(flat
        .chunks_exact(2)
        .filter_map(|p| Some((p[0].clone(), p[1].parse().ok()?)))
        .collect())
}
