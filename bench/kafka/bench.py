#!/usr/bin/env python3
"""Kafka benchmark: Spoke beside kcat against the same librdkafka mock
cluster, in one run.

  produce: 1,000,000 records of ~280 bytes from an NDJSON file
           spoke file_source -> kafka_sink   vs   kcat -P -l FILE
  consume: a topic of 64 partitions filled by kcat with the same records, read
           to nothing (the mock cluster keeps ~5 MB per partition: every
           reader reads what it retained, ~640k messages), two comparisons:
           without a consumer group (like for like: neither joins one)
             spoke kafka_source consumer.mode=assign -> null_sink
                                                vs   kcat -C -e -o beginning
           in a consumer group (both pay the first join, which the mock
           cluster, like Kafka, holds for group.initial.rebalance.delay.ms, 3 s)
             spoke kafka_source consumer.mode=group -> null_sink
                                                vs   kcat -G <group> <topic> -e

Each side runs `runs` times, alternating, each on a topic of its own; the
medians of messages/s and peak RSS are printed with the ratio Spoke/kcat.
Spoke's time runs from exec to the moment its status shows every message
confirmed (delivered by kafka_sink, counted by null_sink): startup included.
The group rows also show Spoke's rate after its first record (after the
join). The load average is printed with each run: the numbers are only as
quiet as the machine.

With GROUP_AB=OTHER_BUILD_DIR only group mode is measured, BUILD_DIR's
spoke against OTHER_BUILD_DIR's (e.g. before and after a change), on the
same topic fill in each run, alternating which goes first; printed: each
run (messages/s, after the join, per CPU-second of the spoke process), the
medians and the medians of the paired ratios. SOURCE_EXTRA adds YAML lines
to the kafka_source connector there.

usage: bench.py BUILD_DIR WORKDIR [N] [RUNS]
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

BUILD = os.path.abspath(sys.argv[1])
WORK = os.path.abspath(sys.argv[2])
N = int(sys.argv[3]) if len(sys.argv) > 3 else 1000000
RUNS = int(sys.argv[4]) if len(sys.argv) > 4 else 3
PARTITIONS = 4
CPART = 64  # the mock cluster keeps ~5 MB per partition: both sides read what it retained
# The sink's host queue and batch: a batch is what kafka_sink has in flight.
QUEUE = int(os.environ.get("SPOKE_QUEUE", "8192"))
BATCH = int(os.environ.get("SPOKE_BATCH", "4096"))
# GROUP_AB: more kafka_source keys, YAML lines indented by 4 (e.g. a larger
# kafka.queued.max.messages.kbytes).
SOURCE_EXTRA = os.environ.get("SOURCE_EXTRA", "")


def gen(path, n):
    """~280-byte Vélib'-like records."""
    if os.path.exists(path) and sum(1 for _ in open(path)) == n:
        return
    with open(path, "w") as f:
        for i in range(n):
            code = 10000 + i % 1470
            f.write(json.dumps({
                "stationCode": str(code), "station_id": 100000000 + code,
                "num_bikes_available": i % 31, "numBikesAvailable": i % 31,
                "num_bikes_available_types": [{"mechanical": i % 17}, {"ebike": i % 14}],
                "num_docks_available": 40 - i % 31, "numDocksAvailable": 40 - i % 31,
                "is_installed": 1, "is_returning": 1, "is_renting": 1,
                "last_reported": 1732000000 + i, "seq": i,
            }, separators=(",", ":")) + "\n")


