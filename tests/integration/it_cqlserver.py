"""it-cqlserver: the CQL v4 test server (tests/cql/cqlserver.py) checked with an
independent client, the DataStax Python driver (Debian's python3-cassandra),
plus raw-socket frames for what a driver never sends (malformed frames, bad
values). Every test starts its own server process and stops it (SIGTERM, exit
code 0). Needs no spoke build.
"""
import datetime
import decimal
import json
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from spoketest import Skip, wait_for, SOURCE_DIR  # noqa: E402

CQL_DIR = os.path.join(SOURCE_DIR, "tests", "cql")
sys.path.insert(0, CQL_DIR)
import cqlclient as C  # noqa: E402

SERVER = os.path.join(CQL_DIR, "cqlserver.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

if not os.environ.get("CQL_TEST_DEBUG"):
    logging.getLogger("cassandra").setLevel(logging.CRITICAL)


def driver():
    try:
        import cassandra  # noqa: F401
        import cassandra.cluster  # noqa: F401
    except ImportError:
        raise Skip("python3-cassandra (DataStax driver) not installed for %s" % sys.executable)
    import cassandra
    return cassandra


class CqlServer:
    """`with CqlServer('--auth', 'u:p') as srv:` — srv.port, srv.control(cmd)."""

    def __init__(self, *args):
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([PYTHON, SERVER] + list(args), stdout=subprocess.PIPE,
                                     stderr=self.err, text=True)
        r, _, _ = select.select([self.proc.stdout], [], [], 15)
        line = self.proc.stdout.readline() if r else ""
        if not line.startswith("CQLSERVER "):
            self.proc.kill()
            raise AssertionError("cqlserver did not start (%r):\n%s" % (line, self.stderr()))
        kv = dict(w.split("=") for w in line.split()[1:])
        self.port = int(kv["port"])
        self.control_port = int(kv["control"])
        self._ctl = None

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def control(self, cmd):
        if self._ctl is None:
            s = socket.create_connection(("127.0.0.1", self.control_port), timeout=30)
            self._ctl = (s, s.makefile("rb"))
        s, f = self._ctl
        s.sendall(cmd.encode() + b"\n")
        line = f.readline()
        assert line.endswith(b"\n"), "control: no reply to %r" % cmd
        return json.loads(line)

    def ok(self, cmd):
        r = self.control(cmd)
        assert r == {"ok": True}, "control %r -> %r" % (cmd, r)

    def stop(self):
        if self._ctl:
            self._ctl[1].close()
            self._ctl[0].close()
            self._ctl = None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("cqlserver did not stop on SIGTERM")
        return rc

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if self.proc.poll() is None:
            rc = self.stop()
            if et is None:
                assert rc == 0, "cqlserver exited with %s:\n%s" % (rc, self.stderr())
        if et is not None:
            sys.stderr.write("---- cqlserver stderr ----\n%s\n" % self.stderr()[-4000:])
        assert "internal error" not in self.stderr(), self.stderr()
        return False


def cluster(srv, protocol_version=4, **kw):
    driver()
    from cassandra.cluster import Cluster, ExecutionProfile, EXEC_PROFILE_DEFAULT
    from cassandra.policies import RoundRobinPolicy, FallthroughRetryPolicy, ConstantReconnectionPolicy
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), retry_policy=FallthroughRetryPolicy(),
                               request_timeout=20)
    if protocol_version is not None:
        kw["protocol_version"] = protocol_version
    return Cluster(["127.0.0.1"], port=srv.port, execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                   reconnection_policy=ConstantReconnectionPolicy(0.2, None), connect_timeout=10,
                   control_connection_timeout=10, **kw)


class Session:
    """with Session(srv) as s: — a connected driver session; shuts the cluster down."""

    def __init__(self, srv, keyspace=None, **kw):
        self.cluster = cluster(srv, **kw)
        self.s = self.cluster.connect(keyspace)

    def __enter__(self):
        return self.s

    def __exit__(self, *a):
        self.cluster.shutdown()
        return False


KS = "CREATE KEYSPACE %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"


def expect(exc_type, fn, *args, contains=None):
    try:
        fn(*args)
    except exc_type as e:
        if contains is not None:
            assert contains in str(e), "%r does not mention %r" % (str(e), contains)
        return e
    raise AssertionError("expected %s" % exc_type.__name__)


# ---------------------------------------------------------------------------------
# connecting

def test_connect_default_negotiation():
    """A plain Cluster (no protocol_version) tries DSE v2, DSE v1, v5, then v4:
    the server refuses each newer one with a Protocol error and the driver
    downgrades to v4."""
    cassandra = driver()
    with CqlServer() as srv:
        c = cluster(srv, protocol_version=None)
        try:
            s = c.connect()
            assert c.protocol_version == cassandra.ProtocolVersion.V4, c.protocol_version
            row = s.execute("SELECT release_version, cql_version, native_protocol_version FROM system.local "
                            "WHERE key = 'local'").one()
            assert row.native_protocol_version == "4", row
            assert row.cql_version == "3.4.5", row
            assert c.metadata.cluster_name == "cqlserver"
        finally:
            c.shutdown()
        st = srv.control("stats")
        assert st["errors"] >= 3, st       # one refused version per downgrade (+ peers_v2)


