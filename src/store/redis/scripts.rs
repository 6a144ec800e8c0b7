//! The Lua scripts, one per store operation, so each operation is one atomic step on the
//! server. Every key a script touches shares the bucket's hash tag, so each script runs in one
//! Redis Cluster slot. Keys and arguments are documented above each script; times are the
//! caller's clock in Unix milliseconds (the rules' injected clock, not the server's).

/// Inserts a pending challenge if both send limits allow it.
///
/// KEYS: 1 challenge, 2 this client's sends to the number, 3 all clients' sends to the number.
/// ARGV: 1 now, 2 per-client max, 3 per-client window, 4 cap, 5 cap window, 6 code hash,
/// 7 expires at, 8 challenge TTL (ms), 9 send member (challenge id).
/// Returns 0 stored, 1 per-client quota, 2 all-clients cap, 3 id collision.
pub(super) const INSERT: &str = r#"
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[5]))
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 1 end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return 2 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 3 end
redis.call('HSET', KEYS[1], 'h', ARGV[6], 'x', ARGV[7], 'f', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('ZADD', KEYS[2], now, ARGV[9])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], now, ARGV[9])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return 0
"#;

/// Makes a challenge the client's current one for the number and removes the previous one.
///
/// KEYS: 1 this client's current-challenge pointer for the number.
/// ARGV: 1 the new challenge id, 2 the key prefix of challenges in this bucket, 3 pointer TTL.
/// The previous challenge's key is built here from the pointer: it shares the bucket's hash
/// tag (so the slot) with KEYS[1], which is what lets one script supersede it.
pub(super) const ACTIVATE: &str = r#"
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
if old and old ~= ARGV[1] then redis.call('DEL', ARGV[2] .. old) end
return 0
"#;

/// Removes a challenge whose SMS was not confirmed; refunds its send when asked.
///
/// KEYS: 1 challenge, 2 this client's sends, 3 all clients' sends.
/// ARGV: 1 send member, 2 `1` to refund.
pub(super) const DISCARD: &str = r#"
redis.call('DEL', KEYS[1])
if ARGV[2] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
return 0
"#;

/// Applies one attempt, as `domain::Challenge::attempt` does: expiry first, then the lock,
/// then the code. The code hashes are compared without an early exit, so the time does not
/// depend on how many leading bytes match.
///
/// KEYS: 1 challenge. ARGV: 1 presented code hash, 2 now, 3 max attempts.
/// Returns `V` valid (consumed), `I` invalid, `L` locked, `E` expired or no live challenge.
pub(super) const ATTEMPT: &str = r#"
local c = redis.call('HMGET', KEYS[1], 'h', 'x', 'f')
if not c[1] then return 'E' end
if tonumber(ARGV[2]) >= tonumber(c[2]) then
  redis.call('DEL', KEYS[1])
  return 'E'
end
local max = tonumber(ARGV[3])
if tonumber(c[3]) >= max then return 'L' end
local stored, presented = c[1], ARGV[1]
local diff = 0
if #stored ~= #presented then diff = 1 end
for i = 1, #presented do
  diff = bit.bor(diff, bit.bxor(string.byte(stored, i) or 0, string.byte(presented, i)))
end
if diff == 0 then
  redis.call('DEL', KEYS[1])
  return 'V'
end
if redis.call('HINCRBY', KEYS[1], 'f', 1) >= max then return 'L' end
return 'I'
"#;

/// Takes one request from a client's token bucket (the per-client `rate_limit`, shared by
/// every replica). Times are the Redis server's clock (`TIME`), the one clock all replicas
/// share; the bucket's key expires once it would be full again, so idle clients cost nothing.
///
/// KEYS: 1 the bucket (hash: tokens `t`, last refill `at` in ms).
/// ARGV: 1 requests per second, also the burst.
/// Returns 1 allowed, 0 throttled.
pub(super) const RATE: &str = r#"
local rate = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = tonumber(b[1]) or rate
local at = tonumber(b[2]) or now
if now > at then
  tokens = math.min(rate, tokens + (now - at) * rate / 1000)
  at = now
end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 't', tokens, 'at', at)
-- An empty bucket is full again after one second (burst = rate); a missing key reads full.
redis.call('PEXPIRE', KEYS[1], 1000)
return allowed
"#;
