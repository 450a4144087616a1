#!/usr/bin/env python3
"""Vélib' pipeline benchmark (issue 3): Spoke beside the seed projects' tools,
run in one session on the same generated input.

Measures, for Spoke (build/spoke):
  - throughput of file_source -> schema_mapper -> aggregator (table semantics,
    per postcode) -> null_sink, in records/s (median of RUNS runs), for two
    emit modes of the aggregator;
  - end-to-end latency p50/p99 (from the start of the source poll that read a
    record to the sink's durable flush, from /metrics);
  - peak RSS (VmHWM) of the whole process, startup time to RUNNING, idle RSS;
  - one real-shaped 1,485-station snapshot through velib_source -> schema_mapper
    -> aggregator -> null_sink: poll start to output, per record;
and the same aggregate with python3's json module, jq and miller.

usage: bench.py ROOT WORK N RUNS   (run.sh prepares WORK with gen.py)
"""
import http.client
import http.server
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT, WORK, N, RUNS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
BIN = os.path.join(os.environ.get("SPOKE_BUILD", os.path.join(ROOT, "build")), "spoke")
PLUGINS = os.path.join(os.path.dirname(BIN), "plugins")
RECORDS = os.path.join(WORK, "records.ndjson")
POSTCODES = os.path.join(WORK, "postcodes.csv")
SHARED = os.path.join(ROOT, "..", "shared", "data", "velib")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    return r.status, body


def metric(text, name, **labels):
    """Value of the first sample of name whose labels include labels."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all('%s="%s"' % kv in line for kv in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def vm(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


PIPELINE = """
worker:
  plugin.path: [%(plugins)s]
  state.dir: %(state)s
  log.level: warn
  listeners: http://127.0.0.1:%(port)d
  status.interval.ms: 60000
connectors:
  - name: replay
    connector.class: file_source
    topic: raw
    file: %(records)s
    read.batch.lines: 10000
    max.line.bytes: 65536
  - name: map
    connector.class: schema_mapper
    topics: raw
    topic: rows
    schema.file: %(schema)s
    lookup.file: %(postcodes)s
    lookup.key.column: stationCode
    lookup.value.column: postcode
    lookup.missing: drop
  - name: agg
    connector.class: aggregator
    topics: rows
    topic: out
    group.by: postcode
    semantics: table
    entity.key: stationCode
    aggregates:
      - total_bikes_available=sum(num_bikes_available)
      - total_mechanical_bikes=sum(mechanical)
      - total_electric_bikes=sum(ebike)
    emit: %(emit)s
    emit.interval.ms: %(interval)d
  - name: sink
    connector.class: %(sink)s
    topics: out
