#!/usr/bin/env bash
# rest_bench.sh - GET /connectors/{c}/status at a fixed rate, alone and while
# a pipeline runs at full speed, and what that load costs the pipeline.
#
#   bench/rest_bench.sh [BUILD_DIR]        (default: build)
#
# Phase 1, idle host: spoke runs one connector that has nothing to do; wrk
# sends RATE req/s for DURATION s. Reports latency and the CPU time spoke
# spent (utime + stime from /proc), i.e. what one request costs.
#
# Phase 2, busy host: spoke runs file_source -> null_sink over an NDJSON file
# big enough to keep it busy for the whole phase. Its throughput is measured
# from status.json (the sink's records_in and the host's own uptime_ms, so
# the REST API plays no part in measuring it) over three windows: BASE_S s
# without REST load, DURATION s under wrk at RATE req/s, BASE_S s without
# load again. Reports latency under load and the throughput change.
#
# wrk has no fixed-rate mode (that is wrk2): a Lua delay() paces each of
# CONNS connections to about CONNS*1000/RATE ms between requests; the
# achieved rate is reported. wrk runs on the same machine as spoke, so its
# own CPU use counts against the pipeline too.
#
# Environment: LINES (records in the generated file, default 160,000,000,
# about 2.6 GB), DATA (an NDJSON file to use instead; kept), RATE (1000),
# DURATION (30), BASE_S (12), CONNS (10), WARMUP_S (3), TMPDIR.
# Needs wrk (apt-get install wrk), curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${1:-build}
LINES=${LINES:-160000000}
RATE=${RATE:-1000}
DURATION=${DURATION:-30}
BASE_S=${BASE_S:-12}
CONNS=${CONNS:-10}
WARMUP_S=${WARMUP_S:-3}

for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "rest_bench: $tool is required" >&2; exit 2; }
done
[ -x "$BUILD/spoke" ] || { echo "rest_bench: $BUILD/spoke not found (build first)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/spoke-rest-bench.XXXXXX")
spoke_pid=
stop_spoke() {
    if [ -n "$spoke_pid" ] && kill -0 "$spoke_pid" 2>/dev/null; then
        kill "$spoke_pid"
        wait "$spoke_pid" 2>/dev/null || true
    fi
    spoke_pid=
}
trap 'stop_spoke; rm -rf "$work"' EXIT

cat > "$work/paced.lua" <<'EOF'
-- Each connection waits about CONNS*1000/RATE ms between requests: RATE
-- req/s in all. wrk takes whole milliseconds and its timer fires up to 1 ms
-- late, so the wait asked for is 1 ms shorter.
local rate = tonumber(os.getenv("RATE")) or 1000
local conns = tonumber(os.getenv("CONNS")) or 10
local wait_ms = math.max(0, math.floor(conns * 1000 / rate + 0.5) - 1)
function delay()
    return wait_ms
end
function done(summary, latency, requests)
    local e = summary.errors
    local s = summary.duration / 1e6
    io.write(string.format(
        "requests=%d rate=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f " ..
        "max_ms=%.3f errors: connect=%d read=%d write=%d status=%d timeout=%d\n",
        summary.requests, summary.requests / s, latency:percentile(50) / 1000,
        latency:percentile(90) / 1000, latency:percentile(99) / 1000,
        latency:percentile(99.9) / 1000, latency.max / 1000, e.connect, e.read, e.write,
        e.status, e.timeout))
end
EOF

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# start_spoke FILE: runs spoke on a config whose source reads FILE.
start_spoke() {
    rm -rf "$work/state"
    cat > "$work/connectors.yaml" <<EOF
worker:
  plugin.path: [$PWD/$BUILD/plugins]
  state.dir: $work/state
  log.level: warn
  listeners: http://127.0.0.1:$port
  status.interval.ms: 100
connectors:
  - name: sink
    connector.class: null_sink
    topics: t
  - name: src
    connector.class: file_source
    topic: t
    file: $1
EOF
    "$BUILD/spoke" run -c "$work/connectors.yaml" > "$work/stdout" 2> "$work/stderr" &
    spoke_pid=$!
    local deadline=$((SECONDS + 30))
    until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do
        if [ $SECONDS -ge $deadline ] || ! kill -0 "$spoke_pid" 2>/dev/null; then
            echo "rest_bench: spoke did not start" >&2
            cat "$work/stderr" >&2
            exit 1
        fi
        sleep 0.1
    done
}