def test_connect_lz4():
    """The driver picks lz4 from SUPPORTED (python3-lz4 installed): its
    compressed requests decode here, and every answer it reads went back
    compressed; with --compression none it stays on plain frames."""
    driver()
    try:
        import lz4.block  # noqa: F401
    except ImportError:
        raise Skip("python3-lz4 is not installed (apt-get install python3-lz4)")
    with CqlServer() as srv:
        with Session(srv, compression="lz4") as s:
            s.execute("CREATE KEYSPACE k WITH replication = {'class': 'SimpleStrategy', "
                      "'replication_factor': 1}")
            s.execute("CREATE TABLE k.t (id text PRIMARY KEY, v text)")
            ins = s.prepare("INSERT INTO k.t (id, v) VALUES (?, ?)")
            for i in range(50):
                s.execute(ins, ("id%d" % i, "value " * 40))
            rows = list(s.execute("SELECT id, v FROM k.t"))
            assert len(rows) == 50 and all(r.v == "value " * 40 for r in rows), len(rows)
        st = srv.control("stats")
        assert st["compressed_in"] >= 50 and st["compressed_out"] >= 50, st
    with CqlServer("--compression", "none") as srv:
        with Session(srv) as s:
            assert s.execute("SELECT key FROM system.local").one().key == "local"
        st = srv.control("stats")
        assert st["compressed_in"] == 0 and st["compressed_out"] == 0, st


def test_connect_auth():
    driver()
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import NoHostAvailable
    with CqlServer("--auth", "alice:s3cret") as srv:
        with Session(srv, auth_provider=PlainTextAuthProvider("alice", "s3cret")) as s:
            assert s.execute("SELECT key FROM system.local").one().key == "local"
        c = cluster(srv, auth_provider=PlainTextAuthProvider("alice", "wrong"))
        try:
            e = expect(NoHostAvailable, c.connect)
            assert "Provided username alice and/or password are incorrect" in str(e), str(e)
            from cassandra import AuthenticationFailed
            assert any(isinstance(x, AuthenticationFailed) for x in e.errors.values()), e.errors
        finally:
            c.shutdown()
        c = cluster(srv)   # no credentials at all
        try:
            e = expect(NoHostAvailable, c.connect)
            assert "requires authentication" in str(e), str(e)
        finally:
            c.shutdown()
        # raw: the SASL exchange as the sink does it
        rc = C.RawClient("127.0.0.1", srv.port)
        op, body = rc.call(C.STARTUP, C.string_map({"CQL_VERSION": "3.0.0"}))
        assert op == C.AUTHENTICATE and b"org.apache.cassandra.auth.PasswordAuthenticator" in body
        e = expect(C.CqlServerError, rc.call, C.AUTH_RESPONSE, C.value(b"\x00alice\x00nope"))
        assert e.code == 0x0100 and e.message == "Provided username alice and/or password are incorrect", e
        e = expect(C.CqlServerError, rc.query, "SELECT * FROM system.local")
        assert e.code == 0x000A, e          # not authenticated yet
        op, _ = rc.call(C.AUTH_RESPONSE, C.value(b"\x00alice\x00s3cret"))
        assert op == C.AUTH_SUCCESS
        assert C.rows_count(rc.query("SELECT * FROM system.local")) == 1
        rc.close()


def test_connect_tls():
    """--tls-cert/--tls-key (and --tls-client-ca): the DataStax driver
    connects over TLS, verifying the server's certificate, and presents its
    own when the server requires one; the server lists what each TLS
    connection negotiated."""
    driver()
    import ssl
    from cassandra.cluster import NoHostAvailable
    from spoketest import make_certs
    with tempfile.TemporaryDirectory(prefix="cqlserver-tls-") as tmp:
        certs = make_certs(tmp)

        def context(client=None):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(certs["ca"][0])
            if client:
                ctx.load_cert_chain(*certs[client])
            return ctx

        tls = ["--tls-cert", certs["server"][0], "--tls-key", certs["server"][1]]
        with CqlServer(*tls) as srv:
            with Session(srv, ssl_context=context(),
                         ssl_options={"server_hostname": "127.0.0.1"}) as s:
                assert s.execute("SELECT key FROM system.local").one().key == "local"
            seen = srv.control("stats")["tls"]
            assert seen and all(t["client"] is None for t in seen), seen
        with CqlServer(*tls, "--tls-client-ca", certs["ca"][0]) as srv:
            with Session(srv, ssl_context=context("client"),
                         ssl_options={"server_hostname": "127.0.0.1"}) as s:
                assert s.execute("SELECT key FROM system.local").one().key == "local"
            assert any(t["client"] == "spoke-client" for t in srv.control("stats")["tls"])
            c = cluster(srv, ssl_context=context(), ssl_options={"server_hostname": "127.0.0.1"})
            try:
                expect(NoHostAvailable, c.connect)   # no client certificate
            finally:
                c.shutdown()


# ---------------------------------------------------------------------------------
# data

ALL_TYPES = [("t_text", "text"), ("t_ascii", "ascii"), ("t_int", "int"), ("t_bigint", "bigint"),
             ("t_smallint", "smallint"), ("t_tinyint", "tinyint"), ("t_double", "double"), ("t_float", "float"),
             ("t_boolean", "boolean"), ("t_timestamp", "timestamp"), ("t_uuid", "uuid"), ("t_timeuuid", "timeuuid"),
             ("t_date", "date"), ("t_time", "time"), ("t_decimal", "decimal"), ("t_varint", "varint"),
             ("t_blob", "blob"), ("t_inet", "inet"), ("t_varchar", "varchar")]


