-- wrk script of scripts/bench.sh and scripts/bench-smoke.sh.
-- wrk ... -s wrk.lua URL -- MODE [TOKEN] [FIRST_NUMBER] [POOL_PREFIX]
--   echo      the reference server's body (POST URL as is)
--   send      send-code; thread t sends to FIRST_NUMBER + t * 10,000,000 + n, so every
--             request goes to a number of its own (per-number limits never refuse it)
--   validate  validate-code with the bodies of POOL_PREFIX.<t>, one line each, each sent once
--   mix       send and validate alternately (1:1), as above
-- Answers are counted by class in response(); done() prints one line "BENCH_JSON {...}".
-- Only 2xx answers are successes: scripts/bench.sh divides those by the duration.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local mode, token, number, pool, next_line, flip
local send_path = "/one-time-password-sms/v1/send-code"
local validate_path = "/one-time-password-sms/v1/validate-code"
local echo_request
s2, s4, s5, other, exhausted = 0, 0, 0, 0, 0

function init(args)
  mode = args[1] or "echo"
  token = args[2]
  number = tonumber(args[3] or "34600000000") + tid * 10000000
  pool = {}
  next_line = 1
  flip = false
  if args[4] then
    for line in io.lines(args[4] .. "." .. tid) do
      pool[#pool + 1] = line
    end
  end
  echo_request = wrk.format("POST", nil, { ["Content-Type"] = "application/json" },
    '{"phoneNumber":"+34600000001","message":"{{code}} is your code"}')
end

local function headers()
  return { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
end

local function send()
  number = number + 1
  return wrk.format("POST", send_path, headers(),
    '{"phoneNumber":"+' .. string.format("%d", number) .. '","message":"{{code}} is your code"}')
end

local function validate()
  local body = pool[next_line]
  if body == nil then
    -- Pool used up: this answer will be a 4xx, counted as such and reported.
    exhausted = exhausted + 1
    body = pool[#pool] or "{}"
  else
    next_line = next_line + 1
  end
  return wrk.format("POST", validate_path, headers(), body)
end

function request()
  if mode == "echo" then
    return echo_request
  elseif mode == "send" then
    return send()
  elseif mode == "validate" then
    return validate()
  else
    flip = not flip
    if flip then return send() else return validate() end
  end
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    s2 = s2 + 1
  elseif status >= 400 and status < 500 then
    s4 = s4 + 1
  elseif status >= 500 then
    s5 = s5 + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local t2, t4, t5, to, tx = 0, 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    t2 = t2 + thread:get("s2")
    t4 = t4 + thread:get("s4")
    t5 = t5 + thread:get("s5")
    to = to + thread:get("other")
    tx = tx + thread:get("exhausted")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"seconds":%.3f,"requests":%d,"ok_2xx":%d,"status_4xx":%d,"status_5xx":%d,' ..
    '"status_other":%d,"pool_exhausted":%d,"socket_errors":%d,"ok_per_second":%.1f,' ..
    '"latency_ms":{"p50":%.3f,"p99":%.3f,"max":%.3f}}\n',
    summary.duration / 1e6, summary.requests, t2, t4, t5, to, tx,
    e.connect + e.read + e.write + e.timeout, t2 / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
