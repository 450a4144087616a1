#!/usr/bin/env python3
"""plugin-cassandra_sink: file_source -> cassandra_sink into the CQL v4 test
server (tests/cql/cqlserver.py, itself checked with the DataStax driver).

- 100,000 rows end to end: the table holds exactly the expected rows (keys,
  every typed value, TTL), checked with the server's `dump` and spot-checked
  with the DataStax Python driver; requests were batched and pipelined.
- Authentication (PasswordAuthenticator) succeeds, and fails clearly without
  the password showing anywhere.
- Server errors: a create.table with a syntax error fails the connector with
  the server's message; rows the server refuses (Invalid) are found inside
  their batches and only they go to the dead-letter topic, with the server's
  code and message (written to a second table through header.* mapping);
  conversion errors too; unavailable / write_timeout / overloaded /
  server_error / read_timeout / truncate_error are retried; a request that
  keeps failing makes the status show `retrying` and then recovers;
  forget-prepared is answered with Unprepared and the sink prepares again.
- The server down for 20 s mid-run and up again: nothing lost, the status
  showed `retrying` with "cannot connect to any contact point" meanwhile.
- kill -9 of spoke mid-run and a restart: the same final table (upserts).
- The no-mapping form, failover over contact points, a counter table and a
  missing table refused, unknown keys refused.
- The plugin's check: every rule that depends on the config alone (contact
  points, keyspace and table names, username without password,
  create.keyspace, the mapping's syntax) refuses the config before it runs,
  at the key's line (`spoke validate`, `spoke run`) and over REST (400,
  nothing created); no server needed.
Skips (the tests that need it) when tests/cql/cqlserver.py is missing.
"""
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import spoketest
import resttest
from resttest import expect, rest_spoke
from spoketest import SOURCE_DIR, Skip, Spoke, metric, q, validate, wait_for

SERVER = os.path.join(SOURCE_DIR, "tests", "cql", "cqlserver.py")
PY = "/usr/bin/python3"
N = 100000
TIMEOUT = 180
SANITIZE = os.environ.get("SPOKE_SANITIZE", "") in ("1", "ON", "TRUE", "true")


class CqlServer:
    """The test server on free ports: `with CqlServer() as cs: cs.ctl("stats")`."""

    def __init__(self, auth=None, blackhole=False, tls=None, client_ca=None, compression=None):
        """tls: (certificate, key) PEM files: TLS only; client_ca: a PEM file,
        client certificates required."""
        if not os.path.exists(SERVER):
            raise Skip("tests/cql/cqlserver.py is missing")
        args = [PY, SERVER, "--port", "0", "--control-port", "0"]
        if auth:
            args += ["--auth", auth]
        if blackhole:
            args.append("--blackhole")
        if tls:
            args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        if compression:
            args += ["--compression", compression]
        if client_ca:
            args += ["--tls-client-ca", client_ca]
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err)
        line = b""
        deadline = time.monotonic() + 30
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError("cqlserver did not start: %s" % self.stderr())
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                c = os.read(self.proc.stdout.fileno(), 1)
                if not c:
                    raise AssertionError("cqlserver exited: %s" % self.stderr())
                line += c
        m = re.match(rb"CQLSERVER port=(\d+) control=(\d+)", line)
        assert m, line
        self.port, self.control = int(m.group(1)), int(m.group(2))

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")[-3000:]

    def ctl(self, cmd):
        with socket.create_connection(("127.0.0.1", self.control), timeout=60) as s:
            s.sendall((cmd + "\n").encode())
            f = s.makefile("rb")
            line = f.readline()
        out = json.loads(line)
        if isinstance(out, dict) and out.get("ok") is False:
            raise AssertionError("cqlserver %r: %s" % (cmd, out.get("error")))
        return out

    def dump(self, table):
        return self.ctl("dump %s" % table)

    def count(self, table):
        try:
            return len(self.dump(table)["rows"])
        except AssertionError:
            return 0

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.err.close()

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is not None:
            sys.stderr.write("---- cqlserver stderr ----\n%s\n" % self.stderr())
        self.close()
        return False


def write_lines(path, records, mode="w"):
    with open(path, mode) as f:
        for r in records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")


def sink(cs, name="cass", topics="rows", table="t", **keys):
    """A cassandra_sink connector's YAML."""
    base = {
        "connector.class": "cassandra_sink",
        "topics": topics,
        "contact.points": "127.0.0.1:%d" % cs.port,
        "keyspace": "ks",
        "table": table,
        "create.keyspace": "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        "consistency": "local_one",
        "request.timeout.ms": 30000,
    }
    base.update(keys)
    text = "  - name: %s\n" % name
    for k, v in base.items():
        if v is None:
            continue
        text += "    %s: %s\n" % (k, q(str(v)) if not isinstance(v, bool) else str(v).lower())
    return text


class NoServer:
    """Stands for a CqlServer in sink() where none is reached (the config is
    refused before anything connects)."""
    port = 9


def refused_before_running(conf, key, want, name="cass", secret=None):
    """`spoke validate` and `spoke run` both refuse the connectors conf
    (the text after "connectors:"; exit 1): validate at the line of key in
    connector name, with want; secret (a password) appears in neither
    output."""
    with tempfile.TemporaryDirectory(prefix="spoke-cass-") as tmp:
        _, p, p2 = spoketest.expect_check_refuses(tmp, conf, name, key, want, reason_first=True)
        assert not os.path.exists(os.path.join(tmp, "state", "status.json")), \
            "%s: spoke run started connectors" % key
        if secret:
            for out in (p.stdout, p.stderr, p2.stdout, p2.stderr):
                assert secret not in out, "%s: the password shows: %r" % (key, out)


def source(path, topic="rows", name="replay"):
    return ("  - name: %s\n    connector.class: file_source\n    topic: %s\n    file: %s\n"
            "    poll.interval.ms: 20\n" % (name, topic, q(path)))


def rows_written(sp, name="cass"):
    """The connector's rows_written; fails at once if it FAILED or spoke exited."""
    c = sp.connector(name)
    if c.get("state") == "FAILED":
        raise AssertionError("%s FAILED: %s" % (name, c.get("trace")))
    if not sp.alive():
        raise AssertionError("spoke exited:\n%s" % sp.log()[-3000:])
    return metric(sp, name, "rows_written") or 0


