//! The Lua scripts, one per store operation, so each operation is one atomic step on the
//! server. Every key a script touches shares one hash tag (the number's group), so each script
//! runs in one Redis Cluster slot. Keys and arguments are documented above each script; times
//! are the caller's clock in Unix milliseconds (the rules' injected clock, not the server's).
//!
//! Two kinds of key hold the state (see the module above for names):
//! - a challenge slice: a hash from challenge id (16 bytes) to its code HMAC (32 bytes), its
//!   wrong attempts (1 byte) and its expiry (decimal ms);
//! - a send slice: a hash from number key (12 bytes) to that number's send records in the
//!   slice, each [`RECORD`] bytes: time (6, big-endian ms), client tag (8), challenge id (16),
//!   the challenge's slice (4, big-endian), stage (1: `p` pending, `c` current, `s` settled).

/// Bytes of one send record.
pub(super) const RECORD: usize = 35;

/// Helpers of the scripts that read send records, prepended to their source by the caller.
pub(super) const RECORDS: &str = r#"
local R = 35
local function at(v, i)
  local a, b, c, d, e, f = string.byte(v, i, i + 5)
  return ((((a * 256 + b) * 256 + c) * 256 + d) * 256 + e) * 256 + f
end
local function slice_of(v, i)
  local a, b, c, d = string.byte(v, i + 30, i + 33)
  return ((a * 256 + b) * 256 + c) * 256 + d
end
"#;

/// Inserts a pending challenge if both send limits allow it.
///
/// KEYS: 1 the challenge's slice, then the number's send slices that a window may still
/// count, oldest first; the last is the current slice, which receives the new record.
/// ARGV: 1 now, 2 per-client max, 3 per-client window, 4 cap, 5 cap window, 6 challenge id,
/// 7 challenge value, 8 challenge TTL (ms), 9 number key, 10 the new send record,
/// 11 client tag, 12 TTL of the current send slice (ms).
/// Returns 0 stored, 1 per-client quota, 2 all-clients cap, 3 id collision.
pub(super) const INSERT: &str = r#"
local now, win, cap_win = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[5])
local mine, all = 0, 0
for k = 2, #KEYS do
  local v = redis.call('HGET', KEYS[k], ARGV[9])
  if v then
    for i = 1, #v, R do
      local age = now - at(v, i)
      if age < cap_win then all = all + 1 end
      if age < win and string.sub(v, i + 6, i + 13) == ARGV[11] then mine = mine + 1 end
    end
  end
end
if mine >= tonumber(ARGV[2]) then return 1 end
if all >= tonumber(ARGV[4]) then return 2 end
if redis.call('HEXISTS', KEYS[1], ARGV[6]) == 1 then return 3 end
redis.call('HSET', KEYS[1], ARGV[6], ARGV[7])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[8]) then redis.call('PEXPIRE', KEYS[1], ARGV[8]) end
local cur = KEYS[#KEYS]
redis.call('HSET', cur, ARGV[9], (redis.call('HGET', cur, ARGV[9]) or '') .. ARGV[10])
redis.call('PEXPIRE', cur, ARGV[12])
return 0
"#;

/// Makes a challenge the client's current one for the number and removes the client's
/// previous current one (other clients' challenges are untouched).
///
/// KEYS: the number's send slices that may hold its records, oldest first (the last is the
/// current slice). ARGV: 1 number key, 2 client tag, 3 challenge id, 4 the key prefix of
/// challenge slices (a slice number completes it), 5 a current record for the challenge,
/// appended when none of its records is found (its slice expired with the SMS on its way).
/// The previous challenge's slice is built here from its record: it shares the hash tag, so
/// the slot, with the keys.
pub(super) const ACTIVATE: &str = r#"
local found = false
for k = 1, #KEYS do
  local v = redis.call('HGET', KEYS[k], ARGV[1])
  if v then
    local out, changed = {}, false
    for i = 1, #v, R do
      local rec = string.sub(v, i, i + R - 1)
      if string.sub(rec, 7, 14) == ARGV[2] then
        local id, stage = string.sub(rec, 15, 30), string.sub(rec, 35, 35)
        if id == ARGV[3] then
          rec = string.sub(rec, 1, 34) .. 'c'
          found, changed = true, true
        elseif stage == 'c' then
          redis.call('HDEL', ARGV[4] .. string.format('%d', slice_of(v, i)), id)
          rec = string.sub(rec, 1, 34) .. 's'
          changed = true
        end
      end
      out[#out + 1] = rec
    end
    if changed then redis.call('HSET', KEYS[k], ARGV[1], table.concat(out)) end
  end
end
if not found then
  local cur = KEYS[#KEYS]
  redis.call('HSET', cur, ARGV[1], (redis.call('HGET', cur, ARGV[1]) or '') .. ARGV[5])
end
return 0
"#;

/// Removes a challenge whose SMS was not confirmed; refunds its send when asked, else keeps
/// it counted as settled.
///
/// KEYS: 1 the challenge's slice, then the number's send slices (as for activation).
/// ARGV: 1 challenge id, 2 number key, 3 client tag, 4 `1` to refund.
pub(super) const DISCARD: &str = r#"
redis.call('HDEL', KEYS[1], ARGV[1])
for k = 2, #KEYS do
  local v = redis.call('HGET', KEYS[k], ARGV[2])
  if v then
    local out, changed = {}, false
    for i = 1, #v, R do
      local rec = string.sub(v, i, i + R - 1)
      if string.sub(rec, 15, 30) == ARGV[1] and string.sub(rec, 7, 14) == ARGV[3] then
        changed = true
        if ARGV[4] ~= '1' then out[#out + 1] = string.sub(rec, 1, 34) .. 's' end
      else
        out[#out + 1] = rec
      end
    end
    if changed then
      if #out == 0 then
        redis.call('HDEL', KEYS[k], ARGV[2])
      else
        redis.call('HSET', KEYS[k], ARGV[2], table.concat(out))
      end
    end
  end
end
return 0
"#;

/// Applies one attempt, as `domain::Challenge::attempt` does: expiry first, then the lock,
/// then the code. The code hashes are compared without an early exit, so the time does not
/// depend on how many leading bytes match.
///
/// KEYS: 1 the challenge's slice. ARGV: 1 challenge id, 2 presented code hash, 3 now,
/// 4 max attempts (at most 255).
/// Returns `V` valid (consumed), `I` invalid, `L` locked, `E` expired or no live challenge.
pub(super) const ATTEMPT: &str = r#"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 'E' end
local stored, fails, rest = string.sub(v, 1, 32), string.byte(v, 33), string.sub(v, 34)
if tonumber(ARGV[3]) >= tonumber(rest) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 'E'
end
local max = tonumber(ARGV[4])
if fails >= max then return 'L' end
local presented = ARGV[2]
local diff = 0
if #stored ~= #presented then diff = 1 end
for i = 1, #presented do
  diff = bit.bor(diff, bit.bxor(string.byte(stored, i) or 0, string.byte(presented, i)))
end
if diff == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 'V'
end
fails = fails + 1
redis.call('HSET', KEYS[1], ARGV[1], stored .. string.char(fails) .. rest)
if fails >= max then return 'L' end
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