%(sink_extra)s"""


def start(config_text, tag):
    port = free_port()
    state = os.path.join(WORK, "state-" + tag)
    subprocess.run(["rm", "-rf", state], check=True)
    cfg = os.path.join(WORK, "bench-%s.yaml" % tag)
    with open(cfg, "w") as f:
        f.write(config_text(port, state))
    t0 = time.monotonic()
    p = subprocess.Popen([BIN, "run", "-c", cfg], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(WORK, tag + ".log"), "w"), cwd=ROOT)
    # Startup: exec to every connector RUNNING (polled every millisecond).
    while True:
        try:
            st, body = get(port, "/connectors?expand=status")
            if st == 200:
                conns = json.loads(body)
                if conns and all(c["status"]["connector"]["state"] == "RUNNING"
                                 for c in conns.values()):
                    break
        except OSError:
            pass
        if p.poll() is not None:
            sys.exit("spoke exited; see %s/%s.log" % (WORK, tag))
        time.sleep(0.001)
    return p, port, (time.monotonic() - t0) * 1000.0


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(60)


def run_pipeline(emit, interval, tag):
    def cfg(port, state):
        return PIPELINE % dict(plugins=PLUGINS, state=state, port=port, records=RECORDS,
                               schema=os.path.join(ROOT, "schemas", "velib_station_status.yaml"),
                               postcodes=POSTCODES, emit=emit, interval=interval,
                               sink="null_sink", sink_extra="")
    p, port, startup = start(cfg, tag)
    t0 = time.monotonic()
    while True:
        _, m = get(port, "/metrics")
        done = metric(m, "spoke_connector_records_in_total", connector="agg")
        if done is not None and done >= N:
            break
        if time.monotonic() - t0 > 600:
            sys.exit("timeout: %s of %d records after 600 s" % (done, N))
        time.sleep(0.002)
    elapsed = time.monotonic() - t0
    _, m = get(port, "/metrics")
    lat50 = metric(m, "spoke_connector_latency_seconds", connector="sink", quantile="0.5")
    lat99 = metric(m, "spoke_connector_latency_seconds", connector="sink", quantile="0.99")
    hwm = vm(p.pid, "VmHWM")
    stop(p)
    return dict(rate=N / elapsed, startup=startup, p50=lat50, p99=lat99, hwm=hwm)


def spoke_table():
    """The final per-postcode table from Spoke (emit complete to a file)."""
    out = os.path.join(WORK, "spoke-table.ndjson")
    if os.path.exists(out):
        os.unlink(out)

    def cfg(port, state):
        return PIPELINE % dict(plugins=PLUGINS, state=state, port=port, records=RECORDS,
                               schema=os.path.join(ROOT, "schemas", "velib_station_status.yaml"),
                               postcodes=POSTCODES, emit="complete", interval=200,
                               sink="file_sink", sink_extra="    file: %s\n    fsync: false\n" % out)
    p, port, _ = start(cfg, "table")
    while True:
        _, m = get(port, "/metrics")
        if (metric(m, "spoke_connector_records_in_total", connector="agg") or 0) >= N:
            break
        time.sleep(0.01)
    # One complete emission after the last record.
    n0 = sum(1 for _ in open(out)) if os.path.exists(out) else 0
    while not os.path.exists(out) or sum(1 for _ in open(out)) < n0 + 2 * 85:
        time.sleep(0.05)
    stop(p)
    table = {}
    for line in open(out):
        r = json.loads(line)
        table[str(r["postcode"])] = (r["total_bikes_available"], r["total_mechanical_bikes"],
                                     r["total_electric_bikes"])
    return table


def peer(cmd, n_records):
    """Runs a peer on the first n_records records; returns (records/s, table)."""
    src = RECORDS
    if n_records < N:
        src = os.path.join(WORK, "records-%d.ndjson" % n_records)
        if not os.path.exists(src):
            with open(RECORDS) as f, open(src, "w") as o:
                for i, line in enumerate(f):
                    if i >= n_records:
                        break
                    o.write(line)
    t0 = time.monotonic()
    p = subprocess.run(cmd + [src, POSTCODES], capture_output=True, text=True, check=True)
    elapsed = time.monotonic() - t0
    table = {}
    for line in p.stdout.splitlines():
        r = json.loads(line)
        table[str(r["postcode"])] = (r["total_bikes_available"], r["total_mechanical_bikes"],
                                     r["total_electric_bikes"])
    return n_records / elapsed, table


class Snapshots(http.server.BaseHTTPRequestHandler):
    """Serves the real 2024 status snapshot with a new lastUpdatedOther on
    every request, and every station's num_bikes_available raised by one on
    every other request, so each poll is a new snapshot in which every
    station changed and every postcode total moves (velib_source rightly
    skips identical content; the aggregator emits only changed groups)."""
    body = None
    alt = None
    info = None
    seq = [0]

    def do_GET(self):
        if "information" in self.path:
            data = Snapshots.info
        else:
            Snapshots.seq[0] += 1
            data = Snapshots.body.replace(b'"lastUpdatedOther": 1732004538',
                                          b'"lastUpdatedOther": %d' % (1732004538 + Snapshots.seq[0]))
            if Snapshots.seq[0] % 2:
                data = Snapshots.alt.replace(b'"lastUpdatedOther": 1732004538',
                                             b'"lastUpdatedOther": %d' % (1732004538 + Snapshots.seq[0]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def snapshot_latency():
    status = os.path.join(SHARED, "station_status-2024-11-19.json")
    info = os.path.join(SHARED, "station_information-2024-11-19.json")
    if not os.path.exists(status):
        return None
    Snapshots.body = open(status, "rb").read()
    Snapshots.alt = re.sub(rb'"num_bikes_available": (\d+)',
                           lambda m: b'"num_bikes_available": %d' % (int(m.group(1)) + 1),
                           Snapshots.body)
    Snapshots.info = open(info, "rb").read()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Snapshots)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = "http://127.0.0.1:%d" % srv.server_address[1]
    postcodes = os.path.join(SHARED, "stations_postcodes.csv")

    def cfg(port, state):
        return ("""
worker:
  plugin.path: [%s]
  state.dir: %s
  log.level: warn
  listeners: http://127.0.0.1:%d