def reading(i):
    """Record i of the main data set and the row it must become."""
    rec = {"id": "r%06d" % i, "seq": i, "big": i * 1000003, "temp": round(i * 0.25 - 40, 2),
           "ok": i % 3 == 0, "at": "2024-11-19T07:%02d:%02d.%03dZ" % (i // 60 % 60, i % 60, i % 1000),
           "day": "2024-%02d-%02d" % (i % 12 + 1, i % 28 + 1), "price": "%d.%02d" % (i, i % 100),
           "meta": {"zone": "z%d" % (i % 7)}}
    return rec


MAIN_TABLE = ("id text PRIMARY KEY, seq int, big bigint, temp double, ok boolean, at timestamp, "
              "day date, price decimal, zone text, u timeuuid")
MAIN_MAPPING = ("id=value.id, seq=value.seq, big=value.big, temp=value.temp, ok=value.ok, "
                "at=value.at, day=value.day, price=value.price, "
                "zone=value.meta.zone, u=now()")


def iso_ms(s):
    import datetime
    d = datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return int(d.timestamp() * 1000)


def check_main_row(row, cols, i, ttl=None):
    r = dict(zip(cols, row))
    rec = reading(i)
    assert r["id"] == rec["id"], r
    assert r["seq"] == i and r["big"] == rec["big"], r
    assert r["temp"] == rec["temp"], (r["temp"], rec["temp"])
    assert r["ok"] is rec["ok"], r
    assert r["at"] == iso_ms(rec["at"]), (r["at"], rec["at"])
    assert r["day"] == rec["day"], r
    assert r["price"] == rec["price"], r
    assert r["zone"] == rec["meta"]["zone"], r
    if "u" in r:
        assert uuid.UUID(r["u"]).version == 1, r["u"]


# ---------------------------------------------------------------------------

def test_unknown_property_rejected():
    good = ("connectors:\n  - name: c\n    connector.class: cassandra_sink\n    topics: t\n"
            "    keyspace: ks\n    table: t\n")
    r = validate(good)
    assert r.returncode == 0, "valid config refused: %s" % r.stderr
    r = validate(good + "    batch.sise: 10\n")
    assert r.returncode == 1 and "batch.sise" in r.stderr, r.stderr
    r = validate(good + "    consistency: serial\n")
    assert r.returncode == 1 and "consistency" in r.stderr, r.stderr
    r = validate(good.replace("    table: t\n", ""))
    assert r.returncode == 1 and "table" in r.stderr, r.stderr


# Every rule the plugin's check applies: (key, its bad value, the reason).
CHECK_CASES = [
    ("contact.points", "127.0.0.1:99999",
     "contact.points: '127.0.0.1:99999' is not host, host:port or [ipv6]:port"),
    ("contact.points", "127.0.0.1:9042, [::1:9042",
     "contact.points: '[::1:9042' is not host, host:port or [ipv6]:port"),
    ("contact.points", "[::1]x", "contact.points: '[::1]x' is not host"),
    ("contact.points", "cass1:", "contact.points: 'cass1:' is not host"),
    ("username", "spoke", "username is set but password is not"),
    ("password", "pw-Zk4-secret", "password is set but username is not"),
    ("keyspace", "my-ks", "keyspace: 'my-ks' is not a valid name (letters, digits and _ only"),
    ("table", "readings.v2", "table: 'readings.v2' is not a valid name (letters, digits and _ "
     "only"),
    ("create.keyspace", "replication_factor: 1", "create.keyspace: give replication options"),
    ("mapping", "id=valu.id", "mapping: 'valu.id' is not a source (value, value.<field>, key"),
    ("mapping", "id=value.id, id=key", "mapping: column 'id' is mapped twice"),
    ("mapping", "id=value.id,", "mapping: trailing ','"),
    ("mapping", "id value.id", "mapping: expected '=' after column 'id'"),
    ("mapping", "1d=value.id", "mapping: expected a column name at '1d=value.id'"),
    ("mapping", '""=value.id', "mapping: empty column name"),
    ("mapping", 'id=value."a', 'mapping: unterminated " quote'),
    ("mapping", "id=value..a", "mapping: empty field name in 'value..a'"),
    ("mapping", "id=header", "mapping: 'header': header needs a name (header.<name>)"),
    ("reconnect.backoff.ms", "9000",
     "reconnect.backoff.ms (9000) is above reconnect.backoff.max.ms (5000)"),
]


def test_config_rules_refused_before_running():
    """Each rule that depends on the config alone is the plugin's check: the
    config is refused before anything runs (no CQL server here), at the
    key's line, with the reason init used to fail the connector with; the
    password never shows. Several mistakes are reported together."""
    good = "connectors:\n" + source("/nonexistent/in.ndjson") + sink(
        NoServer, mapping="id=value.id, v=value.v", username="spoke", password="pw")
    r = validate(good)
    assert r.returncode == 0, "valid config refused: %s" % r.stderr
    for key, value, want in CHECK_CASES:
        conf = source("/nonexistent/in.ndjson") + sink(NoServer, **{key: value})
        refused_before_running(conf, key, want,
                               secret=value if key == "password" else None)
    # Several at once: every one at its key.
    many = [CHECK_CASES[i] for i in (3, 4, 6, 8, 11, 18)]
    conf = source("/nonexistent/in.ndjson") + sink(NoServer, **{k: v for k, v, _ in many})
    with tempfile.TemporaryDirectory(prefix="spoke-cass-") as tmp:
        spoketest.expect_checks_refuse(tmp, conf, [("cass", k, w) for k, _, w in many],
                                       reason_first=True)
    sp, api = rest_spoke()
    with sp:
        resttest.expect_refused_all(api, "cassandra_sink", "cass", {
            "connector.class": "cassandra_sink", "topics": "rows", "table": "t",
            **{k: v for k, v, _ in many}}, [(k, w) for k, _, w in many])


def test_config_rules_refused_over_rest():
    """The REST API runs the same check: POST /connectors and PUT config
    answer 400 with the reason and create or change nothing; config/validate
    counts the error on the key. The password never shows."""
    secret = "pw-Rq8-secret"
    sp, api = rest_spoke()
    with sp:
        base = {"connector.class": "cassandra_sink", "topics": "rows", "keyspace": "ks",
                "table": "t", "contact.points": "127.0.0.1:9"}
        for key, value, want in CHECK_CASES:
            bad = dict(base, **{key: value})
            r = expect(api.call("POST", "/connectors", body={"name": "cass", "config": bad}), 400)
            assert want in r.json["message"], (key, r.json)
            r = expect(api.call("PUT", "/connectors/cass/config", body=bad), 400)
            assert want in r.json["message"], (key, r.json)
            assert api.get("/connectors").json == [], key
            r = expect(api.call("PUT", "/connector-plugins/cassandra_sink/config/validate",
                                body=bad), 200)
            errs = {c["value"]["name"]: c["value"]["errors"]
                    for c in r.json["configs"] if c["value"]["errors"]}
            assert r.json["error_count"] == 1 and list(errs) == [key], (key, r.json)
            assert want in errs[key][0], (key, errs)
            if key == "password":
                assert value not in r.raw.decode(), r.raw
        r = expect(api.call("PUT", "/connector-plugins/cassandra_sink/config/validate",
                            body=dict(base, username="spoke", password=secret)), 200)
        assert r.json["error_count"] == 0, r.json
        r = expect(api.call("POST", "/connectors", body={"name": "cass", "config": dict(
            base, password=secret)}), 400)
        assert "password is set but username is not" in r.json["message"], r.json
        assert secret not in r.raw.decode(), r.raw
    assert secret not in sp.log()


def test_100k_rows_exact():
    with CqlServer() as cs, tempfile.TemporaryDirectory(prefix="spoke-cass-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_lines(src, (reading(i) for i in range(N)))
        conf = "connectors:\n" + source(src) + sink(
            cs, **{"create.table": MAIN_TABLE, "mapping": MAIN_MAPPING, "ttl": 3600,
                   "batch.max": 4096})
        t0 = time.monotonic()
        with Spoke(conf, tmp=tmp) as sp:
            wait_for(lambda: rows_written(sp) >= N, TIMEOUT, "%d rows written" % N)
            elapsed = time.monotonic() - t0
            assert rows_written(sp) == N
            assert (metric(sp, "cass", "rejected") or 0) == 0
            assert sp.connector("cass")["state"] == "RUNNING"
            assert metric(sp, "cass", "connected") == 1
        dump = cs.dump("ks.t")
        cols, rows = dump["columns"], dump["rows"]
        assert len(rows) == N, "the table holds %d rows, expected %d" % (len(rows), N)
        by_id = {r[cols.index("id")]: (r, t) for r, t in zip(rows, dump["ttl"])}
        assert len(by_id) == N
        uuids = set()
        for i in range(N):
            row, ttl = by_id["r%06d" % i]
            check_main_row(row, cols, i)
            uuids.add(row[cols.index("u")])
            # every regular column carries the TTL (a little less now)
            t = ttl[cols.index("seq")]
            assert t is not None and 3300 <= t <= 3600, ttl
        assert len(uuids) == N, "now() produced duplicates"
        st = cs.ctl("stats")
        assert st["batch_statements"] == N, st   # every row once: no retries, no splits
        assert st["batches"] >= N // 32, st      # batched (default batch.size 32)
        assert st["executes"] == 0, st
        assert st["max_inflight"] > 1, "requests were not pipelined: %s" % st
        sys.stderr.write("100k rows in %.1fs (%s)\n" % (elapsed, st))

        # An independent client: the DataStax driver reads some rows back.
        from cassandra.cluster import Cluster
        cluster = Cluster(["127.0.0.1"], port=cs.port, protocol_version=4)
        try:
            session = cluster.connect()
            for i in (0, 1, 12345, 54321, N - 1):
                r = session.execute("SELECT id, seq, big, temp, ok, at, day, price, zone, u, "
                                    "TTL(seq) AS t FROM ks.t WHERE id = %s", ("r%06d" % i,)).one()
                rec = reading(i)
                assert r is not None, i
                assert (r.id, r.seq, r.big, r.temp, r.ok) == (rec["id"], i, rec["big"], rec["temp"],
                                                               rec["ok"]), r
                assert int(r.at.replace(tzinfo=__import__("datetime").timezone.utc).timestamp() * 1000) \
                    == iso_ms(rec["at"]), r.at
                assert str(r.day) == rec["day"] and str(r.price) == rec["price"], r
                assert r.zone == rec["meta"]["zone"], r
                assert r.u.version == 1 and 3300 <= r.t <= 3600, r
        finally:
            cluster.shutdown()


def test_auth_success_and_failure():
    secret = "pw-Xq7-secret"
    with CqlServer(auth="spoke:" + secret) as cs, tempfile.TemporaryDirectory(prefix="spoke-cass-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_lines(src, ({"id": "a%d" % i, "v": i} for i in range(500)))
        table = "id text PRIMARY KEY, v int"
        conf = "connectors:\n" + source(src) + sink(
            cs, username="spoke", password=secret, **{"create.table": table})
        with Spoke(conf, tmp=tmp) as sp:
            wait_for(lambda: rows_written(sp) == 500, TIMEOUT, "rows written with credentials")
            assert "authenticated with org.apache.cassandra.auth.PasswordAuthenticator" in sp.log()
        assert cs.count("ks.t") == 500
        status = open(os.path.join(sp.state_dir, "status.json")).read()
        assert secret not in sp.log() and secret not in status

    for user, pw, want in (("spoke", "wrong-" + secret, "authentication as 'spoke' failed"),
                           (None, None, "requires authentication")):
        with CqlServer(auth="spoke:" + secret) as cs, \
                tempfile.TemporaryDirectory(prefix="spoke-cass-") as tmp:
            src = os.path.join(tmp, "in.ndjson")
            write_lines(src, ({"id": "a%d" % i, "v": i} for i in range(10)))
            conf = "connectors:\n" + source(src) + sink(
                cs, username=user, password=pw, mapping="id=value.id, v=value.v")
            with Spoke(conf, tmp=tmp) as sp:
                st = sp.wait_state("cass", "FAILED")
                trace = st.get("trace") or ""
                assert want in trace, trace
                if user:
                    assert "Bad_credentials" in trace or "0x0100" in trace, trace
                    assert pw not in sp.log() and pw not in trace
            assert cs.ctl("stats")["writes"] == 0


def test_bad_create_table_fails_with_server_message():
    with CqlServer() as cs, tempfile.TemporaryDirectory(prefix="spoke-cass-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_lines(src, [{"id": "a"}])
        conf = "connectors:\n" + source(src) + sink(
            cs, **{"create.table": "id text PRIMARY KEY,, v int", "mapping": "id=value.id"})
        with Spoke(conf, tmp=tmp) as sp:
            st = sp.wait_state("cass", "FAILED")
            trace = st.get("trace") or ""
            assert "create.table: server error 0x2000 (Syntax_error)" in trace, trace
        # a table that does not exist, and no create.table
        conf = "connectors:\n" + source(src) + sink(cs, table="nope", mapping="id=value.id")
        with Spoke(conf, tmp=tmp) as sp:
            st = sp.wait_state("cass", "FAILED")
            trace = st.get("trace") or ""
            assert "0x2200 (Invalid)" in trace and "nope" in trace, trace
        # a counter table (cqlserver refuses it at CREATE TABLE already; the
        # sink's own refusal of a counter column is tested in unit-cql_sink)
        conf = "connectors:\n" + source(src) + sink(
            cs, table="hits", **{"create.table": "id text PRIMARY KEY, n counter",
                                 "mapping": "id=value.id, n=value.n"})
        with Spoke(conf, tmp=tmp) as sp:
            st = sp.wait_state("cass", "FAILED")
            trace = (st.get("trace") or "").lower()
            assert "counter" in trace, trace
        # a bad mapping is refused before it runs, naming the problem
        conf = source(src) + sink(cs, mapping="id=valu.id")
        refused_before_running(conf, "mapping", "mapping: 'valu.id' is not a source")


def test_invalid_rows_dead_lettered_with_server_message():
    n = 5000
    bad_missing = {17, 400, 401, 2999, 4998}      # no id: the server refuses the row
    bad_convert = {55, 3000}                       # 12.5 into an int column: refused in put()
    with CqlServer() as cs, tempfile.TemporaryDirectory(prefix="spoke-cass-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        recs = []
        for i in range(n):
            r = {"id": "k%d" % i, "seq": i, "temp": i % 50}
            if i in bad_missing:
                del r["id"]
            if i in bad_convert:
                r["temp"] = 12.5
            recs.append(r)
        write_lines(src, recs)
        conf = ("connectors:\n" + source(src) + sink(
            cs, **{"create.table": "id text PRIMARY KEY, seq int, temp int",
                   "mapping": "id=value.id, seq=value.seq, temp=value.temp",
                   "errors.tolerance": "all", "errors.deadletterqueue.topic.name": "dead"})
            + sink(cs, name="dlq", topics="dead", table="dead",
                   **{"create.table": "seq int PRIMARY KEY, err text, stage text",
                      "mapping": "seq=value.seq, err=header.__connect.errors.exception.message, "
                                 "stage=header.__connect.errors.stage"}))
        with Spoke(conf, tmp=tmp) as sp:
            bad = bad_missing | bad_convert
            wait_for(lambda: rows_written(sp) == n - len(bad), TIMEOUT, "good rows written")
            wait_for(lambda: rows_written(sp, "dlq") == len(bad), TIMEOUT, "dead letters written")
            assert metric(sp, "cass", "rejected") == len(bad_missing)
            assert (metric(sp, "cass", "batch_splits") or 0) >= 1
            assert sp.connector("cass")["state"] == "RUNNING"
            assert sp.connector("cass")["metrics"]["dead_lettered"] == len(bad)
        d = cs.dump("ks.t")
        got = sorted(r[d["columns"].index("seq")] for r in d["rows"])
        assert got == [i for i in range(n) if i not in bad], "good rows differ"
        d = cs.dump("ks.dead")
        dead = {r[d["columns"].index("seq")]: r[d["columns"].index("err")] for r in d["rows"]}
        assert set(dead) == bad, dead
        for i in bad_missing:
            assert dead[i].startswith("server error 0x2200 (Invalid): "), dead[i]
            assert "id" in dead[i], dead[i]
        for i in bad_convert:
            assert dead[i] == "column 'temp' is int: value 12.5 is not an integer", dead[i]


def test_transient_errors_retried():
    n = 20000
    with CqlServer() as cs, tempfile.TemporaryDirectory(prefix="spoke-cass-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_lines(src, ({"id": "k%d" % i, "v": i} for i in range(n)))
        for kind, count in (("unavailable", 3), ("write_timeout", 3), ("overloaded", 2),
                            ("server_error", 2), ("read_timeout", 1), ("truncate_error", 1)):
            cs.ctl("fail %s %d" % (kind, count))
        conf = "connectors:\n" + source(src) + sink(
            cs, **{"create.table": "id text PRIMARY KEY, v int", "mapping": "id=value.id, v=value.v",
                   "retries": 20, "reconnect.backoff.ms": 5})
        with Spoke(conf, tmp=tmp) as sp:
            wait_for(lambda: rows_written(sp) == n, TIMEOUT, "every row written")
            assert metric(sp, "cass", "retries") >= 12, metric(sp, "cass", "retries")
            assert sp.connector("cass")["state"] == "RUNNING"
            assert (metric(sp, "cass", "rejected") or 0) == 0
        d = cs.dump("ks.t")
        assert sorted(r[1] for r in d["rows"]) == list(range(n))
        assert cs.ctl("stats")["errors"] >= 12


def test_retries_exhausted_show_retrying_then_recover():
    n = 2000
    with CqlServer() as cs, tempfile.TemporaryDirectory(prefix="spoke-cass-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_lines(src, ({"id": "k%d" % i, "v": i} for i in range(n)))
        cs.ctl("fail write_timeout 1000000000")   # until cleared below
        conf = "connectors:\n" + source(src) + sink(
            cs, **{"create.table": "id text PRIMARY KEY, v int", "mapping": "id=value.id, v=value.v",
                   "retries": 1, "reconnect.backoff.ms": 1, "errors.retry.delay.max.ms": 200})
        with Spoke(conf, tmp=tmp) as sp:
            st = wait_for(lambda: (lambda c: c if c.get("retrying") else None)(sp.connector("cass")),
                          TIMEOUT, "status retrying")
            trace = st.get("trace") or ""
            assert "retrying flush" in trace and "Write_timeout" in trace and "after 1 retries" in trace, trace
            wait_for(lambda: (metric(sp, "cass", "retries") or 0) >= 10, TIMEOUT, "more retries")
            assert rows_written(sp) < n and sp.connector("cass")["state"] == "RUNNING"
            cs.ctl("fail write_timeout 0")          # the cluster is healthy again
            wait_for(lambda: rows_written(sp) == n, TIMEOUT, "every row written after the errors")
            wait_for(lambda: not sp.connector("cass").get("retrying"), 30, "recovered")
        assert cs.count("ks.t") == n


def test_unprepared_is_prepared_again():
    n = 3000
    with CqlServer() as cs, tempfile.TemporaryDirectory(prefix="spoke-cass-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_lines(src, ({"id": "k%d" % i, "v": i} for i in range(n)))
        conf = "connectors:\n" + source(src) + sink(
            cs, **{"create.table": "id text PRIMARY KEY, v int", "mapping": "id=value.id, v=value.v"})
        with Spoke(conf, tmp=tmp) as sp:
            wait_for(lambda: rows_written(sp) == n, TIMEOUT, "first part written")
            prepares = cs.ctl("stats")["prepares"]
            cs.ctl("forget-prepared")
            write_lines(src, ({"id": "k%d" % i, "v": i} for i in range(n, 2 * n)), mode="a")
            wait_for(lambda: rows_written(sp) == 2 * n, TIMEOUT, "second part written")
            assert metric(sp, "cass", "reprepares") >= 1
            assert cs.ctl("stats")["prepares"] > prepares
            assert "preparing it again" in sp.log()
        assert cs.count("ks.t") == 2 * n


def test_server_down_20s_nothing_lost():
    part = 10000
    with CqlServer() as cs, tempfile.TemporaryDirectory(prefix="spoke-cass-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_lines(src, ({"id": "k%d" % i, "v": i} for i in range(part)))
        conf = "connectors:\n" + source(src) + sink(
            cs, **{"create.table": "id text PRIMARY KEY, v int", "mapping": "id=value.id, v=value.v",
                   "errors.retry.delay.max.ms": 1000, "connect.timeout.ms": 1000})
        with Spoke(conf, tmp=tmp) as sp:
            wait_for(lambda: rows_written(sp) == part, TIMEOUT, "first part written")
            cs.ctl("down")
            write_lines(src, ({"id": "k%d" % i, "v": i} for i in range(part, 3 * part)), mode="a")
            st = wait_for(lambda: (lambda c: c if c.get("retrying") else None)(sp.connector("cass")),
                          60, "status retrying while the server is down")
            assert "cannot connect to any contact point: 127.0.0.1:%d" % cs.port in st["trace"] \
                or "connection to 127.0.0.1:%d lost" % cs.port in st["trace"], st["trace"]
            # Down for 20 s: the connector stays RUNNING and retrying, rows wait.
            down_until = time.monotonic() + 20
            seen_cannot_connect = False
            while time.monotonic() < down_until:
                c = sp.connector("cass")
                assert c.get("state") == "RUNNING" and c.get("retrying"), c
                seen_cannot_connect |= "cannot connect to any contact point" in (c.get("trace") or "")
                assert sp.alive()
                time.sleep(0.2)
            assert seen_cannot_connect
            assert rows_written(sp) < 3 * part
            cs.ctl("up")
            wait_for(lambda: rows_written(sp) == 3 * part, TIMEOUT, "every row after up")
            wait_for(lambda: not sp.connector("cass").get("retrying"), 30, "recovered")
        d = cs.dump("ks.t")
        assert sorted(r[d["columns"].index("v")] for r in d["rows"]) == list(range(3 * part))


def test_kill9_restart_same_table():
    n = 100000
    with CqlServer() as cs, tempfile.TemporaryDirectory(prefix="spoke-cass-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_lines(src, (reading(i) for i in range(n)))
        # small requests, few in flight: slow enough to be killed mid-run
        mapping = MAIN_MAPPING.replace(", u=now()", "")
        conf = "connectors:\n" + source(src) + sink(
            cs, **{"create.table": MAIN_TABLE, "mapping": mapping,
                   "batch.size": 4, "max.inflight": 2})
        sp = Spoke(conf, tmp=tmp)
        try:
            wait_for(lambda: rows_written(sp) >= n // 10, TIMEOUT, "a tenth written")
            sp.kill()
            before = cs.count("ks.t")
            assert 0 < before < n, "not killed mid-run (%d rows)" % before
            sp.write_config("connectors:\n" + source(src) + sink(
                cs, **{"create.table": MAIN_TABLE, "mapping": mapping}))
            sp.start()
            wait_for(lambda: cs.ctl("stats")["batch_statements"] >= n, TIMEOUT, "the rest written")
            wait_for(lambda: sp.offsets().get("replay"), 30, "offsets committed")
            assert sp.stop() == 0
        finally:
            if sp.alive():
                sp.kill()
        d = cs.dump("ks.t")
        cols = d["columns"]
        assert len(d["rows"]) == n, len(d["rows"])
        for row in d["rows"]:
            i = row[cols.index("seq")]
            assert row[cols.index("u")] is None
            check_main_row(row[:cols.index("u")] + row[cols.index("u") + 1:],
                           [c for c in cols if c != "u"], i)


def test_no_mapping_fields_are_columns():
    with CqlServer() as cs, tempfile.TemporaryDirectory(prefix="spoke-cass-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        recs = [{"stationCode": "1%03d" % i, "bikes": i, "name": "s%d" % i} for i in range(300)]
        recs.append({"stationCode": "x", "bikes": 1, "color": "red"})   # no such column
        recs.append({"stationCode": "y", "bikes": "many"})              # not an int
        recs += [{"bikes": i, "stationCode": "2%03d" % i} for i in range(100)]  # other order
        write_lines(src, recs)
        conf = "connectors:\n" + source(src) + sink(
            cs, **{"create.table": "stationcode text PRIMARY KEY, bikes int, name text",
                   "errors.tolerance": "all"})
        with Spoke(conf, tmp=tmp) as sp:
            wait_for(lambda: rows_written(sp) == 400, TIMEOUT, "400 rows written")
            wait_for(lambda: sp.connector("cass")["metrics"]["errors"] == 2, 30, "2 errors")
            log = sp.log()
            assert "Undefined column name color" in log, log[-3000:]
            assert "column 'bikes' is int: value \"many\" is not an integer" in log, log[-3000:]
        d = cs.dump("ks.t")
        assert len(d["rows"]) == 400
        row = dict(zip(d["columns"], next(r for r in d["rows"] if r[0] == "1007")))
        assert row == {"stationcode": "1007", "bikes": 7, "name": "s7"}, row


def test_failover_to_second_contact_point():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with CqlServer() as cs, tempfile.TemporaryDirectory(prefix="spoke-cass-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_lines(src, ({"id": "k%d" % i} for i in range(100)))
        conf = "connectors:\n" + source(src) + sink(
            cs, **{"contact.points": "127.0.0.1:%d, 127.0.0.1:%d" % (dead, cs.port),
                   "create.table": "id text PRIMARY KEY", "mapping": "id=value.id"})
        with Spoke(conf, tmp=tmp) as sp:
            wait_for(lambda: rows_written(sp) == 100, TIMEOUT, "rows written via the second node")
            assert "connected to 127.0.0.1:%d" % cs.port in sp.log()
        assert cs.count("ks.t") == 100


# ---------------------------------------------------------------------------
# Compression

def test_compression_lz4():
    """compression: lz4 against a server that offers it: every row is
    stored, the server decoded compressed requests and sent compressed
    answers, and the metrics show the bodies shrank; also through
    authentication. With the default (none) the same server sees plain
    frames only. A server that does not offer lz4 fails the connector saying
    so, before any row is sent."""
    with tempfile.TemporaryDirectory(prefix="spoke-cass-lz4-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_lines(src, ({"id": "station-%05d" % i, "name": "Rue de la Convention %d" % (i % 97),
                           "bikes": i % 31} for i in range(3000)))
        table = "id text PRIMARY KEY, name text, bikes int"
        with CqlServer() as cs:
            for comp in ("lz4", "none"):
                cs.ctl("reset")
                with tempfile.TemporaryDirectory(prefix="spoke-cass-lz4-") as t2:
                    conf = "connectors:\n" + source(src) + sink(
                        cs, **{"create.table": table, "compression": comp})
                    with Spoke(conf, tmp=t2) as sp:
                        wait_for(lambda: rows_written(sp) == 3000, TIMEOUT,
                                 "rows written (compression %s)" % comp)
                        raw = metric(sp, "cass", "request_bytes") or 0
                        wire = metric(sp, "cass", "request_bytes_sent") or 0
                assert cs.count("ks.t") == 3000, comp
                rows = cs.dump("ks.t")["rows"]
                assert sorted(r[0] for r in rows)[0] == "station-00000", rows[:2]
                st = cs.ctl("stats")
                if comp == "lz4":
                    assert st["compressed_in"] > 0 and st["compressed_out"] > 0, st
                    assert raw > 0 and wire < raw / 2, (raw, wire)
                else:
                    assert st["compressed_in"] == 0 and st["compressed_out"] == 0, st
                    assert raw == 0 and wire == 0, (raw, wire)
        # Authentication after an lz4 STARTUP: AUTH_RESPONSE goes compressed.
        with CqlServer(auth="spoke:pw-lz4") as cs:
            with tempfile.TemporaryDirectory(prefix="spoke-cass-lz4-") as t2:
                conf = "connectors:\n" + source(src) + sink(cs, username="spoke", password="pw-lz4",
                                                            **{"create.table": table,
                                                               "compression": "lz4"})
                with Spoke(conf, tmp=t2) as sp:
                    wait_for(lambda: rows_written(sp) == 3000, TIMEOUT,
                             "rows written with credentials and lz4")
            assert cs.count("ks.t") == 3000 and cs.ctl("stats")["compressed_in"] > 0
        with CqlServer(compression="none") as cs:
            conf = "connectors:\n" + source(src) + sink(
                cs, **{"create.table": table, "compression": "lz4"})
            with Spoke(conf, tmp=tmp) as sp:
                trace = sp.wait_state("cass", "FAILED").get("trace") or ""
                want = "compression lz4: 127.0.0.1:%d does not support it (COMPRESSION: none)"
                assert want % cs.port in trace, trace
            assert cs.ctl("stats")["writes"] == 0


# ---------------------------------------------------------------------------
# TLS

def test_tls_rows_written_and_the_server_verified():
    """ssl.enabled: the rows go over TLS (the server takes nothing else) to
    a server whose certificate chains to ssl.ca.pem, given as a YAML block
    scalar; a certificate from another CA, or one that does not name the
    contact point, fails the connector with GnuTLS's reason instead of
    sending anything; ssl.verify: false encrypts without checking, and says
    so in the log."""
    with tempfile.TemporaryDirectory(prefix="spoke-cass-tls-") as tmp:
        certs = spoketest.make_certs(tmp)
        with CqlServer(tls=certs["server"]) as cs:
            src = os.path.join(tmp, "in.ndjson")
            write_lines(src, ({"id": "a%d" % i, "v": i} for i in range(2000)))
            table = "id text PRIMARY KEY, v int"
            ca_block = "".join("      %s\n" % line
                               for line in spoketest.pem(certs["ca"][0]).splitlines())
            conf = ("connectors:\n" + source(src) +
                    sink(cs, **{"create.table": table, "ssl.enabled": True}) +
                    "    ssl.ca.pem: |\n" + ca_block)
            with Spoke(conf, tmp=tmp) as sp:
                wait_for(lambda: rows_written(sp) == 2000, TIMEOUT, "rows written over TLS")
            assert cs.count("ks.t") == 2000
            seen = cs.ctl("stats")["tls"]
            assert seen and all(t["version"] in ("TLSv1.2", "TLSv1.3") for t in seen), seen
            assert all(t["client"] is None for t in seen), seen

            # Refused certificates: the connector fails with the reason.
            before = cs.ctl("stats")["writes"]
            for name, keys, want in (
                    ("another CA", {"ssl.ca.pem": spoketest.pem(certs["other"][0])},
                     "TLS: the server's certificate is refused for 127.0.0.1"),
                    ("another name", {"ssl.ca.pem": spoketest.pem(certs["ca"][0]),
                                      "contact.points": "localhost:%d" % cs.port},
                     "TLS: the server's certificate is refused for localhost")):
                with tempfile.TemporaryDirectory(prefix="spoke-cass-tls-") as t2:
                    conf = "connectors:\n" + source(src) + sink(
                        cs, mapping="id=value.id, v=value.v", **dict({"ssl.enabled": True}, **keys))
                    with Spoke(conf, tmp=t2) as sp:
                        trace = sp.wait_state("cass", "FAILED").get("trace") or ""
                        assert want in trace, (name, trace)
                        assert "NOT trusted" in trace or "does not match" in trace, (name, trace)
            assert cs.ctl("stats")["writes"] == before, "rows were sent to an unverified server"

            # ssl.verify false: encrypted, not verified, and the log says so.
            cs.ctl("reset")
            with tempfile.TemporaryDirectory(prefix="spoke-cass-tls-") as t2:
                conf = "connectors:\n" + source(src) + sink(cs, **{
                    "create.table": table, "ssl.enabled": True, "ssl.verify": False,
                    "ssl.ca.pem": spoketest.pem(certs["other"][0])})
                with Spoke(conf, tmp=t2) as sp:
                    wait_for(lambda: rows_written(sp) == 2000, TIMEOUT, "rows written unverified")
                    assert "ssl.verify is false" in sp.log()
            assert cs.count("ks.t") == 2000

            # Without ssl.enabled nothing gets through (the server speaks TLS only).
            with tempfile.TemporaryDirectory(prefix="spoke-cass-tls-") as t2:
                conf = "connectors:\n" + source(src) + sink(cs, mapping="id=value.id, v=value.v")
                with Spoke(conf, tmp=t2) as sp:
                    sp.wait_for(lambda: sp.connector("cass").get("retrying"), TIMEOUT,
                                "a plain client retrying")


def test_tls_client_certificate():
    """A server that requires client certificates (require_client_auth):
    without ssl.certificate.pem the connector fails saying so; with it and
    ssl.key.pem the rows go through and the server saw the client's name.
    The key is masked everywhere (status, REST config, log)."""
    with tempfile.TemporaryDirectory(prefix="spoke-cass-tls-") as tmp:
        certs = spoketest.make_certs(tmp)
        key = spoketest.pem(certs["client"][1])
        with CqlServer(tls=certs["server"], client_ca=certs["ca"][0]) as cs:
            src = os.path.join(tmp, "in.ndjson")
            write_lines(src, ({"id": "a%d" % i, "v": i} for i in range(300)))
            tls = {"ssl.enabled": True, "ssl.ca.pem": spoketest.pem(certs["ca"][0])}
            with tempfile.TemporaryDirectory(prefix="spoke-cass-tls-") as t2:
                conf = "connectors:\n" + source(src) + sink(
                    cs, mapping="id=value.id, v=value.v", **tls)
                with Spoke(conf, tmp=t2) as sp:
                    trace = sp.wait_state("cass", "FAILED").get("trace") or ""
                    assert "TLS" in trace and ("client certificate" in trace or
                                               "alert" in trace), trace
            assert cs.ctl("stats")["writes"] == 0
            conf = "connectors:\n" + source(src) + sink(cs, **dict(
                tls, **{"create.table": "id text PRIMARY KEY, v int",
                        "ssl.certificate.pem": spoketest.pem(certs["client"][0]), "ssl.key.pem": key}))
            with Spoke(conf, tmp=tmp) as sp:
                wait_for(lambda: rows_written(sp) == 300, TIMEOUT, "rows written with a client "
                         "certificate")
                r = expect(resttest.Api(sp).call("GET", "/connectors/cass/config"), 200)
                assert r.json["ssl.key.pem"] != key and "PRIVATE KEY" not in r.raw.decode(), \
                    r.json["ssl.key.pem"]
                status = open(os.path.join(sp.state_dir, "status.json")).read()
                assert "PRIVATE KEY" not in sp.log() and "PRIVATE KEY" not in status
            assert cs.count("ks.t") == 300
            assert any(t["client"] == "spoke-client" for t in cs.ctl("stats")["tls"])


def test_tls_encrypted_client_key():
    """ssl.key.pem encrypted, as PKCS#8 and in OpenSSL's traditional form,
    with ssl.key.password: the rows go to a server that requires a client
    certificate, and the password shows nowhere (REST config, status,
    log)."""
    with tempfile.TemporaryDirectory(prefix="spoke-cass-tls-") as tmp:
        certs = spoketest.make_certs(tmp)
        with CqlServer(tls=certs["server"], client_ca=certs["ca"][0]) as cs:
            src = os.path.join(tmp, "in.ndjson")
            write_lines(src, ({"id": "a%d" % i, "v": i} for i in range(200)))
            for form in ("client_pkcs8", "client_trad"):
                cs.ctl("reset")
                with tempfile.TemporaryDirectory(prefix="spoke-cass-tls-") as t2:
                    conf = "connectors:\n" + source(src) + sink(cs, **{
                        "create.table": "id text PRIMARY KEY, v int", "ssl.enabled": True,
                        "ssl.ca.pem": spoketest.pem(certs["ca"][0]),
                        "ssl.certificate.pem": spoketest.pem(certs[form][0]),
                        "ssl.key.pem": spoketest.pem(certs[form][1]),
                        "ssl.key.password": spoketest.CERT_PASSWORD})
                    with Spoke(conf, tmp=t2) as sp:
                        wait_for(lambda: rows_written(sp) == 200, TIMEOUT,
                                 "rows written with an encrypted key (%s)" % form)
                        r = expect(resttest.Api(sp).call("GET", "/connectors/cass/config"), 200)
                        assert spoketest.CERT_PASSWORD not in r.raw.decode(), form
                        status = open(os.path.join(sp.state_dir, "status.json")).read()
                        assert spoketest.CERT_PASSWORD not in sp.log() + status, form
                assert cs.count("ks.t") == 200, form
                assert any(t["client"] == "spoke-client" for t in cs.ctl("stats")["tls"]), form


def test_tls_revocation_list():
    """ssl.crl.pem: with the CA's list revoking the server's certificate
    the connector fails saying so and sends nothing; with a list of the
    same CA that revokes nothing the rows go through."""
    with tempfile.TemporaryDirectory(prefix="spoke-cass-tls-") as tmp:
        certs = spoketest.make_certs(tmp)
        with CqlServer(tls=certs["server"]) as cs:
            src = os.path.join(tmp, "in.ndjson")
            write_lines(src, ({"id": "a%d" % i, "v": i} for i in range(100)))
            tls = {"create.table": "id text PRIMARY KEY, v int", "ssl.enabled": True,
                   "ssl.ca.pem": spoketest.pem(certs["ca"][0])}
            with tempfile.TemporaryDirectory(prefix="spoke-cass-tls-") as t2:
                conf = "connectors:\n" + source(src) + sink(cs, **dict(
                    tls, **{"ssl.crl.pem": spoketest.pem(certs["crl_server"][0])}))
                with Spoke(conf, tmp=t2) as sp:
                    trace = sp.wait_state("cass", "FAILED").get("trace") or ""
                    assert "TLS: the server's certificate is refused for 127.0.0.1" in trace, trace
                    assert "revoked" in trace, trace
            assert cs.ctl("stats")["writes"] == 0
            with tempfile.TemporaryDirectory(prefix="spoke-cass-tls-") as t2:
                conf = "connectors:\n" + source(src) + sink(cs, **dict(
                    tls, **{"ssl.crl.pem": spoketest.pem(certs["crl_none"][0])}))
                with Spoke(conf, tmp=t2) as sp:
                    wait_for(lambda: rows_written(sp) == 100, TIMEOUT,
                             "rows written with a list that revokes nothing")
            assert cs.count("ks.t") == 100


def test_tls_with_lz4():
    """TLS and lz4 together: 20,000 rows of long text go compressed inside
    the TLS session (the compressed frames rewritten in the send buffer
    before GnuTLS takes them, however the socket splits them), and every
    row arrives with its value intact."""
    with tempfile.TemporaryDirectory(prefix="spoke-cass-tls-") as tmp:
        certs = spoketest.make_certs(tmp)
        with CqlServer(tls=certs["server"]) as cs:
            src = os.path.join(tmp, "in.ndjson")
            write_lines(src, ({"id": "r%05d" % i, "note": ("bikes %d at station %d; " % (i % 7, i))
                               * 20} for i in range(20000)))
            conf = "connectors:\n" + source(src) + sink(cs, **{
                "create.table": "id text PRIMARY KEY, note text", "ssl.enabled": True,
                "ssl.ca.pem": spoketest.pem(certs["ca"][0]), "compression": "lz4"})
            with Spoke(conf, tmp=tmp) as sp:
                wait_for(lambda: rows_written(sp) == 20000, TIMEOUT, "rows over TLS with lz4")
                raw = metric(sp, "cass", "request_bytes") or 0
                wire = metric(sp, "cass", "request_bytes_sent") or 0
            rows = cs.dump("ks.t")["rows"]
            assert len(rows) == 20000
            for r in rows:
                i = int(r[0][1:])
                assert r[1] == ("bikes %d at station %d; " % (i % 7, i)) * 20, r
            st = cs.ctl("stats")
            assert st["compressed_in"] > 0 and st["tls"], st
            assert wire < raw / 4, (raw, wire)


def test_tls_keys_checked_before_running():
    """The TLS keys' rules are the plugin's check: ssl.* without
    ssl.enabled, a certificate without its key, PEM text that does not
    parse, a key that is not the certificate's, a revocation list from
    another CA or without ssl.ca.pem, a key password that is wrong, missing
    or without an encrypted key; each at its key, together."""
    with tempfile.TemporaryDirectory(prefix="spoke-cass-tls-") as tmp:
        certs = spoketest.make_certs(tmp)
        base = source("/nonexistent/in.ndjson")
        for keys, want in (
                ({"ssl.ca.pem": spoketest.pem(certs["ca"][0])},
                 [("ssl.ca.pem", "ssl.ca.pem is used only with ssl.enabled: true")]),
                ({"ssl.enabled": True, "ssl.certificate.pem": spoketest.pem(certs["client"][0])},
                 [("ssl.certificate.pem", "ssl.certificate.pem is set but ssl.key.pem is not")]),
                ({"ssl.enabled": True, "ssl.ca.pem": "not a certificate",
                  "ssl.certificate.pem": spoketest.pem(certs["client"][0]),
                  "ssl.key.pem": spoketest.pem(certs["server"][1])},
                 [("ssl.ca.pem", "ssl.ca.pem: "),
                  ("ssl.key.pem", "ssl.key.pem: the key does not belong to "
                                  "ssl.certificate.pem")]),
                ({"ssl.enabled": True, "ssl.certificate.pem": "-----BEGIN CERTIFICATE-----\nx\n"
                  "-----END CERTIFICATE-----\n", "ssl.key.pem": spoketest.pem(certs["client"][1])},
                 [("ssl.certificate.pem", "ssl.certificate.pem: ")]),
                ({"ssl.enabled": True, "ssl.ca.pem": spoketest.pem(certs["ca"][0]),
                  "ssl.crl.pem": spoketest.pem(certs["crl_other"][0]),
                  "ssl.certificate.pem": spoketest.pem(certs["client"][0]),
                  "ssl.key.pem": spoketest.pem(certs["client_pkcs8"][1]),
                  "ssl.key.password": "not the password"},
                 [("ssl.crl.pem", "ssl.crl.pem: list 1 (issuer CN=spoke test other) is not "
                                  "signed by a CA of ssl.ca.pem"),
                  ("ssl.key.password", "ssl.key.password does not decrypt ssl.key.pem")]),
                ({"ssl.enabled": True, "ssl.ca.pem": spoketest.pem(certs["ca"][0]),
                  "ssl.crl.pem": spoketest.pem(certs["crl_expired"][0])},
                 [("ssl.crl.pem", "ssl.crl.pem: list 1 (issuer CN=spoke test ca) expired at ")]),
                ({"ssl.enabled": True, "ssl.crl.pem": spoketest.pem(certs["crl_none"][0]),
                  "ssl.certificate.pem": spoketest.pem(certs["client"][0]),
                  "ssl.key.pem": spoketest.pem(certs["client_trad"][1])},
                 [("ssl.crl.pem", "ssl.crl.pem needs ssl.ca.pem"),
                  ("ssl.key.password", "ssl.key.password is required: ssl.key.pem is "
                                       "encrypted")]),
                ({"ssl.enabled": True, "ssl.ca.pem": spoketest.pem(certs["ca"][0]),
                  "ssl.crl.pem": "not a list", "ssl.key.password": "x"},
                 [("ssl.crl.pem", "ssl.crl.pem: no PEM revocation list"),
                  ("ssl.key.password", "ssl.key.password is set but ssl.key.pem is not")]),
                ({"ssl.enabled": True, "ssl.certificate.pem": spoketest.pem(certs["client"][0]),
                  "ssl.key.pem": spoketest.pem(certs["client"][1]), "ssl.key.password": "x"},
                 [("ssl.key.password", "ssl.key.password is set but ssl.key.pem is not "
                                       "encrypted")])):
            with tempfile.TemporaryDirectory(prefix="spoke-cass-tls-") as t2:
                _, p, r = spoketest.expect_checks_refuse(
                    t2, base + sink(NoServer, mapping="id=value.id", **keys),
                    [("cass", k, w) for k, w in want], reason_first=True)
                for out in (p.stdout, p.stderr, r.stdout, r.stderr):
                    assert "PRIVATE KEY" not in out and "MHcCAQEE" not in out, out
                    assert "not the password" not in out, out


if __name__ == "__main__":
    spoketest.main(globals())