def test_types_roundtrip():
    driver()
    from cassandra.util import Date, Time
    with CqlServer() as srv, Session(srv) as s:
        s.execute(KS % "ks")
        s.execute("CREATE TABLE ks.types (k int PRIMARY KEY, %s)" % ", ".join("%s %s" % c for c in ALL_TYPES))
        u, tu = uuid.uuid4(), uuid.uuid1()
        ts = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000)
        vals = {"t_text": "h\u00e9llo w\u00f6rld \u2603", "t_ascii": "plain", "t_int": -2147483648,
                "t_bigint": 9223372036854775807, "t_smallint": -32768, "t_tinyint": 127,
                "t_double": 3.141592653589793, "t_float": 1.5, "t_boolean": True, "t_timestamp": ts,
                "t_uuid": u, "t_timeuuid": tu, "t_date": Date(datetime.date(1969, 7, 20)),
                "t_time": Time(datetime.time(23, 59, 58, 999999)), "t_decimal": decimal.Decimal("-123.4560"),
                "t_varint": 2 ** 70 + 1, "t_blob": b"\x00\xffbin", "t_inet": "2001:db8::1", "t_varchar": ""}
        cols = [c for c, _ in ALL_TYPES]
        ins = s.prepare("INSERT INTO ks.types (k, %s) VALUES (?, %s)" % (", ".join(cols), ", ".join("?" * len(cols))))
        assert ins.routing_key_indexes == [0], ins.routing_key_indexes
        s.execute(ins, [1] + [vals[c] for c in cols])
        s.execute(ins, [2] + [None] * len(cols))                       # every column null
        # a simple (unprepared) statement with CQL literals
        s.execute("INSERT INTO ks.types (k, t_text, t_int, t_bigint, t_double, t_boolean, t_uuid, t_timestamp, "
                  "t_date, t_time, t_blob, t_inet, t_decimal, t_varint, t_float) VALUES (3, 'it''s', -7, 12345678901, "
                  "-2.5e3, false, %s, '2024-05-06 07:08:09.123+0000', '2000-02-29', '01:02:03.000000004', "
                  "0xcafe, '10.1.2.3', 0.5, -170141183460469231731687303715884105728, -0.25)" % u)
        # and one with %s parameters the driver interpolates client-side
        s.execute("INSERT INTO ks.types (k, t_text, t_timeuuid) VALUES (%s, %s, %s)", (4, "param", tu))

        row = s.execute("SELECT * FROM ks.types WHERE k = 1").one()
        for c in cols:
            got, want = getattr(row, c), vals[c]
            if c == "t_inet":
                want = "2001:db8::1"
            assert got == want, "%s: %r != %r" % (c, got, want)
        assert list(s.execute("SELECT * FROM ks.types WHERE k = 2").one())[1:] == [None] * len(cols)
        r3 = s.execute("SELECT * FROM ks.types WHERE k = 3").one()
        assert (r3.t_text, r3.t_int, r3.t_bigint, r3.t_double, r3.t_boolean, r3.t_uuid) == \
            ("it's", -7, 12345678901, -2500.0, False, u), r3
        assert r3.t_timestamp == ts and r3.t_date == Date(datetime.date(2000, 2, 29)), r3
        assert r3.t_time == Time(3723000000004) and r3.t_blob == b"\xca\xfe" and r3.t_inet == "10.1.2.3", r3
        assert r3.t_decimal == decimal.Decimal("0.5") and r3.t_varint == -2 ** 127 and r3.t_float == -0.25, r3
        assert s.execute("SELECT t_text, t_timeuuid FROM ks.types WHERE k = 4").one() == ("param", tu)
        # the control backdoor's JSON forms
        d = srv.control("dump ks.types")
        assert d["columns"][0] == "k" and d["columns"][1:] == sorted(cols), d["columns"]
        assert [r[0] for r in d["rows"]] == [1, 2, 3, 4], d["rows"]
        r1 = dict(zip(d["columns"], d["rows"][0]))
        assert r1["t_uuid"] == str(u) and r1["t_timeuuid"] == str(tu)
        assert r1["t_timestamp"] == 1714979289123 and r1["t_date"] == "1969-07-20"
        assert r1["t_decimal"] == "-123.4560" and r1["t_varint"] == str(2 ** 70 + 1)
        assert r1["t_blob"] == "00ff62696e" and r1["t_inet"] == "2001:db8::1" and r1["t_text"] == vals["t_text"]
        assert r1["t_time"] == 86398999999000 and r1["t_boolean"] is True and r1["t_float"] == 1.5
        assert d["rows"][1][1:] == [None] * len(cols)
        assert d["ttl"][0] == [None] * (len(cols) + 1)