connectors:
  - name: velib
    connector.class: velib_source
    topic: raw
    url: %s/station_status.json
    information.url: %s/station_information.json
    poll.interval.ms: 200
    ttl.max.ms: 0
  - name: map
    connector.class: schema_mapper
    topics: raw
    topic: rows
    schema.file: %s
    lookup.file: %s
    lookup.key.column: stationCode
    lookup.value.column: postcode
    lookup.missing: drop
  - name: agg
    connector.class: aggregator
    topics: rows
    topic: out
    group.by: postcode
    semantics: table
    entity.key: stationCode
    aggregates: [total_bikes_available=sum(num_bikes_available)]
    emit: update
    emit.interval.ms: 0
  - name: sink
    connector.class: null_sink
    topics: out
""" % (PLUGINS, state, port, base, base, os.path.join(ROOT, "schemas", "velib_station_status.yaml"),
       postcodes))
    p, port, startup = start(cfg, "snapshot")
    while Snapshots.seq[0] < 26:
        time.sleep(0.05)
    time.sleep(0.3)
    _, m = get(port, "/metrics")
    res = dict(p50=metric(m, "spoke_connector_latency_seconds", connector="sink", quantile="0.5"),
               p99=metric(m, "spoke_connector_latency_seconds", connector="sink", quantile="0.99"),
               max=metric(m, "spoke_connector_latency_seconds", connector="sink", quantile="1"),
               count=metric(m, "spoke_connector_latency_seconds_count", connector="sink"),
               polls=Snapshots.seq[0], idle_rss=vm(p.pid, "VmRSS"))
    stop(p)
    srv.shutdown()
    return res


def med(xs):
    return statistics.median(xs)


def main():
    print("Vélib' pipeline benchmark: %d records, %d runs each, median; %s, %d cores, load %s"
          % (N, RUNS, os.uname().machine, os.cpu_count(), open("/proc/loadavg").read().split()[0]))
    rows = []
    for emit, interval, label in (("update", 0, "spoke, update per record"),
                                  ("complete", 1000, "spoke, complete every 1 s")):
        rs = [run_pipeline(emit, interval, "run") for _ in range(RUNS)]
        rows.append((label, med([r["rate"] for r in rs]), rs))
    spoke_rate = rows[0][1]
    table = spoke_table()

    peers = []
    py_rate, py_table = [], None
    for _ in range(RUNS):
        r, py_table = peer(["python3", os.path.join(os.path.dirname(__file__), "peer_python.py")], N)
        py_rate.append(r)
    peers.append(("python3 + json", med(py_rate), py_table, N))
    n_jq = min(N, 50000)
    jq = [peer(["sh", os.path.join(os.path.dirname(__file__), "peer_jq.sh")], n_jq) for _ in range(3)]
    peers.append(("jq", med([r for r, _ in jq]), jq[0][1], n_jq))
    n_mlr = min(N, 200000)
    ml = [peer(["sh", os.path.join(os.path.dirname(__file__), "peer_miller.sh")], n_mlr) for _ in range(3)]
    peers.append(("miller", med([r for r, _ in ml]), ml[0][1], n_mlr))

    print()
    print("%-30s %14s %10s %10s %10s %10s" % ("pipeline", "records/s", "vs spoke", "p50 ms", "p99 ms",
                                              "peak RSS"))
    for label, rate, rs in rows:
        print("%-30s %14s %10s %10.2f %10.2f %8.1f MB" % (
            label, "{:,.0f}".format(rate), "%.2fx" % (rate / spoke_rate),
            med([r["p50"] or 0 for r in rs]) * 1e3, med([r["p99"] or 0 for r in rs]) * 1e3,
            med([r["hwm"] for r in rs]) / 2**20))
    for label, rate, t, n in peers:
        note = "" if n == N else " (first %d records)" % n
        print("%-30s %14s %10s%s" % (label, "{:,.0f}".format(rate), "%.3fx" % (rate / spoke_rate), note))
    print()
    print("startup to RUNNING (4 connectors): median %.1f ms"
          % med([r["startup"] for r in rows[0][2]]))
    agree = all(t == table for _, _, t, n in peers if n == N)
    print("per-postcode totals: spoke %s python3 (%d postcodes)"
          % ("==" if agree else "!=", len(table)))
    if not agree:
        sys.exit("totals differ")
    s = snapshot_latency()
    if s is None:
        print("snapshot poll->output: skipped (../shared/data/velib absent)")
    else:
        print("real 1,485-station snapshot, poll start -> sink flush over %d polls (%d records): "
              "p50 %.2f ms, p99 %.2f ms, max %.2f ms; RSS after %d polls %.1f MB"
              % (s["polls"], s["count"] or 0, s["p50"] * 1e3, s["p99"] * 1e3, s["max"] * 1e3,
                 s["polls"], s["idle_rss"] / 2**20))


if __name__ == "__main__":
    main()
