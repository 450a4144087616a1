"""kafkatest - Kafka for the integration tests, without a Kafka server.

- start_cluster(): librdkafka's mock cluster (tests/kafka/mockcluster: the real
  Kafka wire protocol on loopback), driven through its stdin commands
  (`create`, `down`, `up`, `rtt`, `error`).
- kcat_produce() / kcat_consume(): kcat (Debian's `kcat` package), an
  independent client, to write test input and read results.
- committed_offsets() / end_offsets() / watermarks(): tests/kafka/groupoffsets, a tiny
  librdkafka tool, because kcat cannot show a group's committed offsets.

Every helper raises spoketest.Skip when kcat is not installed, and
AssertionError with the tool's own message when a command fails. Nothing
here sleeps for a fixed time: waits poll a condition against a deadline.
"""
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading

import spoketest

MOCKCLUSTER = os.path.join(spoketest.BUILD_DIR, "tests", "kafka", "mockcluster")
GROUPOFFSETS = os.path.join(spoketest.BUILD_DIR, "tests", "kafka", "groupoffsets")
KCAT = shutil.which("kcat")


def require_kcat():
    """Skips the calling test when kcat is missing (dev.sh installs it)."""
    if not KCAT:
        raise spoketest.Skip("kcat is not installed (apt-get install kcat)")
    for tool in (MOCKCLUSTER, GROUPOFFSETS):
        if not os.path.exists(tool):
            raise AssertionError("%s not built (cmake --build <dir>)" % tool)


class Cluster:
    """A running mock cluster. Use start_cluster(); `with` stops it."""

    def __init__(self, brokers=1, topics=None):
        require_kcat()
        args = [MOCKCLUSTER, "--brokers", str(brokers)]
        for name, parts in (topics or {}).items():
            args += ["--topic", "%s:%d" % (name, parts)]
        self.brokers = brokers
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True, bufsize=1)
        self._lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        first = self._next_line(15, "the mock cluster's bootstrap line")
        if not first.startswith("MOCKCLUSTER bootstrap="):
            self.stop()
            raise AssertionError("mockcluster said %r" % first)
        self.bootstrap = first.split("=", 1)[1].strip()

    def _read(self):
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _next_line(self, timeout, what):
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("mockcluster: no answer within %ss (%s)" % (timeout, what))
        if line is None:
            self._err.seek(0)
            raise AssertionError("mockcluster exited (%s); stderr: %s"
                                 % (what, self._err.read().decode(errors="replace")[-2000:]))
        return line

    def cmd(self, command, timeout=10):
        """Sends one command (e.g. "down all", "create t 4") and checks it
        was answered `ok`."""
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self._next_line(timeout, command)
        if answer != "ok":
            raise AssertionError("mockcluster %r: %s" % (command, answer))

    def create_topic(self, name, partitions=1):
        self.cmd("create %s %d" % (name, partitions))

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # EOF: the helper exits
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def start_cluster(brokers=1, topics=None):
    """A mock cluster of `brokers` brokers with `topics` ({name: partitions})."""
    return Cluster(brokers, topics)


def _bytes(v):
    return v if isinstance(v, bytes) else str(v).encode()