def test_batch_upsert_update_delete():
    driver()
    from cassandra.query import BatchStatement, BatchType
    with CqlServer() as srv, Session(srv) as s:
        s.execute(KS % "ks")
        s.execute("CREATE TABLE ks.ev (id bigint, seq int, body text, n double, PRIMARY KEY ((id), seq))")
        ins = s.prepare("INSERT INTO ks.ev (id, seq, body, n) VALUES (?, ?, ?, ?)")
        before = srv.control("stats")
        b = BatchStatement(batch_type=BatchType.UNLOGGED)
        for i in range(50):
            b.add(ins, (i % 5, i, "body-%d" % i, i / 2))
        s.execute(b)
        st = srv.control("stats")
        assert st["batches"] == before["batches"] + 1 and st["batch_statements"] == before["batch_statements"] + 50, st
        assert s.execute("SELECT COUNT(*) FROM ks.ev").one()[0] == 50
        rows = list(s.execute("SELECT seq, body FROM ks.ev WHERE id = 3"))
        assert [r.seq for r in rows] == [3, 8, 13, 18, 23, 28, 33, 38, 43, 48], rows    # clustering order
        # upsert: same primary key overwrites, row count unchanged
        lb = BatchStatement(batch_type=BatchType.LOGGED)
        lb.add(ins, (3, 8, "overwritten", None))
        lb.add("INSERT INTO ks.ev (id, seq, body) VALUES (%s, %s, %s)", (4, 4, "simple-in-batch"))
        s.execute(lb)
        assert s.execute("SELECT COUNT(*) FROM ks.ev").one()[0] == 50
        assert tuple(s.execute("SELECT body, n FROM ks.ev WHERE id = 3 AND seq = 8").one()) == ("overwritten", None)
        assert s.execute("SELECT body FROM ks.ev WHERE id = 4 AND seq = 4").one().body == "simple-in-batch"
        # UPDATE (upsert too), DELETE of a column, a row, a partition
        s.execute("UPDATE ks.ev SET body = 'upd' WHERE id = 9 AND seq = 1")
        assert s.execute("SELECT body, n FROM ks.ev WHERE id = 9").one() == ("upd", None)
        upd = s.prepare("UPDATE ks.ev SET n = ? WHERE id = ? AND seq = ?")
        s.execute(upd, (2.5, 9, 1))
        assert s.execute("SELECT n FROM ks.ev WHERE id = 9 AND seq = 1").one().n == 2.5
        s.execute("DELETE body FROM ks.ev WHERE id = 9 AND seq = 1")
        assert tuple(s.execute("SELECT body, n FROM ks.ev WHERE id = 9 AND seq = 1").one()) == (None, 2.5)
        s.execute("DELETE n FROM ks.ev WHERE id = 9 AND seq = 1")     # no marker, no cells: row gone
        assert s.execute("SELECT * FROM ks.ev WHERE id = 9").one() is None
        s.execute(s.prepare("DELETE FROM ks.ev WHERE id = ? AND seq = ?"), (0, 0))
        assert s.execute("SELECT COUNT(*) FROM ks.ev WHERE id = 0").one()[0] == 9
        s.execute("DELETE FROM ks.ev WHERE id = 0")
        assert s.execute("SELECT COUNT(*) FROM ks.ev").one()[0] == 40
        # write timestamps: an older write loses
        s.execute("INSERT INTO ks.ev (id, seq, body) VALUES (7, 7, 'new') USING TIMESTAMP 2000")
        s.execute("INSERT INTO ks.ev (id, seq, body) VALUES (7, 7, 'old') USING TIMESTAMP 1000")
        r = s.execute("SELECT body, WRITETIME(body) FROM ks.ev WHERE id = 7 AND seq = 7").one()
        assert tuple(r) == ("new", 2000), r
        # the sink's statement form: TTL literal, TIMESTAMP marker (prepared, in a batch and alone)
        tsi = s.prepare("INSERT INTO ks.ev (id, seq, body) VALUES (?, ?, ?) USING TTL 3600 AND TIMESTAMP ?")
        assert [c.name for c in tsi.column_metadata] == ["id", "seq", "body", "[timestamp]"]
        b = BatchStatement(batch_type=BatchType.UNLOGGED)
        b.add(tsi, (8, 1, "ts-new", 5000))
        b.add(tsi, (8, 1, "ts-old", 4000))
        s.execute(b)
        s.execute(tsi, (8, 1, "ts-older", 4500))
        r = s.execute("SELECT body, WRITETIME(body), TTL(body) FROM ks.ev WHERE id = 8 AND seq = 1").one()
        assert r[:2] == ("ts-new", 5000) and 3590 <= r[2] <= 3600, r
        # IF NOT EXISTS
        r = s.execute("INSERT INTO ks.ev (id, seq, body) VALUES (7, 7, 'x') IF NOT EXISTS").one()
        assert r[0] is False and r.body == "new", r
        assert s.execute("INSERT INTO ks.ev (id, seq, body) VALUES (7, 99, 'x') IF NOT EXISTS").one()[0] is True
        s.execute("TRUNCATE ks.ev")
        assert s.execute("SELECT COUNT(*) FROM ks.ev").one()[0] == 0


def test_ttl():
    driver()
    with CqlServer() as srv, Session(srv) as s:
        s.execute(KS % "ks")
        s.execute("CREATE TABLE ks.t (k int PRIMARY KEY, v text, w int)")
        s.execute("INSERT INTO ks.t (k, v, w) VALUES (1, 'long', 5) USING TTL 3600")
        ttl = s.execute("SELECT TTL(v), TTL(w) FROM ks.t WHERE k = 1").one()
        assert 3590 <= ttl[0] <= 3600 and ttl[0] == ttl[1], ttl
        ins = s.prepare("INSERT INTO ks.t (k, v) VALUES (?, ?) USING TTL ?")
        assert [c.name for c in ins.column_metadata] == ["k", "v", "[ttl]"], ins.column_metadata
        s.execute(ins, (2, "short", 1))
        s.execute(ins, (3, "forever", 0))
        assert s.execute("SELECT TTL(v) FROM ks.t WHERE k = 3").one()[0] is None
        d = srv.control("dump ks.t")
        assert d["columns"] == ["k", "v", "w"] and 3590 <= d["ttl"][0][1] <= 3600 and d["ttl"][2] == [None] * 3, d
        wait_for(lambda: s.execute("SELECT * FROM ks.t WHERE k = 2").one() is None, 10, "the TTL 1 row to expire")
        assert s.execute("SELECT COUNT(*) FROM ks.t").one()[0] == 2
        assert [r[0] for r in srv.control("dump ks.t")["rows"]] == [1, 3]
        # UPDATE with a TTL expires only the cells it set; the row stays while INSERTed data lives
        s.execute("UPDATE ks.t USING TTL 1 SET w = 9 WHERE k = 3")
        wait_for(lambda: s.execute("SELECT w FROM ks.t WHERE k = 3").one().w is None, 10, "the updated cell to expire")
        assert s.execute("SELECT v FROM ks.t WHERE k = 3").one().v == "forever"
        # table default_time_to_live
        s.execute("CREATE TABLE ks.d (k int PRIMARY KEY, v int) WITH default_time_to_live = 1")
        s.execute("INSERT INTO ks.d (k, v) VALUES (1, 1)")
        s.execute("INSERT INTO ks.d (k, v) VALUES (2, 2) USING TTL 0")   # explicit 0: no TTL
        wait_for(lambda: [r.k for r in s.execute("SELECT k FROM ks.d")] == [2], 10, "default TTL expiry")
        e = expect(driver().InvalidRequest, s.execute, ins, (4, "x", -1))
        assert "A TTL must be greater or equal to 0" in str(e), e