class Cluster:
    def __init__(self):
        self.p = subprocess.Popen([os.path.join(BUILD, "tests", "kafka", "mockcluster"), "--brokers", "1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        self.bootstrap = line.strip().split("bootstrap=", 1)[1]

    def create(self, topic, partitions=None):
        self.p.stdin.write("create %s %d\n" % (topic, partitions or PARTITIONS))
        self.p.stdin.flush()
        assert self.p.stdout.readline().strip() == "ok"

    def close(self):
        self.p.stdin.close()
        self.p.wait(10)


def retained(bootstrap, topic):
    """Messages the mock cluster still holds (it keeps ~5 MB per partition)."""
    out = subprocess.run([os.path.join(BUILD, "tests", "kafka", "groupoffsets"), "-b", bootstrap,
                          "-t", topic], capture_output=True, text=True, check=True).stdout
    parts = json.loads(out)["partitions"].values()
    return sum(p["high"] - p["low"] for p in parts)


def peak_rss_kb(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def timed(cmd, **kw):
    """Runs cmd; returns (seconds, peak RSS KB) measured by /usr/bin/time-like wait4."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, **kw)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit("%s failed: %d" % (cmd[0], p.returncode))
    return dt, ru.ru_maxrss


FIRST = None  # seconds from exec to the first record seen by the sink (last spoke_run)
CPU = None    # CPU seconds (user + system) spoke had used when done() held (last spoke_run)


def cpu_seconds(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def started(st):
    c = st.get("connectors", {}).get("out") or {}
    return (c.get("metrics") or {}).get("records_in", 0) > 0


def spoke_run(name, yaml_text, done, build=BUILD):
    """Starts spoke, waits until done(status) holds; returns (seconds, peak RSS KB)."""
    d = os.path.join(WORK, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    cfg = os.path.join(d, "c.yaml")
    with open(cfg, "w") as f:
        f.write(yaml_text.replace("@STATE@", os.path.join(d, "state")))
    t0 = time.monotonic()
    p = subprocess.Popen([os.path.join(build, "spoke"), "run", "-c", cfg],
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "log"), "w"))
    status = os.path.join(d, "state", "status.json")
    rss = 0
    global FIRST
    FIRST = None
    while True:
        rss = max(rss, peak_rss_kb(p.pid))
        try:
            with open(status) as f:
                st = json.load(f)
            if FIRST is None and started(st):
                FIRST = time.monotonic() - t0
            if done(st):
                break
        except (OSError, ValueError):
            pass
        if p.poll() is not None:
            raise SystemExit("spoke exited early, see %s/log" % d)
        time.sleep(0.005)
    dt = time.monotonic() - t0
    rss = max(rss, peak_rss_kb(p.pid))
    global CPU
    CPU = cpu_seconds(p.pid)
    p.terminate()
    p.wait(30)
    return dt, rss


def plugin_metric(st, conn, name):
    c = st.get("connectors", {}).get(conn) or {}
    return ((c.get("metrics") or {}).get("plugin") or {}).get(name, 0)


HEAD = """worker:
  plugin.path: [%s]
  state.dir: @STATE@
  rest.enable: false
  status.interval.ms: 20
  kafka.bootstrap.servers: %s
connectors:
"""


CONSUME = """  - name: in
    connector.class: kafka_source
    topic: recs
    source.topics: %s
%s    value.format: bytes
  - name: out
    connector.class: null_sink
    topics: recs
    queue.capacity: %d
    batch.max: %d
"""


def group_ab(cl, data, other):
    """GROUP_AB: group mode only, BUILD against other, alternating."""
    builds = [("A", BUILD), ("B", other)]
    print("A = %s\nB = %s" % (BUILD, other))
    rate = {l: [] for l, _ in builds}
    after = {l: [] for l, _ in builds}
    rss = {l: [] for l, _ in builds}
    percpu = {l: [] for l, _ in builds}
    for r in range(RUNS):
        tc = "ab-%d" % r
        cl.create(tc, CPART)
        timed(["kcat", "-P", "-b", cl.bootstrap, "-t", tc, "-l", data])
        avail = retained(cl.bootstrap, tc)
        load = os.getloadavg()[0]
        line = []
        for label, build in (builds if r % 2 == 0 else builds[::-1]):
            y = (HEAD % (os.path.join(build, "plugins"), cl.bootstrap) +
                 CONSUME % (tc, "    group.id: ab-%s-%d\n%s" % (label, r, SOURCE_EXTRA),
                            QUEUE, BATCH))
            dt, kb = spoke_run("ab-%s-%d" % (label, r), y,
                               lambda st: plugin_metric(st, "out", "records") >= avail, build)
            rate[label].append(avail / dt)
            after[label].append(avail / (dt - FIRST) if FIRST and dt > FIRST else 0)
            rss[label].append(kb)
            percpu[label].append(avail / CPU if CPU else 0)
            line.append("%s %.0f/s, %.0f/s after the join (%.1f s), %.0f per CPU-second, "
                        "%.1f MB" % (label, rate[label][-1], after[label][-1], FIRST or 0,
                                     percpu[label][-1], kb / 1024))
        print("run %d (%d messages, load %.2f): %s" % (r + 1, avail, load, "; ".join(line)),
              flush=True)
    print()
    print("| build | msg/s with the join (median of %d) | after the join | messages per "
          "CPU-second | peak RSS MB |" % RUNS)
    print("|---|---|---|---|---|")
    for label, build in builds:
        print("| %s %s | %.0f | %.0f | %.0f | %.1f |" % (
            label, build, statistics.median(rate[label]), statistics.median(after[label]),
            statistics.median(percpu[label]), statistics.median(rss[label]) / 1024))
    for what, d in (("after the join", after), ("per CPU-second", percpu)):
        ratios = [a / b for a, b in zip(d["A"], d["B"]) if b]
        print("A / B %s, median of the paired ratios: %.2f (%s)" % (
            what, statistics.median(ratios), ", ".join("%.2f" % x for x in ratios)))
    print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())


def main():
    os.makedirs(WORK, exist_ok=True)
    data = os.path.join(WORK, "records.ndjson")
    gen(data, N)
    size = os.path.getsize(data)
    print("records: %d, %.0f bytes each on average" % (N, size / N))
    cl = Cluster()
    ckeys = ("kcat_c", "spoke_ca", "kcat_g", "spoke_cg")
    res = {k: [] for k in ("kcat_p", "spoke_p", "spoke_cg_run") + ckeys}
    rss = {k: [] for k in ("kcat_p", "spoke_p") + ckeys}
    head = HEAD % (os.path.join(BUILD, "plugins"), cl.bootstrap)
    if os.environ.get("GROUP_AB"):
        try:
            group_ab(cl, data, os.path.abspath(os.environ["GROUP_AB"]))
        finally:
            cl.close()
        return
    try:
        for r in range(RUNS):
            tk, ts = "kcat-%d" % r, "spoke-%d" % r
            cl.create(tk)
            cl.create(ts)
            dt, kb = timed(["kcat", "-P", "-b", cl.bootstrap, "-t", tk, "-l", data,
                            "-X", "enable.idempotence=true", "-X", "acks=all"])
            res["kcat_p"].append(N / dt)
            rss["kcat_p"].append(kb)
            y = head + """  - name: src
    connector.class: file_source
    topic: recs
    file: %s
    read.batch.lines: 4096
  - name: out
    connector.class: kafka_sink
    topics: recs
    target.topic: %s
    queue.capacity: %d
    batch.max: %d
""" % (data, ts, QUEUE, BATCH)
            dt, kb = spoke_run("produce-%d" % r, y, lambda st: plugin_metric(st, "out", "delivered") >= N)
            res["spoke_p"].append(N / dt)
            rss["spoke_p"].append(kb)
            print("run %d: produce kcat %.0f/s (%.1f MB), spoke %.0f/s (%.1f MB)" % (
                r + 1, res["kcat_p"][-1], rss["kcat_p"][-1] / 1024, res["spoke_p"][-1],
                rss["spoke_p"][-1] / 1024), flush=True)
            if os.environ.get("PRODUCE_ONLY"):
                continue
            # Consume: a topic of CPART partitions filled once (the mock
            # cluster keeps only 5 MB per partition), read by all four.
            tc = "consume-%d" % r
            cl.create(tc, CPART)
            timed(["kcat", "-P", "-b", cl.bootstrap, "-t", tc, "-l", data])
            avail = retained(cl.bootstrap, tc)
            load = os.getloadavg()[0]
            dt, kb = timed(["kcat", "-C", "-b", cl.bootstrap, "-t", tc, "-e", "-o", "beginning", "-q"],
                           stdout=subprocess.DEVNULL)
            res["kcat_c"].append(avail / dt)
            rss["kcat_c"].append(kb)
            consume = head + CONSUME
            y = consume % (tc, "    consumer.mode: assign\n", QUEUE, BATCH)
            dt, kb = spoke_run("consume-assign-%d" % r, y,
                               lambda st: plugin_metric(st, "out", "records") >= avail)
            res["spoke_ca"].append(avail / dt)
            rss["spoke_ca"].append(kb)
            dt, kb = timed(["kcat", "-b", cl.bootstrap, "-G", "kcat-%d" % r, tc, "-e", "-q",
                            "-X", "auto.offset.reset=earliest"], stdout=subprocess.DEVNULL)
            res["kcat_g"].append(avail / dt)
            rss["kcat_g"].append(kb)
            y = consume % (tc, "    group.id: bench-%d\n" % r, QUEUE, BATCH)
            dt, kb = spoke_run("consume-group-%d" % r, y,
                               lambda st: plugin_metric(st, "out", "records") >= avail)
            res["spoke_cg"].append(avail / dt)
            res["spoke_cg_run"].append(avail / (dt - FIRST) if FIRST and dt > FIRST else 0)
            rss["spoke_cg"].append(kb)
            print("run %d: consume (%d messages retained; load %.2f) no group: kcat -C %.0f/s "
                  "(%.1f MB), spoke assign %.0f/s (%.1f MB); group: kcat -G %.0f/s (%.1f MB), "
                  "spoke group %.0f/s (%.1f MB; %.0f/s after the join, %.1f s)" % (
                      r + 1, avail, load, res["kcat_c"][-1], rss["kcat_c"][-1] / 1024,
                      res["spoke_ca"][-1], rss["spoke_ca"][-1] / 1024, res["kcat_g"][-1],
                      rss["kcat_g"][-1] / 1024, res["spoke_cg"][-1], rss["spoke_cg"][-1] / 1024,
                      res["spoke_cg_run"][-1], FIRST or 0), flush=True)
    finally:
        cl.close()
    if os.environ.get("PRODUCE_ONLY"):
        for k in ckeys:
            res[k], rss[k] = [0], [0]
        res["spoke_cg_run"] = [0]
    med = {k: statistics.median(v) for k, v in res.items()}
    mrss = {k: statistics.median(v) / 1024 for k, v in rss.items()}
    print()
    print("| step | tool | msg/s (median of %d) | peak RSS MB | spoke / kcat |" % RUNS)
    print("|---|---|---|---|---|")
    print("| produce | kcat -P | %.0f | %.1f | |" % (med["kcat_p"], mrss["kcat_p"]))
    print("| produce | spoke file_source -> kafka_sink | %.0f | %.1f | %.2f |" % (
        med["spoke_p"], mrss["spoke_p"], med["spoke_p"] / med["kcat_p"]))
    print("| consume, no group | kcat -C | %.0f | %.1f | |" % (med["kcat_c"], mrss["kcat_c"]))
    print("| consume, no group | spoke kafka_source (assign) -> null_sink | %.0f | %.1f | %.2f |" % (
        med["spoke_ca"], mrss["spoke_ca"], med["spoke_ca"] / (med["kcat_c"] or 1)))
    print("| consume, group join | kcat -G | %.0f | %.1f | |" % (med["kcat_g"], mrss["kcat_g"]))
    print("| consume, group join | spoke kafka_source (group) -> null_sink | %.0f | %.1f | %.2f |" % (
        med["spoke_cg"], mrss["spoke_cg"], med["spoke_cg"] / (med["kcat_g"] or 1)))
    print("| consume, group join | the same, after its join | %.0f | | |" % med["spoke_cg_run"])
    print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())

main()
