#!/usr/bin/python3
"""cassandra_sink benchmark driver (see run.sh).

For each configuration and run: a fresh cqlserver (pinned to CPU 1), a fresh
spoke (pinned to CPU 0) running file_source -> cassandra_sink on N generated
rows (text key, int, double, boolean, ISO timestamp -> timestamp, plus the
client write timestamp), the clock from spoke's start until the sink's
rows_written metric (status.json, every 20 ms) reaches N, peak RSS (VmHWM)
of spoke. Prints the median of the runs per configuration and the ratios.
"""
import json
import os
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT, N, RUNS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
BUILD = os.environ.get("SPOKE_BUILD", os.path.join(ROOT, "build"))
SPOKE = os.path.join(BUILD, "spoke")
SERVER = os.path.join(ROOT, "tests", "cql", "cqlserver.py")
MAPPING = "id=value.id, seq=value.seq, temp=value.temp, ok=value.ok, at=value.at"
TABLE = "id text PRIMARY KEY, seq int, temp double, ok boolean, at timestamp"


def gen(path, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write('{"id":"s%07d","seq":%d,"temp":%.2f,"ok":%s,"at":"2024-11-19T07:%02d:%02d.%03dZ"}\n'
                    % (i, i, i * 0.01 - 40, "true" if i % 2 else "false", i // 60 % 60, i % 60, i % 1000))


def server(blackhole):
    args = ["taskset", "-c", "1", "/usr/bin/python3", SERVER, "--port", "0", "--control-port", "0"]
    if blackhole:
        args.append("--blackhole")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = b""
    deadline = time.monotonic() + 30
    while not line.endswith(b"\n"):
        r, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            raise SystemExit("cqlserver did not start")
        line += os.read(p.stdout.fileno(), 1)
    m = re.match(rb"CQLSERVER port=(\d+) control=(\d+)", line)
    return p, int(m.group(1)), int(m.group(2))


def ctl(port, cmd):
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall((cmd + "\n").encode())
        return json.loads(s.makefile("rb").readline())


def vm(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def run_once(data, n, blackhole, sink_keys):
    srv, port, control = server(blackhole)
    tmp = tempfile.mkdtemp(prefix="spoke-cbench-")
    state = os.path.join(tmp, "state")
    cfg = os.path.join(tmp, "c.yaml")
    keys = "".join("    %s: %s\n" % (k, json.dumps(str(v))) for k, v in sink_keys.items())
    with open(cfg, "w") as f:
        f.write("worker:\n  plugin.path: [%s]\n  state.dir: %s\n  rest.enable: false\n"
                "  status.interval.ms: 20\n  log.level: warn\n"
                "connectors:\n"
                "  - name: src\n    connector.class: file_source\n    topic: rows\n    file: %s\n"
                "  - name: cass\n    connector.class: cassandra_sink\n    topics: rows\n"
                "    contact.points: 127.0.0.1:%d\n    keyspace: bench\n    table: t\n"
                "    mapping: %s\n    consistency: one\n"
                "    create.keyspace: \"{'class': 'SimpleStrategy', 'replication_factor': 1}\"\n"
                "    create.table: %s\n%s"
                % (os.path.join(BUILD, "plugins"), state, data, port, json.dumps(MAPPING),
                   json.dumps(TABLE), keys))
    t0 = time.monotonic()
    sp = subprocess.Popen(["taskset", "-c", "0", SPOKE, "run", "-c", cfg], cwd=tmp,
                          stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "err"), "w"))
    status = os.path.join(state, "status.json")
    written = 0
    plugin = {}
    while written < n:
        if sp.poll() is not None:
            raise SystemExit("spoke exited:\n" + open(os.path.join(tmp, "err")).read()[-2000:])
        try:
            with open(status) as f:
                c = json.load(f)["connectors"]["cass"]
            if c.get("state") == "FAILED":
                raise SystemExit("sink failed: %s" % c.get("trace"))
            plugin = (c.get("metrics") or {}).get("plugin") or {}
            written = plugin.get("rows_written") or 0
        except (FileNotFoundError, ValueError, KeyError):
            pass
        if time.monotonic() - t0 > 1800:
            raise SystemExit("timed out")
        time.sleep(0.005)
    elapsed = time.monotonic() - t0
    rss = vm(sp.pid, "VmHWM")
    stats = ctl(control, "stats")
    stats["request_bytes"] = plugin.get("request_bytes") or 0
    stats["request_bytes_sent"] = plugin.get("request_bytes_sent") or 0
    sp.send_signal(signal.SIGTERM)
    sp.wait(60)
    srv.send_signal(signal.SIGTERM)
    srv.wait(60)
    subprocess.run(["rm", "-rf", tmp])
    return n / elapsed, rss, stats


def main():
    if not os.path.exists(SPOKE):
        raise SystemExit("no spoke at %s (build first, or set SPOKE_BUILD)" % SPOKE)
    work = tempfile.mkdtemp(prefix="spoke-cbench-data-")
    data = os.path.join(work, "rows.ndjson")
    n_slow = min(N, 100000)
    gen(data, N)
    slow = os.path.join(work, "rows-slow.ndjson")
    gen(slow, n_slow)
    configs = [
        ("pipelined, batch.size 64, max.inflight 128, batch.max 8192", data, N, True,
         {"batch.size": 64, "max.inflight": 128, "batch.max": 8192}),
        ("defaults (batch.size 32, max.inflight 128, batch.max 1024)", data, N, True, {}),
        ("defaults, compression lz4", data, N, True, {"compression": "lz4"}),
        ("one at a time (batch.size 1, max.inflight 1)", slow, n_slow, True,
         {"batch.size": 1, "max.inflight": 1}),
        ("pipelined, batch.size 64, max.inflight 128, batch.max 8192", slow, n_slow, False,
         {"batch.size": 64, "max.inflight": 128, "batch.max": 8192}),
    ]
    print("cassandra_sink: %d rows (%d for the slow runs), %d runs each, median; "
          "spoke on CPU 0, cqlserver on CPU 1" % (N, n_slow, RUNS))
    print("%-76s %10s %21s %9s  %s" % ("configuration", "rows/s", "(min-max)", "peak RSS",
                                        "server saw"))
    medians = []
    for name, path, n, blackhole, keys in configs:
        rates, rsss = [], []
        for _ in range(RUNS):
            rate, rss, stats = run_once(path, n, blackhole, keys)
            rates.append(rate)
            rsss.append(rss)
        medians.append(statistics.median(rates))
        wire = ""
        if stats["request_bytes"]:
            wire = ", request bodies %.1f MB -> %.1f MB on the wire (%.2fx smaller)" % (
                stats["request_bytes"] / 1e6, stats["request_bytes_sent"] / 1e6,
                stats["request_bytes"] / max(1, stats["request_bytes_sent"]))
        print("%-76s %10s %21s %6.1f MB  %s, max in flight %d%s" % (
            name + (" [blackhole]" if blackhole else " [store]"), "{:,.0f}".format(medians[-1]),
            "({:,.0f}-{:,.0f})".format(min(rates), max(rates)), statistics.median(rsss),
            "batches" if stats.get("batches") else "executes", stats.get("max_inflight", 0), wire),
            flush=True)
    print("pipelined / one at a time (blackhole): %.1fx" % (medians[0] / medians[3]))
    print("compression lz4 / none, defaults (blackhole): %.2f" % (medians[2] / medians[1]))
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
