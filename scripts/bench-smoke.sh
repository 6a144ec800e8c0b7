#!/usr/bin/env bash
# Benchmark smoke run, the last stage of scripts/test (docs/PERFORMANCE.md, "CI guard"). It
# fails only on a gross regression: send-code through the gateway (separate simulator process,
# every request to a number of its own) below BENCH_SMOKE_MIN_RATIO (0.1) of the reference echo
# server measured in the same run, or any 5xx. It uses the debug builds that `cargo test`
# has just made (the gateway binary and examples/echo), so CI pays no release build; the
# ratio of two debug builds is what it compares, not the release figures of scripts/bench.sh.
# wrk comes from Debian (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target="${CARGO_TARGET_DIR:-$root/target}"
profile="${BENCH_SMOKE_PROFILE:-debug}"
seconds="${BENCH_SMOKE_SECONDS:-3}"
connections="${BENCH_SMOKE_CONNECTIONS:-16}"
min_ratio="${BENCH_SMOKE_MIN_RATIO:-0.1}"
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
wait_status() { # URL STATUS
  for _ in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = "$2" ] && return 0
    sleep 0.05
  done
  echo "bench-smoke: $1 never answered $2"; return 1
}
run_wrk() { # NAME URL MODE [args]
  local name="$1" url="$2"; shift 2
  wrk -t2 -c"$connections" -d"${seconds}s" -s "$lua" "$url" -- "$@" >"$out/$name.log" 2>&1
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
token=$(curl -s -u demo:demo-secret -d grant_type=client_credentials "http://127.0.0.1:$api_port/oauth2/token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

run_wrk echo "http://127.0.0.1:$echo_port/echo" echo
run_wrk send-code "http://127.0.0.1:$api_port" send "$token" 34600000000

python3 - "$out" "$min_ratio" "$profile" "$seconds" "$connections" <<'PY'
import json, sys
out, min_ratio, profile, seconds, connections = sys.argv[1], float(sys.argv[2]), *sys.argv[3:]
echo = json.load(open(f"{out}/echo.json"))
send = json.load(open(f"{out}/send-code.json"))
ratio = send["ok_per_second"] / echo["ok_per_second"] if echo["ok_per_second"] else 0.0
print(f"bench-smoke ({profile}, {seconds} s each, {connections} connections): echo {echo['ok_per_second']:,.0f} req/s, "
      f"send-code {send['ok_per_second']:,.0f} req/s (2xx), ratio {ratio:.3f} (floor {min_ratio}); "
      f"send-code non-2xx {send['requests'] - send['ok_2xx']}, 5xx {send['status_5xx']}, echo 5xx {echo['status_5xx']}")
problems = []
if send["status_5xx"] or echo["status_5xx"]:
    problems.append("5xx answers")
if ratio < min_ratio:
    problems.append(f"send-code below {min_ratio} x echo")
if send["ok_2xx"] == 0 or echo["ok_2xx"] == 0:
    problems.append("no successful answer")
if problems:
    print("bench-smoke FAILED: " + ", ".join(problems))
    sys.exit(1)
PY