# "<uptime_ms> <records_in of the sink>" from the latest status.json.
snap() {
    python3 - "$work/state/status.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(s["uptime_ms"], s["connectors"]["sink"]["metrics"]["records_in"])
EOF
}
rate_between() {  # rate_between "<ms0> <n0>" "<ms1> <n1>" -> records/s
    python3 -c 'import sys; a = sys.argv[1].split(); b = sys.argv[2].split(); print("%.0f" % ((int(b[1]) - int(a[1])) * 1000.0 / (int(b[0]) - int(a[0]))))' "$1" "$2"
}
cpu_ticks() {  # utime + stime of spoke, in clock ticks
    awk '{ print $14 + $15 }' "/proc/$spoke_pid/stat"
}
run_wrk() {
    RATE=$RATE CONNS=$CONNS wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 2s -s "$work/paced.lua" \
        "http://127.0.0.1:$port/connectors/src/status" > "$work/wrk.out"
    local non2xx
    non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$work/wrk.out")
    echo "$(grep '^requests=' "$work/wrk.out") non2xx=${non2xx:-0}"
}

# ---- phase 1: idle host ----
echo '{"seq":0}' > "$work/one.ndjson"
start_spoke "$work/one.ndjson"
sleep "$WARMUP_S"
q0=$(cpu_ticks); sleep "$DURATION"; q1=$(cpu_ticks)
t0=$(cpu_ticks); idle=$(run_wrk); t1=$(cpu_ticks)
stop_spoke
requests=$(echo "$idle" | sed 's/^requests=\([0-9]*\).*/\1/')
python3 - "$idle" "$q0" "$q1" "$t0" "$t1" "$requests" "$DURATION" "$(getconf CLK_TCK)" <<'EOF'
import sys
line, q0, q1, t0, t1, n, dur, hz = sys.argv[1], *map(float, sys.argv[2:])
quiet, busy = (q1 - q0) / hz, (t1 - t0) / hz
print("idle host:  %s" % line)
print("            spoke CPU in %.0f s: %.2f s without requests, %.2f s with them: %.1f%% of "
      "one core, %.0f us per request" % (dur, quiet, busy, (busy - quiet) / dur * 100,
                                         (busy - quiet) / n * 1e6))
EOF

# ---- phase 2: busy host ----
DATA=${DATA:-$work/in.ndjson}
if [ ! -s "$DATA" ]; then
    echo "rest_bench: generating $LINES records in $DATA" >&2
    seq -f '{"seq":%.0f}' 1 "$LINES" > "$DATA"
else
    LINES=$(wc -l < "$DATA")
fi
start_spoke "$DATA"
deadline=$((SECONDS + 30))
until [ -f "$work/state/status.json" ] && [ "$(snap | cut -d' ' -f2)" -gt 0 ]; do
    [ $SECONDS -lt $deadline ] || { echo "rest_bench: no records flowing" >&2; exit 1; }
    sleep 0.1
done
sleep "$WARMUP_S"
a0=$(snap); sleep "$BASE_S"; a1=$(snap)
b0=$(snap); busy=$(run_wrk); b1=$(snap)
c0=$(snap); sleep "$BASE_S"; c1=$(snap)
stop_spoke
if [ "$(echo "$c1" | cut -d' ' -f2)" -ge "$LINES" ]; then
    echo "rest_bench: the pipeline finished the file before the last window; raise LINES" >&2
    exit 1
fi
echo "busy host:  $busy"
python3 - "$(rate_between "$a0" "$a1")" "$(rate_between "$b0" "$b1")" \
    "$(rate_between "$c0" "$c1")" <<'EOF'
import sys
b1, l, b2 = (float(x) for x in sys.argv[1:])
base = (b1 + b2) / 2
print("            pipeline records/s: %.0f without load (before), %.0f under REST load, "
      "%.0f without load (after): %+.1f%% vs the mean without load" % (b1, l, b2,
                                                                        (l / base - 1) * 100))
EOF