def kcat_produce(bootstrap, topic, records, partition=None, timeout=300):
    """Produces records in order: dicts with "value" (str/bytes, or None for
    a null value), optional "key" (None or absent: no key), "headers" (list
    of (name, value) pairs or a dict) and "partition" (overrides the
    argument; None: kcat's partitioner, by key). A record with a null value
    cannot have an empty (non-null) key. Consecutive records with the
    same headers, partition and nullness go through one kcat run, so order
    within a partition is kept. Values may not hold a newline, keys no tab.
    """
    require_kcat()
    groups = []
    for r in records:
        hdrs = r.get("headers") or ()
        if isinstance(hdrs, dict):
            hdrs = list(hdrs.items())
        hdrs = tuple((str(k), str(v)) for k, v in hdrs)
        part = r.get("partition", partition)
        null = r.get("value") is None
        sig = (hdrs, part, null)
        if not groups or groups[-1][0] != sig:
            groups.append((sig, []))
        groups[-1][1].append(r)
    for (hdrs, part, null), recs in groups:
        with tempfile.NamedTemporaryFile(prefix="kcat-", suffix=".in") as f:
            for r in recs:
                key = r.get("key")
                val = b"" if null else _bytes(r["value"])
                if b"\n" in val:
                    raise ValueError("kcat_produce: a value holds a newline: %r" % val[:80])
                kb = b"" if key is None else _bytes(key)
                if b"\t" in kb or b"\n" in kb:
                    raise ValueError("kcat_produce: a key holds a tab or newline: %r" % kb)
                # No tab: kcat sends a null key. With -Z (null values) an
                # empty key or value is sent as null, and a line is never
                # empty (kcat skips empty lines).
                if key is None and not null:
                    f.write(val + b"\n")
                else:
                    f.write(kb + b"\t" + val + b"\n")
            f.flush()
            args = [KCAT, "-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-l", f.name,
                    "-X", "acks=all"]
            if part is not None:
                args += ["-p", str(part)]
            if null:
                args += ["-Z"]
            for k, v in hdrs:
                args += ["-H", "%s=%s" % (k, v)]
            p = subprocess.run(args, capture_output=True, timeout=timeout)
            if p.returncode != 0 or b"ERROR" in p.stderr or b"% Failed" in p.stderr:
                raise AssertionError("kcat produce to %s failed (%d): %s"
                                     % (topic, p.returncode, p.stderr.decode(errors="replace")))


def _record(m):
    """kcat -J envelope -> {topic, partition, offset, key, value, headers, ts}."""
    h = m.get("headers") or []
    return {"topic": m.get("topic"), "partition": m.get("partition"), "offset": m.get("offset"),
            "key": m.get("key"), "value": m.get("payload"),
            "headers": [(h[i], h[i + 1]) for i in range(0, len(h) - 1, 2)],
            "ts": m.get("ts"), "tstype": m.get("tstype")}


def kcat_consume(bootstrap, topic, n=None, timeout=60, partition=None):
    """Reads a topic from the beginning with kcat. n=None: everything there
    is now (stops at the end of every partition); n: waits (up to timeout)
    until n messages came. Returns a list of dicts: topic, partition,
    offset, key, value (str or None), headers [(name, value)], ts."""
    require_kcat()
    args = [KCAT, "-C", "-b", bootstrap, "-t", topic, "-J", "-q", "-o", "beginning",
            "-u"]
    if partition is not None:
        args += ["-p", str(partition)]
    if n is None:
        args += ["-e"]
    else:
        args += ["-c", str(n)]
    try:
        p = subprocess.run(args, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        got = (e.stdout or b"").count(b"\n")
        raise AssertionError("kcat consume of %s: %d of %s messages within %ss"
                             % (topic, got, n, timeout))
    if p.returncode != 0:
        raise AssertionError("kcat consume of %s failed (%d): %s"
                             % (topic, p.returncode, p.stderr.decode(errors="replace")))
    return [_record(json.loads(line)) for line in p.stdout.decode().splitlines() if line.strip()]


def _offsets(bootstrap, topic, group=None, timeout_ms=10000):
    args = [GROUPOFFSETS, "-b", bootstrap, "-t", topic, "-T", str(timeout_ms)]
    if group:
        args += ["-g", group]
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout_ms / 1000 * 3 + 10)
    if p.returncode != 0:
        raise AssertionError("groupoffsets %s: %s" % (" ".join(args[1:]), p.stderr.strip()))
    return json.loads(p.stdout)["partitions"]


def committed_offsets(bootstrap, group, topic):
    """{partition: offset the group committed (None: nothing committed)}."""
    return {int(k): v["committed"] for k, v in _offsets(bootstrap, topic, group).items()}


def end_offsets(bootstrap, topic):
    """{partition: high watermark (offset of the next message)}."""
    return {int(k): v["high"] for k, v in _offsets(bootstrap, topic).items()}


def watermarks(bootstrap, topic):
    """{partition: (low, high)}. The mock cluster keeps about 5 MB per
    partition and drops the oldest messages beyond that (low > 0)."""
    return {int(k): (v["low"], v["high"]) for k, v in _offsets(bootstrap, topic).items()}