def test_paging():
    driver()
    from cassandra.query import SimpleStatement, BatchStatement, BatchType
    with CqlServer() as srv, Session(srv) as s:
        s.execute(KS % "ks")
        s.execute("CREATE TABLE ks.p (p int, c int, v text, PRIMARY KEY (p, c))")
        ins = s.prepare("INSERT INTO ks.p (p, c, v) VALUES (?, ?, ?)")
        for start in range(0, 12000, 200):
            b = BatchStatement(batch_type=BatchType.UNLOGGED)
            for i in range(start, start + 200):
                b.add(ins, (i % 3, i, "v%d" % i))
            s.execute(b)
        q0 = srv.control("stats")["queries"]
        rs = s.execute(SimpleStatement("SELECT p, c FROM ks.p", fetch_size=1000))
        assert len(rs.current_rows) == 1000 and rs.has_more_pages
        rows = list(rs)
        assert len(rows) == 12000 and len(set(rows)) == 12000, len(rows)
        assert rows == sorted(rows), "rows not in primary-key order"
        assert srv.control("stats")["queries"] - q0 == 12, srv.control("stats")   # 12 pages, no empty 13th
        # one partition, prepared, paged, in clustering order
        sel = s.prepare("SELECT c, v FROM ks.p WHERE p = ?")
        sel.fetch_size = 700
        part = list(s.execute(sel, (1,)))
        assert [r.c for r in part] == list(range(1, 12000, 3)), "partition paging"
        # LIMIT across pages, and the default fetch size (5000)
        assert len(list(s.execute(SimpleStatement("SELECT c FROM ks.p LIMIT 2500", fetch_size=1000)))) == 2500
        assert len(list(s.execute("SELECT c FROM ks.p"))) == 12000
        assert s.execute("SELECT COUNT(*) FROM ks.p").one()[0] == 12000
        # clustering-key restriction and ALLOW FILTERING
        assert s.execute("SELECT v FROM ks.p WHERE p = 2 AND c = 11").one().v == "v11"
        e = expect(driver().InvalidRequest, s.execute, "SELECT * FROM ks.p WHERE v = 'v5'")
        assert "ALLOW FILTERING" in str(e)
        assert [tuple(r) for r in s.execute("SELECT p, c FROM ks.p WHERE v = 'v5' ALLOW FILTERING")] == [(2, 5)]
        # CLUSTERING ORDER BY ... DESC, paged
        s.execute("CREATE TABLE ks.d (p text, c1 timestamp, c2 text, v int, PRIMARY KEY (p, c1, c2)) "
                  "WITH CLUSTERING ORDER BY (c1 DESC, c2 ASC) AND comment = 'desc'")
        ind = s.prepare("INSERT INTO ks.d (p, c1, c2, v) VALUES (?, ?, ?, ?)")
        base = datetime.datetime(2024, 1, 1)
        for i in range(30):
            s.execute(ind, ("a", base + datetime.timedelta(seconds=i // 3), "x%d" % (i % 3), i))
        got = [r.v for r in s.execute(SimpleStatement("SELECT v FROM ks.d WHERE p = 'a'", fetch_size=4))]
        assert got == [i * 3 + j for i in range(9, -1, -1) for j in range(3)], got
        got = [r.v for r in s.execute("SELECT v FROM ks.d WHERE p = 'a' AND c1 = %s", (base,))]
        assert got == [0, 1, 2], got
        meta = s.cluster.metadata.keyspaces["ks"].tables["d"]
        assert [c.name for c in meta.clustering_key] == ["c1", "c2"] and meta.clustering_key[0].is_reversed


def test_error_mapping():
    cassandra = driver()
    from cassandra.protocol import SyntaxException
    with CqlServer() as srv, Session(srv) as s:
        s.execute(KS % "ks")
        s.execute("CREATE TABLE ks.t (k int, c text, v int, PRIMARY KEY (k, c))")
        e = expect(SyntaxException, s.execute, "SELEKT * FROM ks.t")
        assert str(e).find("line 1:0") >= 0, str(e)
        expect(SyntaxException, s.execute, "SELECT * FROM ks.t WHERE")
        expect(cassandra.InvalidRequest, s.execute, "INSERT INTO ks.t (k, c, v) VALUES ('abc', 'x', 1)",
               contains='Invalid STRING constant (abc) for "k" of type int')
        expect(cassandra.InvalidRequest, s.execute, "SELECT * FROM ks.nope", contains="unconfigured table nope")
        expect(cassandra.InvalidRequest, s.execute, "SELECT * FROM nokeyspace.t",
               contains="Keyspace 'nokeyspace' does not exist")
        expect(cassandra.InvalidRequest, s.execute, "SELECT zz FROM ks.t", contains="Undefined column name zz")
        expect(cassandra.InvalidRequest, s.execute, "INSERT INTO ks.t (c, v) VALUES ('a', 1)",
               contains="Some partition key parts are missing: k")
        expect(cassandra.InvalidRequest, s.execute, "INSERT INTO ks.t (k, v) VALUES (1, 1)",
               contains="Some clustering keys are missing: c")
        ins = s.prepare("INSERT INTO ks.t (k, c, v) VALUES (?, ?, ?)")
        expect(cassandra.InvalidRequest, s.execute, ins, (None, "a", 1),
               contains="Invalid null value in condition for column k")
        expect(cassandra.InvalidRequest, s.prepare, "INSERT INTO ks.t (k, c, nope) VALUES (?, ?, ?)",
               contains="Undefined column name nope")
        expect(cassandra.AlreadyExists, s.execute, "CREATE TABLE ks.t (k int PRIMARY KEY)")
        s.execute("CREATE TABLE IF NOT EXISTS ks.t (k int PRIMARY KEY)")
        expect(cassandra.InvalidRequest, s.execute, "SELECT * FROM t", contains="No keyspace has been specified")
        s.set_keyspace("ks")
        assert s.execute("SELECT * FROM t").one() is None
        # the session's keyspace is used by prepared statements too
        s.execute(s.prepare("INSERT INTO t (k, c, v) VALUES (?, ?, ?)"), (1, "a", 2))
        assert s.execute("SELECT v FROM t WHERE k = 1 AND c = 'a'").one().v == 2
        expect(cassandra.InvalidRequest, s.execute, "SELECT * FROM system.peers_v2",
               contains="unconfigured table peers_v2")
        expect(cassandra.Unauthorized, s.execute, "DROP KEYSPACE system")
        s.execute("DROP TABLE ks.t")
        expect(cassandra.InvalidRequest, s.execute, "SELECT * FROM ks.t", contains="unconfigured table t")


def test_injected_failures():
    cassandra = driver()
    from cassandra.query import BatchStatement, BatchType
    from cassandra.protocol import OverloadedErrorMessage, ServerError
    with CqlServer() as srv, Session(srv) as s:
        s.execute(KS % "ks")
        s.execute("CREATE TABLE ks.t (k int PRIMARY KEY, v int)")
        ins = s.prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        srv.ok("fail unavailable 1")
        e = expect(cassandra.Unavailable, s.execute, ins, (1, 1))
        assert e.required_replicas == 1 and e.alive_replicas == 0 and e.consistency == cassandra.ConsistencyLevel.LOCAL_ONE, e
        s.execute(ins, (2, 2))                      # the rule is used up
        srv.ok("fail write_timeout 1")
        e = expect(cassandra.WriteTimeout, s.execute, "INSERT INTO ks.t (k, v) VALUES (3, 3)")
        assert e.write_type == cassandra.WriteType.SIMPLE, e.write_type
        srv.ok("fail write_timeout 1")
        b = BatchStatement(batch_type=BatchType.UNLOGGED)
        b.add(ins, (4, 4))
        b.add(ins, (5, 5))
        e = expect(cassandra.WriteTimeout, s.execute, b)
        assert e.write_type == cassandra.WriteType.UNLOGGED_BATCH, e.write_type
        srv.ok("fail overloaded 1")
        srv.ok("fail server_error 1")
        srv.ok("fail read_timeout 1")
        srv.ok("fail truncate_error 1")
        expect(OverloadedErrorMessage, s.execute, ins, (6, 6))
        expect(ServerError, s.execute, ins, (6, 6))
        expect(cassandra.ReadTimeout, s.execute, ins, (6, 6))
        expect(cassandra.protocol.TruncateError, s.execute, ins, (6, 6))
        assert s.execute("SELECT * FROM ks.t WHERE k = 1").one() is None      # reads are never failed
        s.execute(ins, (6, 6))
        assert sorted(r.k for r in s.execute("SELECT k FROM ks.t")) == [2, 6], "failed writes must not apply"
        srv.ok("fail unavailable 5")
        srv.ok("fail unavailable 0")                 # count 0 clears every rule
        s.execute(ins, (7, 7))
        r = srv.control("fail bogus 1")
        assert r["ok"] is False and "unknown fail kind" in r["error"], r


def test_forget_prepared():
    driver()
    from cassandra.query import BatchStatement, BatchType
    with CqlServer() as srv, Session(srv) as s:
        s.execute(KS % "ks")
        s.execute("CREATE TABLE ks.t (k int PRIMARY KEY, v int)")
        ins = s.prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        s.execute(ins, (1, 1))
        p0 = srv.control("stats")["prepares"]
        srv.ok("forget-prepared")
        s.execute(ins, (2, 2))                        # Unprepared -> driver re-prepares -> retries
        assert srv.control("stats")["prepares"] > p0
        srv.ok("forget-prepared")
        b = BatchStatement(batch_type=BatchType.UNLOGGED)
        b.add(ins, (3, 3))
        s.execute(b)
        assert sorted(r.k for r in s.execute("SELECT k FROM ks.t")) == [1, 2, 3]
        # raw: the ERROR carries the unknown id
        rc = C.RawClient("127.0.0.1", srv.port)
        rc.startup()
        pid = rc.prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        srv.ok("forget-prepared")
        e = expect(C.CqlServerError, rc.execute, pid, [struct.pack(">i", 9), struct.pack(">i", 9)])
        assert e.code == 0x2500 and e.extra == struct.pack(">H", len(pid)) + pid, e
        assert rc.prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)") == pid, "prepared ids are stable"
        rc.close()


def test_down_up():
    cassandra = driver()
    from cassandra.cluster import NoHostAvailable
    from cassandra.connection import ConnectionException
    with CqlServer() as srv, Session(srv) as s:
        s.execute(KS % "ks")
        s.execute("CREATE TABLE ks.t (k int PRIMARY KEY, v int)")
        ins = s.prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        s.execute(ins, (1, 1))
        srv.ok("down")
        try:
            socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()
            raise AssertionError("connection accepted while down")
        except ConnectionRefusedError:
            pass
        expect((NoHostAvailable, cassandra.OperationTimedOut, ConnectionException), s.execute, ins, (2, 2))
        assert srv.control("stats")["connections"] == 0
        srv.ok("up")

        def works():
            try:
                s.execute(ins, (3, 3))
                return True
            except (NoHostAvailable, cassandra.OperationTimedOut, ConnectionException):
                return False
        wait_for(works, 30, "the driver to reconnect after up", interval=0.1)
        assert sorted(r.k for r in s.execute("SELECT k FROM ks.t")) == [1, 3], "data kept across down/up"


def test_malformed_frames():
    with CqlServer() as srv:
        def raw():
            c = C.RawClient("127.0.0.1", srv.port, timeout=10)
            return c

        # unsupported version: Protocol error in a v4 header the client can read, then closed
        for ver in (5, 3, 0x42):
            c = raw()
            v, _, stream, op, body = c.request(C.OPTIONS, b"", stream=7, version=ver)
            code, msg, _ = C.parse_error(body)
            assert (op, code, stream) == (C.ERROR, 0x000A, 7) and \
                msg == "Invalid or unsupported protocol version (%d)" % ver, (op, code, msg)
            assert v == (0x83 if ver == 3 else 0x84), v
            assert c.closed_by_server()
            c.close()
        # frame length over 256 MB: Protocol error, closed (cannot resynchronise)
        c = raw()
        c.send_raw(C.HDR.pack(4, 0, 1, C.OPTIONS, 256 * 1024 * 1024 + 1))
        _, _, _, op, body = c.recv()
        assert op == C.ERROR and C.parse_error(body)[0] == 0x000A and b"too big" in body, body
        assert c.closed_by_server()
        c.close()
        # resynchronisable errors keep the connection open
        c = raw()
        _, _, _, op, body = c.request(C.QUERY, C.query_body("SELECT * FROM system.local"))
        assert op == C.ERROR and b"expecting STARTUP" in body, body          # QUERY before STARTUP
        e = expect(C.CqlServerError, c.call, C.STARTUP, C.string_map({"COMPRESSION": "lz4"}))
        assert e.code == 0x000A and "CQL_VERSION" in e.message, e
        e = expect(C.CqlServerError, c.call, C.STARTUP, C.string_map({"CQL_VERSION": "3.0.0", "COMPRESSION": "snappy"}))
        assert e.code == 0x000A and "Unknown compression algorithm: snappy" in e.message, e
        c.startup()
        bad = [
            (0x42, b"", "Unknown opcode 66"),                                   # bogus opcode
            (C.READY, b"", "Wrong protocol direction"),                         # a response opcode
            (C.QUERY, struct.pack(">i", 1000) + b"SELECT", "Not enough bytes"),  # long string past the body
            (C.QUERY, b"\x00", "Not enough bytes"),                            # truncated body
            (C.EXECUTE, b"\x00\x10abc", "Not enough bytes"),
            (C.BATCH, b"\x01\x00\x05\x01", "Not enough bytes"),
            (C.QUERY, C.long_string("SELECT * FROM system.local") + b"\x00", "Not enough bytes"),
            (C.STARTUP, C.string_map({"CQL_VERSION": "3.0.0"}), "already initialized"),
        ]
        for op, body, what in bad:
            _, _, _, rop, rbody = c.request(op, body)
            code, msg, _ = C.parse_error(rbody) if rop == C.ERROR else (None, rbody, None)
            assert rop == C.ERROR and code == 0x000A and what in msg, (op, rop, code, msg)
        # compressed flag without negotiated compression
        _, _, _, rop, rbody = c.request(C.OPTIONS, b"", flags=0x01)
        assert rop == C.ERROR and C.parse_error(rbody)[0] == 0x000A
        # tracing flag is ignored; custom payload is skipped
        _, rflags, _, rop, _ = c.request(C.QUERY, C.query_body("SELECT key FROM system.local"), flags=0x02)
        assert rop == C.RESULT and rflags == 0
        payload = struct.pack(">H", 1) + C.string("k") + C.value(b"v")
        _, _, _, rop, rbody = c.request(C.QUERY, payload + C.query_body("SELECT key FROM system.local"), flags=0x04)
        assert rop == C.RESULT and C.rows_count(rbody) == 1
        assert C.rows_count(c.query("SELECT * FROM system.local")) == 1, "connection still usable"
        c.close()
        # the server still serves everyone else: a driver connects and works
        driver()
        with Session(srv) as s:
            assert s.execute("SELECT key FROM system.local").one().key == "local"
        assert srv.proc.poll() is None


def test_raw_value_validation():
    """What the driver would catch client-side: wrong byte lengths, bad UTF-8,
    non-ASCII ascii, non-v1 timeuuid, null/unset keys, wrong value counts — and
    a BATCH with one bad row applies nothing."""
    with CqlServer() as srv:
        c = C.RawClient("127.0.0.1", srv.port)
        c.startup()
        c.query(KS % "ks")
        c.query("CREATE TABLE ks.v (k int PRIMARY KEY, t text, a ascii, tu timeuuid, s smallint, d date, b bigint)")
        pid = c.prepare("INSERT INTO ks.v (k, t, a, tu, s, d, b) VALUES (?, ?, ?, ?, ?, ?, ?)")
        i4 = struct.pack(">i", 1)
        good = [i4, b"ok", b"ok", uuid.uuid1().bytes, b"\x00\x01", struct.pack(">I", 1 << 31), struct.pack(">q", 5)]

        def bad(idx, v):
            vals = list(good)
            vals[idx] = v
            return vals
        cases = [
            (bad(0, struct.pack(">q", 1)), "Expected 4 or 0 byte int (8)"),
            (bad(1, b"\xff\xfe"), "String didn't validate."),
            (bad(2, "é".encode()), "Invalid byte for ascii: -61"),
            (bad(3, uuid.uuid4().bytes), "Invalid version for TimeUUID type."),
            (bad(3, b"\x01" * 8), "UUID should be 16 or 0 bytes (8)"),
            (bad(4, b"\x01"), "Expected 2 bytes for a smallint (1)"),
            (bad(4, b""), "Expected 2 bytes for a smallint (0)"),
            (bad(5, b"\x00" * 8), "Expected 4 byte long for date (8)"),
            (bad(6, i4), "Expected 8 or 0 byte long (4)"),
            (bad(0, None), "Invalid null value in condition for column k"),
            (bad(0, "unset"), "Invalid unset value for column k"),
            (bad(0, b""), "Key may not be empty"),
            (good[:3], "Invalid amount of bind variables: expected 7, got 3"),
        ]
        for vals, msg in cases:
            e = expect(C.CqlServerError, c.execute, pid, vals)
            assert e.code == 0x2200 and e.message == msg, (e.code, e.message, msg)
            e = expect(C.CqlServerError, c.batch, [(pid, good), (pid, vals)])
            assert e.code == 0x2200 and e.message == msg, (e.code, e.message, msg)
        assert srv.control("dump ks.v")["rows"] == [], "nothing of a failed batch may apply"
        # same checks for QUERY with bound values
        e = expect(C.CqlServerError, c.query, "INSERT INTO ks.v (k, b) VALUES (?, ?)", [i4, b"\x00"])
        assert e.message == "Expected 8 or 0 byte long (1)", e
        # empty values are legal for int-like regular columns; unset leaves the column alone
        c.execute(pid, [i4, b"x", b"y", b"", b"\x00\x02", struct.pack(">I", (1 << 31) + 1), b""])
        c.execute(pid, [i4, "unset", None, "unset", "unset", "unset", "unset"])
        d = srv.control("dump ks.v")
        r = dict(zip(d["columns"], d["rows"][0]))
        assert r == {"k": 1, "t": "x", "a": None, "tu": "", "s": 2, "d": "1970-01-02", "b": ""}, r
        # QUERY with named values (flag 0x40), in any order
        body = (C.long_string("INSERT INTO ks.v (k, t) VALUES (:kk, :tt)") + struct.pack(">HBH", 1, 0x41, 2) +
                C.string("tt") + C.value(b"named") + C.string("kk") + C.value(struct.pack(">i", 2)))
        assert c.call(C.QUERY, body)[0] == C.RESULT
        d = srv.control("dump ks.v")
        r2 = dict(zip(d["columns"], d["rows"][1]))
        assert (r2["k"], r2["t"], r2["a"]) == (2, "named", None), r2
        # a frame that arrives a few bytes at a time
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = C.frame(C.QUERY, C.query_body("SELECT k FROM ks.v"), stream=77)
        for i in range(0, len(f), 5):
            c.send_raw(f[i:i + 5])
        _, _, stream, op, body = c.recv()
        assert (stream, op) == (77, C.RESULT) and C.rows_count(body) == 2
        # a counter batch is refused, a SELECT in a batch too
        e = expect(C.CqlServerError, c.batch, [(pid, good)], 2)
        assert e.code == 0x2200, e
        e = expect(C.CqlServerError, c.batch, [("SELECT * FROM ks.v", [])])
        assert e.code == 0x2200 and "only UPDATE, INSERT and DELETE" in e.message, e
        c.close()


def test_pipelining_and_stats():
    with CqlServer() as srv:
        c = C.RawClient("127.0.0.1", srv.port)
        c.startup()
        c.query(KS % "ks")
        c.query("CREATE TABLE ks.t (k int PRIMARY KEY, v text)")
        pid = c.prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        frames = []
        for i in range(64):
            frames.append(C.frame(C.EXECUTE, C.execute_body(pid, [struct.pack(">i", i), b"v%d" % i]), stream=100 + i))
        frames.append(C.frame(C.QUERY, C.query_body("SELECT COUNT(*) FROM ks.t"), stream=999))
        c.send_raw(b"".join(frames))                # all in flight at once
        streams = []
        last = None
        for _ in range(65):
            _, _, stream, op, body = c.recv()
            assert op == C.RESULT, C.parse_error(body)
            streams.append(stream)
            last = body
        assert sorted(streams) == list(range(100, 164)) + [999], streams
        assert struct.unpack(">q", last[-8:])[0] == 64, "requests of one connection run in order"
        st = srv.control("stats")
        assert set(st) >= {"connections", "frames", "queries", "prepares", "executes", "batches",
                           "batch_statements", "max_inflight", "errors"}, st
        assert st["connections"] == 1 and st["executes"] == 64 and st["prepares"] == 1 and st["errors"] == 0, st
        assert st["max_inflight"] >= 2, st
        assert st["frames"] == 1 + 3 + 65, st        # STARTUP, 2 QUERY + PREPARE, 65 pipelined
        # reset: user keyspaces, prepared ids, stats go; the connection stays
        srv.ok("reset")
        st = srv.control("stats")
        assert st["frames"] == 0 and st["executes"] == 0 and st["connections"] == 1, st
        e = expect(C.CqlServerError, c.query, "SELECT * FROM ks.t")
        assert e.message == "Keyspace 'ks' does not exist", e
        e = expect(C.CqlServerError, c.execute, pid, [struct.pack(">i", 1), b"x"])
        assert e.code == 0x2500, e
        r = srv.control("dump ks.t")
        assert r["ok"] is False and "does not exist" in r["error"], r
        assert srv.control("nonsense")["ok"] is False
        c.close()


def test_blackhole():
    with CqlServer("--blackhole") as srv:
        c = C.RawClient("127.0.0.1", srv.port)
        c.startup()
        c.query(KS % "ks")
        c.query("CREATE TABLE ks.t (k int PRIMARY KEY, v text)")
        pid = c.prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
        body = c.batch([(pid, [struct.pack(">i", i), b"x"]) for i in range(100)])
        assert struct.unpack(">i", body)[0] == 1, "RESULT Void"
        c.execute(pid, [struct.pack(">i", 1), b"x"])
        st = srv.control("stats")
        assert st["batches"] == 1 and st["batch_statements"] == 100 and st["executes"] == 1, st
        assert srv.control("dump ks.t")["rows"] == [], "blackhole stores nothing"
        srv.ok("fail overloaded 1")
        e = expect(C.CqlServerError, c.batch, [(pid, [struct.pack(">i", 1), b"x"])])
        assert e.code == 0x1001, e
        c.close()


# ---------------------------------------------------------------------------------

def main(ns):
    """Like spoketest.main, without needing the spoke binary."""
    tests = [(k, v) for k, v in ns.items() if k.startswith("test_") and callable(v)]
    only = os.environ.get("SPOKE_TEST_ONLY")
    passed = failed = skipped = 0
    t_all = time.monotonic()
    for name, fn in tests:
        if only and only not in name:
            continue
        t0 = time.monotonic()
        try:
            fn()
            passed += 1
            print("PASS %s (%.2fs)" % (name, time.monotonic() - t0), flush=True)
        except Skip as e:
            skipped += 1
            print("SKIP %s: %s" % (name, e), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s (%.2fs)" % (name, time.monotonic() - t0), flush=True)
            traceback.print_exc()
            sys.stdout.flush()
    print("%d passed, %d failed, %d skipped (%.1fs)" % (passed, failed, skipped, time.monotonic() - t_all))
    sys.exit(1 if failed or passed == 0 and skipped == 0 else 0)


if __name__ == "__main__":
    main(globals())
