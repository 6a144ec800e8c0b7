#!/usr/bin/env bash
# Benchmark smoke run, the last stage of scripts/test (docs/PERFORMANCE.md, "CI guard"). It
# fails only on a gross regression, measured in the same run (3 s each, wrk from Debian,
# installed when missing; the gateway with the simulator as a separate process, every request
# to a number of its own):
#   - send-code at 16 connections below BENCH_SMOKE_MIN_RATIO (0.05) of the reference echo
#     (today 0.105-0.164: on a quiet machine the echo gains most, so 0.1 would sit in the noise;
#     raise it as the gateway gets faster);
#   - send-code at 16 connections below BENCH_SMOKE_MIN_SCALING (1.3) times send-code at one
#     connection: a hot path that serves one request at a time scales by about 1;
#   - any 5xx, or no successful answer.
# Release builds (BENCH_SMOKE_PROFILE=debug for the debug ones): in debug the gateway's own code
# is slowed far more than actix's, so its ratio (0.08 here) says nothing about the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target="${CARGO_TARGET_DIR:-$root/target}"
profile="${BENCH_SMOKE_PROFILE:-release}"
seconds="${BENCH_SMOKE_SECONDS:-3}"
connections="${BENCH_SMOKE_CONNECTIONS:-16}"
min_ratio="${BENCH_SMOKE_MIN_RATIO:-0.05}"
min_scaling="${BENCH_SMOKE_MIN_SCALING:-1.3}"
out="$target/bench-smoke"
lua="$root/scripts/bench/wrk.lua"
mkdir -p "$out"

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get install -y -qq wrk >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null; }
  else
    echo "wrk is missing: apt install wrk"; exit 1
  fi
fi

release_flag=()
[ "$profile" = release ] && release_flag=(--release)
cargo build -q "${release_flag[@]}" --bin otp-gateway --example echo
gw="$target/$profile/otp-gateway"
echo_bin="$target/$profile/examples/echo"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
# HTTP by python3 (CI has it; curl may be missing on a fresh machine).
wait_status() { # URL STATUS
  python3 - "$1" "$2" <<'PY'
import sys, time, urllib.request, urllib.error
url, want = sys.argv[1], int(sys.argv[2])
for _ in range(200):
    try:
        status = urllib.request.urlopen(url, timeout=1).status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = None
    if status == want:
        sys.exit(0)
    time.sleep(0.05)
sys.exit(f"bench-smoke: {url} never answered {want}")
PY
}
run_wrk() { # NAME CONNECTIONS URL MODE [args]
  local name="$1" conns="$2" url="$3"; shift 3
  wrk -t"$(( conns < 2 ? 1 : 2 ))" -c"$conns" -d"${seconds}s" -s "$lua" "$url" -- "$@" >"$out/$name.log" 2>&1
  grep '^BENCH_JSON ' "$out/$name.log" | sed 's/^BENCH_JSON //' >"$out/$name.json"
  [ -s "$out/$name.json" ] || { cat "$out/$name.log"; exit 1; }
}

echo_port=$(free_port); sim_port=$(free_port); api_port=$(free_port); admin_port=$(free_port)
"$echo_bin" "127.0.0.1:$echo_port" >"$out/echo-server.log" 2>&1 &
pids+=($!)
"$gw" smsc-sim --listen "127.0.0.1:$sim_port" >"$out/sim.log" 2>&1 &
pids+=($!)
sleep 0.3
OTPGW_HTTP__LISTEN="127.0.0.1:$api_port" OTPGW_ADMIN__LISTEN="127.0.0.1:$admin_port" \
OTPGW_SMPP__URL="smpp://otpgw:secret@127.0.0.1:$sim_port" \
  "$gw" serve --config scripts/bench/gateway.toml >"$out/gateway.log" 2>&1 &
pids+=($!)
wait_status "http://127.0.0.1:$admin_port/health/ready" 200
wait_status "http://127.0.0.1:$echo_port/nothing" 404
token=$(python3 - "http://127.0.0.1:$api_port/oauth2/token" <<'PY'
import base64, json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=b"grant_type=client_credentials&scope=one-time-password-sms:send-validate", headers={
    "Authorization": "Basic " + base64.b64encode(b"demo:demo-secret").decode(),
    "Content-Type": "application/x-www-form-urlencoded"})
print(json.load(urllib.request.urlopen(req, timeout=5))["access_token"])
PY
)

run_wrk echo "$connections" "http://127.0.0.1:$echo_port/echo" echo
run_wrk send-code "$connections" "http://127.0.0.1:$api_port" send "$token" 34600000000
run_wrk send-code-1 1 "http://127.0.0.1:$api_port" send "$token" 35600000000

python3 - "$out" "$min_ratio" "$min_scaling" "$profile" "$seconds" "$connections" <<'PY'
import json, sys
out, min_ratio, min_scaling, profile, seconds, connections = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), *sys.argv[4:]
runs = {n: json.load(open(f"{out}/{n}.json")) for n in ("echo", "send-code", "send-code-1")}
echo, send, single = runs["echo"], runs["send-code"], runs["send-code-1"]
ratio = send["ok_per_second"] / echo["ok_per_second"] if echo["ok_per_second"] else 0.0
scaling = send["ok_per_second"] / single["ok_per_second"] if single["ok_per_second"] else 0.0
print(f"bench-smoke ({profile}, {seconds} s each): echo {echo['ok_per_second']:,.0f} req/s, "
      f"send-code {send['ok_per_second']:,.0f} req/s at {connections} connections and {single['ok_per_second']:,.0f} at 1 (2xx); "
      f"ratio to echo {ratio:.3f} (floor {min_ratio}), scaling {scaling:.2f} (floor {min_scaling}); "
      + ", ".join(f"{n} non-2xx {v['requests'] - v['ok_2xx']} 5xx {v['status_5xx']}" for n, v in runs.items()))
problems = []
if any(v["status_5xx"] for v in runs.values()):
    problems.append("5xx answers")
if ratio < min_ratio:
    problems.append(f"send-code below {min_ratio} x echo")
if scaling < min_scaling:
    problems.append(f"send-code at {connections} connections below {min_scaling} x one connection")
if any(v["ok_2xx"] == 0 for v in runs.values()):
    problems.append("no successful answer")
if problems:
    print("bench-smoke FAILED: " + ", ".join(problems))
    sys.exit(1)
PY
