#!/usr/bin/env bash
# Reproducible benchmark, measured from outside the process (docs/PERFORMANCE.md,
# "Reproducible benchmark: scripts/bench.sh"). Builds release, starts the reference echo server,
# the project's SMSC simulator and the gateway pointed at it as separate processes on free
# loopback ports, and drives each with the same clients in one run:
#   - closed loop (wrk, BENCH_CONNECTIONS connections, BENCH_DURATION s): echo, send-code,
#     validate-code with right codes, a 1:1 mix;
#   - open loop (examples/loadgen.rs) at half of each measured maximum: p50/p90/p99/p99.9;
#   - RSS growth per live challenge with BENCH_LIVE live challenges, all sent through the API;
#   - start-up to ready with embedded defaults.
# Prints a table and writes target/bench/bench.json. Only 2xx answers count as served.
# BENCH_PERF=1 also records a perf profile of the gateway during the send-code and
# validate-code runs (target/bench/perf-*.txt). BENCH_SYSCALLS=1 counts the gateway's socket
# system calls during the same runs (perf stat on the syscall tracepoints), per answered request.
# BENCH_GATEWAY=/path/to/otp-gateway measures that binary (e.g. an older release, for a
# before/after in one run) with this build's simulator, echo server and load generator. BENCH_DURATION, BENCH_CONNECTIONS,
# BENCH_THREADS (wrk's) and BENCH_LIVE change the defaults of 10 s, 64, 2 and 1,000,000;
# BENCH_POOL_EXTRA (1,000,000) more codes are sent after the memory figure, for the validate runs.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/bench"
DURATION="${BENCH_DURATION:-10}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
LIVE="${BENCH_LIVE:-1000000}"
POOL_EXTRA="${BENCH_POOL_EXTRA:-1000000}"
PERF="${BENCH_PERF:-0}"
SYSCALLS="${BENCH_SYSCALLS:-0}"
# debug: a quick check of the script itself (figures meaningless).
PROFILE="${BENCH_PROFILE:-release}"
LUA="$ROOT/scripts/bench/wrk.lua"
mkdir -p "$OUT"
rm -f "$OUT"/*.log "$OUT"/pool* "$OUT"/*.json "$OUT"/*.jsonl "$OUT"/*.csv "$OUT"/perf-*

say() { printf '==> %s\n' "$*" >&2; }

# --- tools (idempotent) ---------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    say "installing wrk"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
if ! command -v curl >/dev/null; then
    say "installing curl"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
fi
command -v python3 >/dev/null || { echo "bench.sh needs python3" >&2; exit 1; }
if { [ "$PERF" = 1 ] || [ "$SYSCALLS" = 1 ]; } && ! command -v perf >/dev/null; then
    say "installing linux-perf"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
fi

say "building $PROFILE (gateway, echo, loadgen)"
if [ "$PROFILE" = release ]; then
    cargo build --release --bins --example echo --example loadgen >&2
else
    cargo build --bins --example echo --example loadgen >&2
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"
SIM="$BIN/otp-gateway"
GW="${BENCH_GATEWAY:-$SIM}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # URL: until it answers at all
    for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done
    echo "no answer from $1" >&2; return 1
}
wait_ready() { # admin address
    for _ in $(seq 1 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$1/health/ready")" = 200 ] && return 0
        sleep 0.05
    done
    echo "gateway on $1 not ready" >&2; return 1
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# wrk run: NAME URL MODE [args...] -> $OUT/NAME.json (its BENCH_JSON line)
run_wrk() {
    local name="$1" url="$2"; shift 2
    say "wrk $name: -t$THREADS -c$CONNECTIONS -d${DURATION}s"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -s "$LUA" "$url" -- "$@" >"$OUT/$name.log" 2>&1
    grep '^BENCH_JSON ' "$OUT/$name.log" | sed 's/^BENCH_JSON //' >"$OUT/$name.json"
    [ -s "$OUT/$name.json" ] || { cat "$OUT/$name.log" >&2; exit 1; }
}
field() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); [v:=v[k] for k in sys.argv[2].split(".")]; print(v)' "$1" "$2"; }
half() { python3 -c 'import sys; print(max(1, int(float(sys.argv[1]) / 2)))' "$1"; }

# perf around a wrk run, gateway process only: software cpu-clock samples (no hardware
# counters needed) with DWARF call graphs; self time by DSO and by symbol, and time including
# callees by symbol (what an area such as moka or ring costs with all it calls).
perf_start() {
    [ "$PERF" = 1 ] || return 0
    perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$GW_PID" -o "$OUT/perf-$1.data" \
        -- sleep "$DURATION" >/dev/null 2>&1 &
    PERF_PID=$!
}
perf_end() {
    [ "$PERF" = 1 ] || return 0
    wait "$PERF_PID" || true
    local data="$OUT/perf-$1.data" txt="$OUT/perf-$1.txt"
    { echo "## self time by DSO"
      perf report -i "$data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
      echo "## self time by symbol"
      perf report -i "$data" --no-children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60
      echo "## time including callees by symbol"
      perf report -i "$data" --children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -150
    } >"$txt" || true
}

# Socket system calls of the gateway during a run, from the syscall tracepoints.
SYSCALL_EVENTS="syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex"
syscalls_start() {
    [ "$SYSCALLS" = 1 ] || return 0
    perf stat -x, -e "$SYSCALL_EVENTS" -p "$GW_PID" -o "$OUT/syscalls-$1.csv" -- sleep "$DURATION" >/dev/null 2>&1 &
    SYSCALLS_PID=$!
}
syscalls_end() {
    [ "$SYSCALLS" = 1 ] || return 0
    wait "$SYSCALLS_PID" || true
}

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- start-up to ready, embedded defaults (only the listeners moved to free ports) ----------
SU_API=$(free_port); SU_ADMIN=$(free_port)
say "start-up to ready (5 starts, embedded defaults)"
"$BIN/examples/loadgen" ready --admin "127.0.0.1:$SU_ADMIN" --runs 5 -- \
    env OTPGW_HTTP__LISTEN="127.0.0.1:$SU_API" OTPGW_ADMIN__LISTEN="127.0.0.1:$SU_ADMIN" "$GW" >"$OUT/ready.json"

# --- reference echo -------------------------------------------------------------------------
ECHO_PORT=$(free_port)
"$BIN/examples/echo" "127.0.0.1:$ECHO_PORT" >"$OUT/echo-server.log" 2>&1 &
ECHO_PID=$!; PIDS+=("$ECHO_PID")
wait_http "http://127.0.0.1:$ECHO_PORT/echo"
run_wrk echo "http://127.0.0.1:$ECHO_PORT/echo" echo

# --- simulator and gateway ----------------------------------------------------------------
SIM_PORT=$(free_port); API_PORT=$(free_port); ADMIN_PORT=$(free_port)
API="http://127.0.0.1:$API_PORT"
"$SIM" smsc-sim --listen "127.0.0.1:$SIM_PORT" >"$OUT/sim.log" 2>&1 &
SIM_PID=$!; PIDS+=("$SIM_PID")
sleep 0.3
OTPGW_HTTP__LISTEN="127.0.0.1:$API_PORT" OTPGW_ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT" \
OTPGW_SMPP__URL="smpp://otpgw:secret@127.0.0.1:$SIM_PORT" \
    "$GW" serve --config scripts/bench/gateway.toml >"$OUT/gateway.log" 2>&1 &
GW_PID=$!; PIDS+=("$GW_PID")
wait_ready "127.0.0.1:$ADMIN_PORT"
TOKEN=$(curl -s -u demo:demo-secret -d grant_type=client_credentials -d scope=one-time-password-sms:send-validate "$API/oauth2/token" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
# Warm-up: connections, first allocations, the token cache (numbers of their own).
"$BIN/examples/loadgen" fill --addr "127.0.0.1:$API_PORT" --token "$TOKEN" --first 39900000000 \
    --count 2000 --out "$OUT/pool-warmup.tsv" >"$OUT/warmup.json"
sleep 1
RSS_BEFORE=$(rss_kib "$GW_PID")

# --- closed loop: send-code ---------------------------------------------------------------
perf_start send-code
syscalls_start send-code
run_wrk send-code "$API" send "$TOKEN" 34600000000
syscalls_end send-code
perf_end send-code
SENT=$(field "$OUT/send-code.json" ok_2xx)

# --- live challenges for the memory figure and the validate pool ---------------------------
FILL=$(( LIVE > SENT ? LIVE - SENT : 0 ))
say "fill: $FILL send-code through the API (to $LIVE live challenges)"
"$BIN/examples/loadgen" fill --addr "127.0.0.1:$API_PORT" --token "$TOKEN" --first 44700000000 \
    --count "$FILL" --out "$OUT/pool-ids.tsv" >"$OUT/fill.json"
sleep 1  # receipts of the last sends (receipt delay 200 ms) are in
RSS_AFTER=$(rss_kib "$GW_PID")
FILLED=$(field "$OUT/fill.json" answers.ok_2xx)
# More live codes for the validate runs only (after the memory figure): a faster validate-code
# must not run out of right codes within the run.
if [ "$POOL_EXTRA" -gt 0 ]; then
    say "fill: $POOL_EXTRA more send-code for the validate pool (not in the memory figure)"
    "$BIN/examples/loadgen" fill --addr "127.0.0.1:$API_PORT" --token "$TOKEN" --first 44800000000 \
        --count "$POOL_EXTRA" --out "$OUT/pool-ids-extra.tsv" >"$OUT/fill-extra.json"
    sleep 1
fi

# Codes from the simulator's handset lines, joined with the ids by number (each number was
# sent one code). The pool is cut into the parts each later run uses, one file per wrk thread.
say "building the validate pool"
python3 - "$OUT" "$THREADS" <<'PY'
import re, sys, random
out, threads = sys.argv[1], int(sys.argv[2])
codes = {}
pat = re.compile(r"SMS to (\+\d+): (\d+) is your code")
with open(f"{out}/sim.log", errors="replace") as f:
    for line in f:
        m = pat.search(line)
        if m:
            codes[m.group(1)] = m.group(2)
bodies = []
import glob
for path in sorted(glob.glob(f"{out}/pool-ids*.tsv")):
  with open(path) as f:
    for line in f:
        phone, cid = line.rstrip("\n").split("\t")
        if phone in codes:
            bodies.append('{"authenticationId":"%s","code":"%s"}' % (cid, codes[phone]))
random.Random(12).shuffle(bodies)
n = len(bodies)
# closed-loop validate 55 %, the mix 15 %, open-loop validate 30 %.
cuts = {"validate": (0, int(n * .55)), "mix": (int(n * .55), int(n * .70)), "open": (int(n * .70), n)}
for name, (a, b) in cuts.items():
    part = bodies[a:b]
    if name == "open":
        open(f"{out}/pool-open", "w").write("\n".join(part) + "\n")
        continue
    for t in range(threads):
        open(f"{out}/pool-{name}.{t}", "w").write("\n".join(part[t::threads]) + "\n")
print(f"{n} live (id, code) pairs", file=sys.stderr)
PY

# --- closed loop: validate-code, mix ------------------------------------------------------
perf_start validate-code
syscalls_start validate-code
run_wrk validate-code "$API" validate "$TOKEN" 0 "$OUT/pool-validate"
syscalls_end validate-code
perf_end validate-code
run_wrk mix "$API" mix "$TOKEN" 34800000000 "$OUT/pool-mix"

# --- open loop at half of each maximum ----------------------------------------------------
open_loop() { # NAME RATE loadgen-args...
    local name="$1" rate="$2"; shift 2
    say "open loop $name at $rate req/s for ${DURATION}s"
    "$BIN/examples/loadgen" open --rate "$rate" --duration "$DURATION" --connections "$CONNECTIONS" "$@" >"$OUT/open-$name.json"
}
open_loop echo "$(half "$(field "$OUT/echo.json" ok_per_second)")" \
    --addr "127.0.0.1:$ECHO_PORT" --path /echo
open_loop send-code "$(half "$(field "$OUT/send-code.json" ok_per_second)")" \
    --addr "127.0.0.1:$API_PORT" --path /one-time-password-sms/v1/send-code --token "$TOKEN" --numbers-from 35100000000
open_loop validate-code "$(half "$(field "$OUT/validate-code.json" ok_per_second)")" \
    --addr "127.0.0.1:$API_PORT" --path /one-time-password-sms/v1/validate-code --token "$TOKEN" --bodies "$OUT/pool-open"

LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- report ---------------------------------------------------------------------------------
python3 - "$OUT" "$RSS_BEFORE" "$RSS_AFTER" "$SENT" "$FILLED" "$LOAD_START" "$LOAD_END" \
    "$DURATION" "$CONNECTIONS" "$THREADS" <<'PY'
import json, sys, subprocess, datetime, platform, os
out, rss0, rss1, sent, filled, load0, load1, dur, conns, threads = sys.argv[1:]
j = lambda n: json.load(open(f"{out}/{n}.json"))
def sh(*c):
    try: return subprocess.run(c, capture_output=True, text=True).stdout.strip()
    except OSError: return ""
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
closed = {n: j(n) for n in ("echo", "send-code", "validate-code", "mix")}
echo = closed["echo"]["ok_per_second"]
live = int(sent) + int(filled)
rss_delta = (int(rss1) - int(rss0)) * 1024
ready = j("ready")
report = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "commit": sh("git", "rev-parse", "--short", "HEAD") + ("-dirty" if sh("git", "status", "--porcelain", "--untracked-files=no") else ""),
    "machine": {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
                "rustc": sh("rustc", "--version"), "wrk": sh("sh", "-c", "wrk -v 2>&1 | head -1")},
    "load_average": {"start": load0, "end": load1},
    "settings": {"duration_s": float(dur), "connections": int(conns), "wrk_threads": int(threads)},
    "closed_loop": {n: dict(v, ratio_to_echo=round(v["ok_per_second"] / echo, 3)) for n, v in closed.items()},
    "open_loop": {n: j(f"open-{n}") for n in ("echo", "send-code", "validate-code")},
    "memory": {"live_challenges": live, "rss_before_kib": int(rss0), "rss_after_kib": int(rss1),
               "bytes_per_live_challenge": round(rss_delta / live, 1) if live else None,
               "fill": j("fill")},
    "ready": ready,
    "binary": os.environ.get("BENCH_GATEWAY", "this build"),
}
def syscalls(name):
    # perf stat -x, lines: value,unit,event,...; per answered request of the run.
    path = f"{out}/syscalls-{name}.csv"
    if not os.path.exists(path):
        return None
    counts = {}
    for line in open(path):
        f = line.strip().split(",")
        if len(f) > 2 and f[0].replace(".", "").isdigit():
            counts[f[2].split(":sys_enter_")[-1]] = int(float(f[0]))
    ok = closed[name]["requests"] or 1
    return {k: round(v / ok, 2) for k, v in counts.items()}
sc = {n: syscalls(n) for n in ("send-code", "validate-code")}
if any(sc.values()):
    report["syscalls_per_request"] = sc
json.dump(report, open(f"{out}/bench.json", "w"), indent=2)

print(f"\nbench {report['date']}  commit {report['commit']}  {cpu} x{os.cpu_count()}  load {load0} -> {load1}")
print(f"closed loop: wrk -t{threads} -c{conns} -d{dur}s, 2xx answers only\n")
print(f"| {'what':<28} | {'req/s (2xx)':>11} | {'ratio':>5} | {'non-2xx':>7} | {'5xx':>4} | {'p50 ms':>7} | {'p99 ms':>7} |")
print(f"|{'-'*30}|{'-'*13}|{'-'*7}|{'-'*9}|{'-'*6}|{'-'*9}|{'-'*9}|")
for n, v in report["closed_loop"].items():
    bad = v["requests"] - v["ok_2xx"]
    print(f"| {n:<28} | {v['ok_per_second']:>11,.0f} | {v['ratio_to_echo']:>5.2f} | {bad:>7} | {v['status_5xx']:>4} | {v['latency_ms']['p50']:>7.2f} | {v['latency_ms']['p99']:>7.2f} |")
print(f"\nopen loop at half the maximum ({conns} connections, latency from when each request was due)\n")
print(f"| {'what':<14} | {'rate':>7} | {'achieved':>8} | {'non-2xx':>7} | {'p50':>6} | {'p90':>6} | {'p99':>6} | {'p99.9':>6} | {'max':>7} |")
print(f"|{'-'*16}|{'-'*9}|{'-'*10}|{'-'*9}|{'-'*8}|{'-'*8}|{'-'*8}|{'-'*8}|{'-'*9}|")
for n, v in report["open_loop"].items():
    l, a = v["latency_ms"], v["answers"]
    bad = v["requests"] - a["ok_2xx"]
    print(f"| {n:<14} | {v['rate']:>7.0f} | {v['achieved_per_second']:>8.0f} | {bad:>7} | {l['p50']:>6.2f} | {l['p90']:>6.2f} | {l['p99']:>6.2f} | {l['p99_9']:>6.2f} | {l['max']:>7.2f} |")
short = {n: v["pool_exhausted"] for n, v in report["closed_loop"].items() if v.get("pool_exhausted")}
short.update({f"open {n}": v["bodies_exhausted"] for n, v in report["open_loop"].items() if v.get("bodies_exhausted")})
if short:
    print(f"\nWARNING: the validate pool ran out ({short} requests without a live code, counted as non-2xx): raise BENCH_LIVE")
m = report["memory"]
print(f"\nmemory: {m['bytes_per_live_challenge']} B of RSS per live challenge ({live:,} live; RSS {int(rss0)//1024} -> {int(rss1)//1024} MiB; fill at {m['fill']['ok_per_second']:,.0f} send-code/s)")
for n, v in (report.get("syscalls_per_request") or {}).items():
    if v:
        print(f"syscalls per {n} request: " + ", ".join(f"{k} {c}" for k, c in sorted(v.items())))
print(f"ready:  {ready['min_ms']:.1f} ms min, {ready['median_ms']:.1f} ms median of {len(ready['runs_ms'])} starts (spawn -> /health/ready 200, embedded defaults)")
print(f"\nwritten: {out}/bench.json")
PY
