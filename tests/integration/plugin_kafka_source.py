#!/usr/bin/env python3
"""plugin-kafka_source: kafka_source against librdkafka's mock cluster
(tests/kafka/mockcluster), with kcat as the independent client that writes
the input and tests/kafka/groupoffsets reading the group's committed offsets.

Covered: every valid message delivered exactly once with its key, invalid
ones dead-lettered with their reason, committed offsets == end offsets;
headers and timestamps kept (through kafka_sink when it is built); regex
subscriptions and value.format=bytes; kill -9 three times mid-run loses
nothing and duplicates exactly the records past the committed offsets;
brokers down for 30 s: `retrying` with the Kafka reason, bounded memory,
nothing lost or duplicated; brokers down at start and at shutdown; an
outage librdkafka reports only as _TRANSPORT errors (never
_ALL_BROKERS_DOWN) still shows `retrying` (group and assign mode); a
bounded stop when the coordinator is slow; a consumer group of two spokes
splits the partitions and the survivor of a kill -9 takes the other's over
(eager and cooperative-sticky); a member joining while another reads a
backlog loses nothing and the group's
offsets never pass an undelivered record (both strategies); connector
configs cannot set properties that load files or code or that would break
the delivery guarantee (spoke validate and REST); the rules between keys
and bad librdkafka values are refused before anything runs (spoke
validate, spoke run, REST); config errors only init finds (no brokers
anywhere) fail the connector clearly. consumer.mode=assign is covered by
plugin_kafka_source_assign.py.
"""
import collections
import json
import os
import re
import socket
import time

import kafkatest
import spoketest
from kafkatest import committed_offsets, end_offsets, kcat_consume, kcat_produce, start_cluster
from spoketest import PLUGIN_DIR, Spoke, count_lines, metric, q, read_bytes, wait_for

TIMEOUT = 60
SANITIZE = os.environ.get("SPOKE_SANITIZE", "0") in ("1", "ON", "TRUE", "true")

# A killed member holds its partitions until the group coordinator misses
# its heartbeats for session.timeout.ms (librdkafka's default: 45 s).
GROUP_TIMEOUTS = ("    kafka.session.timeout.ms: 3000\n"
                  "    kafka.heartbeat.interval.ms: 500\n")


def source(ktopics=None, regex=None, group="g", topic="recs", name="src", extra=""):
    text = ("  - name: %s\n"
            "    connector.class: kafka_source\n"
            "    topic: %s\n"
            "    group.id: %s\n" % (name, topic, group))
    if ktopics is not None:
        text += "    source.topics: %s\n" % spoketest.yaml_scalar(ktopics)
    if regex is not None:
        text += "    source.topics.regex: %s\n" % q(regex)
    return text + GROUP_TIMEOUTS + extra


def file_sink(path, topics="recs", name="out", extra=""):
    return ("  - name: %s\n"
            "    connector.class: file_sink\n"
            "    topics: %s\n"
            "    file: %s\n" % (name, topics, q(path))) + extra


def kafka_spoke(cluster, connectors, **kw):
    return Spoke("connectors:\n" + connectors,
                 extra_worker={"kafka.bootstrap.servers": cluster.bootstrap}, **kw)


def lines_of(path):
    return read_bytes(path).split(b"\n")[:-1]


def ids_of(path):
    """Counter of the "id" of every JSON line of path (other lines skipped)."""
    c = collections.Counter()
    for line in lines_of(path):
        try:
            c[json.loads(line)["id"]] += 1
        except (ValueError, KeyError, TypeError):
            pass
    return c


# The kill -9 tests: 400,000 records in 4 partitions, small queues (enough
# that three kills, each after a settled group and 15,000 lines, come before
# the end of the data).
KILL_PARTS, KILL_PER = 4, 100000
KILL_QCAP, KILL_BATCH, KILL_PBATCH = 2000, 500, 500


def kill_test_spoke(c, src):
    """Fills topic "in" with {"id": i} records and starts spoke with src ->
    file_sink out.ndjson; returns (spoke, path of out.ndjson)."""
    produce_ids(c, "in", KILL_PARTS, KILL_PER, make=lambda i, p, j: {"value": '{"id":%d}' % i})
    s = kafka_spoke(c, src + file_sink("out.ndjson", extra="    queue.capacity: %d\n"
                                       "    batch.max: %d\n" % (KILL_QCAP, KILL_BATCH)))
    return s, os.path.join(s.tmp, "out.ndjson")


def stop_and_count_duplicates(s, out, total, settled):
    """Ends a kill -9 run: waits for every id 0..total-1 in out and for
    settled() (offsets at the end), stops spoke s, checks that no id is
    missing; returns how many lines are duplicates."""
    wait_for(lambda: len(ids_of(out)) >= total, 120, "all %d records after the kills" % total)
    settled()
    rc = s.stop()
    assert rc == 0, "spoke exited with %d" % rc
    ids = ids_of(out)
    lost = [i for i in range(total) if ids[i] == 0]
    assert not lost, "%d records lost, e.g. %r" % (len(lost), lost[:10])
    return sum(ids.values()) - total


def stop_with_brokers_down(cluster, s, what):
    """Takes every broker down, waits for `retrying`, and checks that stopping
    spoke s then is bounded and clean."""
    cluster.cmd("down all")
    wait_for(lambda: s.connector("src").get("retrying"), TIMEOUT, "retrying after " + what)
    t0 = time.monotonic()
    rc = s.stop(timeout=30)
    took = time.monotonic() - t0
    assert rc == 0, "spoke exited with %d" % rc
    assert took < 8, "stopping with the brokers down took %.1fs" % took


def wait_committed(cluster, group, topic, timeout=TIMEOUT):
    """Waits until the group's committed offsets equal the end offsets."""
    end = end_offsets(cluster.bootstrap, topic)
    last = {}

    def done():
        last.update(committed_offsets(cluster.bootstrap, group, topic))
        return last == end
    wait_for(done, timeout, lambda: "group %s to commit %s up to the end %s (now %s)"
             % (group, topic, end, last), interval=0.2)
    return end


def produce_ids(cluster, topic, partitions, per_partition, start=0, make=None):
    """per_partition records to each partition, in order: record j of
    partition p has id start + p * per_partition + j and sits at offset
    (previous end) + j. make(id, p, j) -> dict (kcat_produce record)."""
    make = make or (lambda i, p, j: {"key": "key-%d" % i, "value": '{"id":%d}' % i})
    for p in range(partitions):
        base = start + p * per_partition
        kcat_produce(cluster.bootstrap, topic,
                     [make(base + j, p, j) for j in range(per_partition)], partition=p)
    low = {p: lh[0] for p, lh in kafkatest.watermarks(cluster.bootstrap, topic).items()}
    assert set(low.values()) == {0}, "the mock cluster dropped old messages (low watermarks " \
        "%r): produce less per partition" % low


# ---------------------------------------------------------------------------

def test_config_refusals():
    """Pass-through properties that load code or files, run commands or
    break the commit protocol are refused in a connector (validate and
    REST); the worker section may set file locations."""
    import resttest
    conn = ("connectors:\n"
            "  - name: src\n"
            "    connector.class: kafka_source\n"
            "    topic: recs\n"
            "    source.topics: in\n"
            "    group.id: g\n")

    def validate(connectors, worker_extra=""):
        return spoketest.validate(connectors) if not worker_extra else _validate_worker(
            connectors, worker_extra)

    r = validate(conn + "    kafka.session.timeout.ms: \"6000\"\n")
    assert r.returncode == 0, "a valid config refused: %s" % r.stderr
    for prop, value in (("plugin.library.paths", "/tmp/evil.so"),
                        ("ssl.ca.location", "/etc/ssl/certs/ca-certificates.crt"),
                        ("sasl.kerberos.kinit.cmd", "touch /tmp/pwned"),
                        ("enable.auto.commit", "true"),
                        ("enable.auto.offset.store", "true"),
                        ("group.id", "other")):
        r = validate(conn + "    kafka.%s: %s\n" % (prop, q(value)))
        assert r.returncode == 1, "kafka.%s accepted by validate: %s" % (prop, r.stderr)
        assert "kafka." + prop in r.stderr or prop in r.stderr, \
            "the refusal does not name kafka.%s: %r" % (prop, r.stderr)
    r = validate(conn + "    poll.batch.maxx: 10\n")
    assert r.returncode == 1 and "poll.batch.maxx" in r.stderr, \
        "unknown key accepted: %r" % r.stderr
    r = validate(conn + "    value.format: xml\n")
    assert r.returncode == 1 and "value.format" in r.stderr, "bad value.format accepted"
    r = validate(conn + "    consumer.mode: subscribe\n")
    assert r.returncode == 1 and "consumer.mode" in r.stderr, "bad consumer.mode accepted"
    # The worker section is trusted: file locations are allowed there.
    r = validate(conn, worker_extra="  kafka.ssl.ca.location: %s\n"
                 % q("/etc/ssl/certs/ca-certificates.crt"))
    assert r.returncode == 0, "worker kafka.ssl.ca.location refused: %s" % r.stderr

    sp, api = resttest.rest_spoke("connectors: []\n")
    with sp:
        body = {"connector.class": "kafka_source", "topic": "recs", "source.topics": "in",
                "group.id": "g"}
        for prop, value in (("plugin.library.paths", "/tmp/evil.so"),
                            ("ssl.ca.location", "/etc/ssl/certs/ca-certificates.crt"),
                            ("sasl.kerberos.kinit.cmd", "touch /tmp/pwned"),
                            ("enable.auto.commit", "true")):
            b = dict(body)
            b["kafka." + prop] = value
            r = resttest.expect(api.call("PUT", "/connectors/x/config", body=b), 400,
                                "PUT kafka.%s" % prop)
            assert prop in r.json["message"], "400 does not name %s: %r" % (prop, r.json)
            r = api.call("PUT", "/connector-plugins/kafka_source/config/validate",
                         body=dict(b, **{"connector.class": "kafka_source"}))
            assert r.status == 200 and r.json.get("error_count", 0) >= 1, \
                "validate endpoint accepted kafka.%s: %r" % (prop, r)
        assert api.get("/connectors/x").status == 404, "a refused connector was created"


def _validate_worker(connectors, worker_extra):
    import tempfile
    with tempfile.TemporaryDirectory(prefix="spoke-validate-") as tmp:
        path = os.path.join(tmp, "connectors.yaml")
        with open(path, "w") as f:
            f.write("worker:\n  plugin.path: [%s]\n  state.dir: %s\n%s"
                    % (q(PLUGIN_DIR), q(os.path.join(tmp, "state")), worker_extra))
            f.write(connectors)
        return spoketest.run_spoke("validate", "-c", path)


def test_checks_between_keys_refuse_before_running():
    """The rules the config table cannot say (keys that go together or
    exclude each other, topic names, the regex, the values of the
    connector's librdkafka properties) are the plugin's check: a config that
    breaks one is refused before anything runs, no Kafka needed. `spoke
    validate` and `spoke run` exit 1 with the reason at the key's line (at
    the connector when the key is missing); REST answers 400 and creates
    nothing, config/validate counts the error on the key. Several mistakes
    are reported together, each at its key."""
    import resttest
    import tempfile
    # (key named, extra lines, reason)
    cases = [("group.id", "    source.topics: in\n    consumer.mode: assign\n    group.id: g\n",
              "group.id cannot be set with consumer.mode assign"),
             ("source.topics.regex", "    source.topics: in\n    source.topics.regex: \"x.*\"\n",
              "set exactly one of source.topics (a list of Kafka topics) and "
              "source.topics.regex"),
             ("source.topics", "    group.id: g\n",
              "set exactly one of source.topics (a list of Kafka topics) and "
              "source.topics.regex"),
             ("source.topics", "    source.topics: [in, \"bad topic!\"]\n",
              "source.topics: 'bad topic!' is not a valid Kafka topic name"),
             ("source.topics.regex", "    source.topics.regex: \"a(b\"\n",
              "source.topics.regex: "),
             ("kafka.fetch.wait.max.ms", "    source.topics: in\n    kafka.fetch.wait.max.ms: abc\n",
              "librdkafka property 'fetch.wait.max.ms' (connector kafka.*): Invalid value")]
    spoketest.expect_checks_each_refuse(
        "  - name: src\n    connector.class: kafka_source\n    topic: recs\n", "src", cases,
        "    source.topics.regex: \"in\\\\..*\"\n    consumer.mode: assign\n"
        "    kafka.fetch.wait.max.ms: \"100\"\n")
    resttest.expect_each_refused("kafka_source", "src", {"connector.class": "kafka_source",
                                                         "topic": "recs"}, [
        ("group.id", {"source.topics": "in", "consumer.mode": "assign", "group.id": "g"},
         cases[0][2]),
        ("source.topics.regex", {"source.topics": "in", "source.topics.regex": "x.*"},
         cases[1][2]),
        ("source.topics", {"group.id": "g"}, cases[2][2]),
        ("source.topics", {"source.topics": "in,bad topic!"}, cases[3][2]),
        ("source.topics.regex", {"source.topics.regex": "a(b"}, cases[4][2]),
        ("kafka.fetch.wait.max.ms", {"source.topics": "in", "kafka.fetch.wait.max.ms": "abc"},
         cases[5][2])])
    # Several at once, each at its key.
    many = {"source.topics": "in,bad topic!", "consumer.mode": "assign", "group.id": "g",
            "kafka.fetch.wait.max.ms": "abc"}
    problems = [("group.id", cases[0][2]), ("source.topics", cases[3][2]),
                ("kafka.fetch.wait.max.ms", cases[5][2])]
    with tempfile.TemporaryDirectory(prefix="spoke-check-") as tmp:
        spoketest.expect_checks_refuse(
            tmp, "  - name: src\n    connector.class: kafka_source\n    topic: recs\n"
            "    source.topics: [in, \"bad topic!\"]\n    consumer.mode: assign\n"
            "    group.id: g\n    kafka.fetch.wait.max.ms: abc\n",
            [("src", k, w) for k, w in problems])
    sp, api = resttest.rest_spoke("connectors: []\n")
    with sp:
        resttest.expect_refused_all(api, "kafka_source", "src", dict(
            {"connector.class": "kafka_source", "topic": "recs"}, **many), problems)


def test_init_errors_fail_with_reason():
    """Config errors only init can see (the worker section may name the
    brokers, so their absence is found at init) fail the connector with a
    clear trace."""
    with Spoke("connectors:\n" + source(["in"]) + file_sink("/dev/null")) as s:
        s.wait_state("src", "FAILED")
        assert "no Kafka brokers" in (s.connector("src").get("trace") or "")


def test_sasl_password_never_shown():
    """kafka.sasl.password reaches librdkafka but no log line, status or
    REST answer (the mock cluster does not speak SASL: the connection
    fails, which librdkafka logs)."""
    import resttest
    secret = "pw-7f3a9c-never-shown"
    with start_cluster(1, {"in": 1}) as c:
        conns = source(["in"], extra="    kafka.security.protocol: sasl_plaintext\n"
                                     "    kafka.sasl.mechanism: PLAIN\n"
                                     "    kafka.sasl.username: spoke\n"
                                     "    kafka.sasl.password: %s\n" % q(secret)) \
            + file_sink("/dev/null")
        with kafka_spoke(c, conns) as s:
            api = resttest.Api(s)
            api.wait_healthy()
            wait_for(lambda: "kafka" in s.log().split("[src] running", 1)[-1], TIMEOUT,
                     "librdkafka to report on the failing connection")
            r = api.get("/connectors/src/config")
            assert r.status == 200 and r.json.get("kafka.sasl.password") not in (None, secret), r
            texts = [s.log(), json.dumps(s.status()), r.raw.decode(),
                     api.get("/connectors/src/status").raw.decode(),
                     api.get("/connectors?expand=info").raw.decode()]
            assert not any(secret in t for t in texts), "the SASL password was shown"


def test_delivery_dead_letters_and_commits():
    """20,000 messages on 4 partitions, 1 in 97 invalid (bad JSON, invalid
    UTF-8, empty, tombstones with value.null=error): every valid one
    delivered exactly once with its key, every invalid one on the
    dead-letter topic with its reason logged, the group's offsets committed
    up to the end; a graceful restart re-delivers nothing."""
    parts, per = 4, 5000
    bad_kinds = [b'{"id":%d,"broken"', b"not json %d", b'{"id":%d,"s":"\xff\xfe"}', b"",
                 None, b'{"id":%d} trailing']

    def make(i, p, j):
        if j % 97 == 13:
            v = bad_kinds[(i // 97) % len(bad_kinds)]
            v = v if v is None or b"%d" not in v else v % i
            return {"key": "key-%d" % i, "value": v, "headers": [("src", "kcat"), ("p", str(p))]}
        return {"key": "key-%d" % i,
                "value": '{"id":%d,"p":%d,"s":"caf\u00e9 \\"q\\" %s"}' % (i, p, "x" * (i % 50)),
                "headers": [("src", "kcat"), ("p", str(p))]}

    expected_bad = {}
    for p in range(parts):
        for j in range(per):
            i = p * per + j
            if j % 97 == 13:
                expected_bad[(p, j)] = make(i, p, j)["value"]
    n_bad = len(expected_bad)
    n_good = parts * per - n_bad

    with start_cluster(1, {"in": parts}) as c:
        produce_ids(c, "in", parts, per, make=make)
        assert end_offsets(c.bootstrap, "in") == {p: per for p in range(parts)}
        conns = (source(["in"], extra="    value.null: error\n"
                                      "    errors.tolerance: all\n"
                                      "    errors.log.max.per.second: 0\n"  # every reason
                                      "    errors.deadletterqueue.topic.name: dlq\n")
                 + file_sink("out.ndjson")
                 + "  - name: watch\n    connector.class: console_sink\n    topics: recs\n"
                 + file_sink("dlq.ndjson", topics="dlq", name="dlqout"))
        with kafka_spoke(c, conns) as s:
            out, dlq = os.path.join(s.tmp, "out.ndjson"), os.path.join(s.tmp, "dlq.ndjson")
            wait_for(lambda: count_lines(out) >= n_good and count_lines(dlq) >= n_bad, TIMEOUT,
                     "%d records and %d dead letters (now %d, %d)"
                     % (n_good, n_bad, count_lines(out), count_lines(dlq)))
            wait_committed(c, "g", "in")
            wait_for(lambda: metric(s, "src", "messages") == parts * per, TIMEOUT,
                     "messages metric == %d" % (parts * per))
            assert metric(s, "src", "invalid") == n_bad, metric(s, "src", "invalid")
            assert metric(s, "src", "assigned_partitions") == parts
            assert (metric(s, "src", "commits") or 0) >= 1
            ids = ids_of(out)
            assert len(ids) == n_good and set(ids.values()) == {1}, \
                "not exactly once: %d distinct, %d duplicated" % (
                    len(ids), sum(1 for v in ids.values() if v > 1))
            assert all(i % per % 97 != 13 for i in ids), "an invalid record was delivered"
            got_bad = collections.Counter(lines_of(dlq))
            want_bad = collections.Counter(b"null" if v is None else v
                                           for v in expected_bad.values())
            assert got_bad == want_bad, "dead letters differ: %r" % (got_bad - want_bad)
            log = s.log()
            for (p, j) in expected_bad:
                assert "kafka message in/%d offset %d: the value" % (p, j) in log, \
                    "no logged reason for in/%d offset %d" % (p, j)
            assert "the value is not valid JSON (invalid UTF-8)" in log
            assert "the value is null (a tombstone)" in log
            # Keys: console_sink prints "<topic> <key> <value>".
            def console_keys():
                keys = {}
                for line in s.stdout_lines():
                    t, key, value = line.split(" ", 2)
                    if t == "recs":
                        keys[json.loads(value)["id"]] = key
                return keys
            wait_for(lambda: len(console_keys()) >= n_good, TIMEOUT, "every record on the console")
            keys = console_keys()
            assert len(keys) == n_good and all(keys[i] == "key-%d" % i for i in keys), \
                "keys differ from the Kafka keys"

        # A graceful restart starts after the committed offsets: only the new
        # messages come out.
        produce_ids(c, "in", parts, 25, start=100000)
        with kafka_spoke(c, conns, tmp=s.tmp) as s2:
            wait_for(lambda: count_lines(out) >= n_good + 100, TIMEOUT, "the 100 new records")
            wait_committed(c, "g", "in")
            wait_for(lambda: metric(s2, "src", "messages") == 100, TIMEOUT, "messages == 100")
        ids = ids_of(out)
        assert len(ids) == n_good + 100 and set(ids.values()) == {1}, \
            "records delivered again after a graceful restart"


def test_headers_timestamps_and_null_values_roundtrip():
    """Key, headers (repeated names, empty values), timestamp and null
    values survive Kafka -> kafka_source -> kafka_sink -> Kafka;
    headers.metadata adds kafka.topic/partition/offset."""
    if not os.path.exists(os.path.join(PLUGIN_DIR, "kafka_sink.so")):
        raise spoketest.Skip("kafka_sink is not built")
    with start_cluster(1, {"in": 2, "copy": 1}) as c:
        recs = []
        for i in range(60):
            r = {"value": '{"n":%d}' % i, "partition": i % 2}
            if i % 3:
                r["key"] = "k%d" % i
            if i % 4 == 0:
                r["headers"] = [("a", "1"), ("a", "2"), ("empty", "")]
            if i == 17:
                r["value"] = None
            recs.append(r)
        kcat_produce(c.bootstrap, "in", recs)
        src = kcat_consume(c.bootstrap, "in")
        assert len(src) == 60
        conns = (source(["in"], extra="    headers.metadata: true\n")
                 + "  - name: tokafka\n    connector.class: kafka_sink\n    topics: recs\n"
                   "    target.topic: copy\n")
        with kafka_spoke(c, conns) as s:
            got = kcat_consume(c.bootstrap, "copy", n=60, timeout=TIMEOUT)
            wait_committed(c, "g", "in")
            s.wait_state("src", "RUNNING")
        by_pos = {(m["partition"], m["offset"]): m for m in src}
        for m in got:
            hdrs = dict(m["headers"])
            pos = (int(hdrs["kafka.partition"]), int(hdrs["kafka.offset"]))
            o = by_pos.pop(pos)
            assert hdrs["kafka.topic"] == "in"
            assert m["key"] == o["key"], (m, o)
            assert m["value"] == o["value"], (m, o)
            assert m["ts"] == o["ts"], "timestamp changed: %r vs %r" % (m, o)
            assert m["headers"][:len(o["headers"])] == o["headers"], (m, o)
            assert [h[0] for h in m["headers"][len(o["headers"]):]] == \
                ["kafka.topic", "kafka.partition", "kafka.offset"], m["headers"]
        assert not by_pos, "messages not copied: %r" % sorted(by_pos)


def test_regex_subscription_and_bytes_format():
    """source.topics.regex matches whole topic names; value.format=bytes
    passes anything; value.null=emit gives null values."""
    topics = {"ev.a": 1, "ev.b": 2, "ev.ab": 1, "other": 1}
    with start_cluster(1, topics) as c:
        for t, n in topics.items():
            # Every partition gets records (kcat's partitioner may put a run
            # of keyless ones in one): the group commits only the partitions
            # it read, and the waits below compare with every end offset.
            kcat_produce(c.bootstrap, t, [{"value": "%s plain text %d" % (t, i),
                                           "partition": i * n // 50} for i in range(50)]
                         + [{"value": None, "partition": 0}])
        conns = (source(regex=r"ev\.[ab]", extra="    value.format: bytes\n")
                 + file_sink("out.ndjson"))
        with kafka_spoke(c, conns) as s:
            out = os.path.join(s.tmp, "out.ndjson")
            wait_for(lambda: count_lines(out) >= 102, TIMEOUT, "102 records from ev.a and ev.b")
            wait_committed(c, "g", "ev.a")
            wait_committed(c, "g", "ev.b")
            got = collections.Counter(lines_of(out))
            want = collections.Counter(("%s plain text %d" % (t, i)).encode()
                                       for t in ("ev.a", "ev.b") for i in range(50))
            want[b"null"] = 2
            assert got == want, "unexpected records: %r" % ((got - want) + (want - got))
            assert metric(s, "src", "invalid") is None
            assert committed_offsets(c.bootstrap, "g", "ev.ab") == {0: None}, \
                "ev.ab (not a whole-name match) was consumed"


def test_kill9_loses_nothing_and_duplicates_only_the_uncommitted_window():
    """400,000 messages; spoke is killed (SIGKILL) three times mid-run and
    restarted. Nothing is lost. A record is delivered again only when it was
    written before a kill at or past the group's committed offset of its
    partition (the restarted consumer resumes exactly there), so the
    duplicates equal the sum of those windows. Each window is bounded by
    what can be unacknowledged or acknowledged-but-uncommitted at once:
    with commit.interval.ms=0 the plugin commits at every poll, so a window
    holds at most the records in flight downstream (the sink's queue, its
    batch, the host's staging, one poll) and those acknowledged during one
    poll plus one commit round trip: 2 x (queue.capacity + batch.max + 256 +
    poll.batch.max). That bound holds while the group is steady, so each
    kill waits for it: this run's member holds every partition and its
    commits go through (the plugin's metrics). After a restart the killed
    member stays in the group until its session times out, and the
    rebalance that removes it refuses commits for a while (seen on a slow
    VM: 8,244 records past the offsets, partitions 1 and 2 never committed
    yet); a kill then would measure the rebalance, not the commit path."""
    parts, per = KILL_PARTS, KILL_PER
    bound = 2 * (KILL_QCAP + KILL_BATCH + 256 + KILL_PBATCH)
    with start_cluster(1, {"in": parts}) as c:
        s, out = kill_test_spoke(c, source(["in"], extra="    commit.interval.ms: 0\n"
                                                         "    poll.batch.max: %d\n" % KILL_PBATCH))
        windows = []
        try:
            seg_start = 0
            for k in range(3):
                base = count_lines(out)
                wait_for(lambda: count_lines(out) >= base + 15000, TIMEOUT,
                         "progress before kill %d (%d lines)" % (k + 1, count_lines(out)))

                seen = []

                def steady():
                    # This run's member holds every partition (the killed
                    # one has left the group) and two commits went through
                    # since it was first seen holding them.
                    if metric(s, "src", "assigned_partitions") != parts:
                        seen.clear()
                        return False
                    seen.append(metric(s, "src", "commits") or 0)
                    return seen[-1] >= seen[0] + 2
                wait_for(steady, TIMEOUT, lambda: "the group to settle before kill %d (assigned "
                         "%r, commits %r)" % (k + 1, metric(s, "src", "assigned_partitions"),
                                              metric(s, "src", "commits")), interval=0.05)
                s.kill()
                # Where the next run resumes. A commit the killed process
                # sent just before dying may still be applied: read until
                # two reads agree.
                reads = [committed_offsets(c.bootstrap, "g", "in")]

                def stable():
                    reads.append(committed_offsets(c.bootstrap, "g", "in"))
                    return reads[-1] == reads[-2]
                wait_for(stable, TIMEOUT, "the committed offsets to settle", interval=0.2)
                committed = reads[-1]
                data = read_bytes(out)
                segment = data[seg_start:]
                seg_start = len(data)
                # A line cut by the kill is ended by file_sink at its next
                # start; only a complete record counts.
                window = 0
                for line in segment.split(b"\n"):
                    try:
                        i = json.loads(line)["id"]
                    except (ValueError, KeyError, TypeError):
                        continue
                    p, off = divmod(i, per)
                    if committed[p] is None or off >= committed[p]:
                        window += 1
                windows.append(window)
                assert window <= bound, "kill %d: %d records past the committed offsets %r " \
                    "(bound %d)" % (k + 1, window, committed, bound)
                s.start()
            dups = stop_and_count_duplicates(s, out, parts * per,
                                             lambda: wait_committed(c, "g", "in"))
        except BaseException:
            if s.alive():
                s.kill()
            raise
        print("kill -9 x3: windows past the committed offsets %r, duplicates %d (bound %d "
              "per kill)" % (windows, dups, bound))
        assert dups == sum(windows), "duplicates %d != records past the committed offsets at " \
            "the kills %r" % (dups, windows)


def _rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def test_brokers_down_30s_retrying_bounded_memory_no_loss():
    """All brokers stop answering for 30 s mid-run: the connector stays
    RUNNING with `retrying` and a Kafka reason, memory stays bounded, and
    when the brokers return every record arrives."""
    parts, per = 4, 25000
    down_for = 30.0
    pad = "p" * 100  # 25,000 x ~130 bytes: under the mock's ~5 MB per partition
    with start_cluster(1, {"in": parts}) as c:
        produce_ids(c, "in", parts, per,
                    make=lambda i, p, j: {"value": '{"id":%d,"pad":"%s"}' % (i, pad)})
        # A small prefetch queue, so most messages are still in Kafka when
        # the brokers go.
        conns = (source(["in"], extra="    kafka.queued.max.messages.kbytes: \"1024\"\n"
                                      "    kafka.queued.min.messages: \"1000\"\n")
                 + file_sink("out.ndjson"))
        with kafka_spoke(c, conns) as s:
            out = os.path.join(s.tmp, "out.ndjson")
            pid = s.proc.pid
            wait_for(lambda: count_lines(out) >= 10000, TIMEOUT, "progress before the outage")
            s.wait_state("src", "RUNNING")  # in status.json too (see _transport_only_outage)
            rss = [_rss_kb(pid)]
            c.cmd("down all")
            t_down = time.monotonic()
            at_down = count_lines(out)
            seen = {}

            def sample():
                rss.append(_rss_kb(pid))
                st = s.connector("src")
                if st.get("retrying") and "kafka: all brokers down" in (st.get("trace") or ""):
                    seen.setdefault("trace", st["trace"])
                assert st.get("state") == "RUNNING", "connector left RUNNING: %r" % st
                return time.monotonic() - t_down >= down_for
            wait_for(sample, down_for + 10, "the outage to last %.0fs" % down_for, interval=0.25)
            assert "trace" in seen, "status never showed retrying with 'kafka: all brokers " \
                "down' (last %r)" % s.connector("src")
            assert count_lines(out) < parts * per, "everything was consumed before the outage"
            during = count_lines(out) - at_down
            c.cmd("up all")
            wait_for(lambda: len(ids_of(out)) >= parts * per, 90,
                     "all records after the brokers returned (%d)" % len(ids_of(out)))
            wait_for(lambda: not s.connector("src").get("retrying"), TIMEOUT,
                     "retrying to clear")
            wait_committed(c, "g", "in")
            ids = ids_of(out)
            assert len(ids) == parts * per, "lost %d records" % (parts * per - len(ids))
            dups = sum(ids.values()) - parts * per
            rss_max, rss_start = max(rss), rss[0]
            print("brokers down %.0fs: trace %r; %d records delivered from the prefetch queue "
                  "during the outage; %d duplicates; VmRSS "
                  "%d..%d KiB" % (down_for, seen["trace"][:120], during, dups, rss_start,
                                  rss_max))
            # The outage outlasts session.timeout.ms, so the assignment is
            # lost (no commit possible); when the partitions come back, the
            # plugin resumes past what it saw delivered instead of the
            # group's older offsets.
            assert dups == 0, "%d records delivered twice after the outage" % dups
            assert "resumes at" in s.log(), "no partition resumed past the group's offsets"
            assert rss_max - rss_start < 64 * 1024, "RSS grew by %d KiB during the outage" % (
                rss_max - rss_start)
            if not SANITIZE:
                assert rss_max < 200 * 1024, "VmRSS reached %d KiB" % rss_max


def test_brokers_down_at_start_and_at_shutdown():
    """Brokers unreachable when the connector starts: RUNNING, `retrying`
    with the reason, then consuming once they answer. Stopping while they
    are down is bounded by close.timeout.ms (not session.timeout.ms, not
    forever) and exits cleanly."""
    with start_cluster(1, {"in": 2}) as c:
        produce_ids(c, "in", 2, 50)
        c.cmd("down all")
        conns = source(["in"], extra="    close.timeout.ms: 2000\n") + file_sink("out.ndjson")
        s = kafka_spoke(c, conns)
        try:
            out = os.path.join(s.tmp, "out.ndjson")
            wait_for(lambda: s.connector("src").get("retrying") and "kafka: all brokers down"
                     in (s.connector("src").get("trace") or ""), TIMEOUT,
                     "retrying with the brokers down at start (now %r)" % s.connector("src"))
            assert s.connector("src").get("state") == "RUNNING"
            # Back, but every answer 300 ms late (longer than the source's
            # 200 ms probe waits): still back.
            c.cmd("rtt all 300")
            c.cmd("up all")
            wait_for(lambda: len(ids_of(out)) == 100, TIMEOUT, lambda: "the 100 records once "
                     "the brokers answer (%d, source %r)" % (len(ids_of(out)), s.connector("src")))
            wait_committed(c, "g", "in")
            wait_for(lambda: not s.connector("src").get("retrying"), TIMEOUT, "retrying to clear")
            c.cmd("rtt all 0")
            stop_with_brokers_down(c, s, "the second outage")
            assert sum(ids_of(out).values()) == 100
        finally:
            if s.alive():
                s.kill()


def test_brokers_down_reported_only_as_transport_errors():
    """An outage librdkafka reports only as _TRANSPORT errors, never as
    _ALL_BROKERS_DOWN (which needs every broker it knows counted down, and
    one can stay in connection setup): the connector still shows `retrying`
    with 'kafka: all brokers down' (a metadata probe finds no broker up),
    and consumes again once the brokers return. Made deterministic with a second bootstrap
    address that listens but never accepts nor answers: librdkafka's
    connection to it stays in setup (its timeouts, 60 s by default, raised
    past the test), so that broker is never down and _ALL_BROKERS_DOWN never
    comes. Without the probe on _TRANSPORT the status stays RUNNING without
    `retrying` (the CI failure of the 30-second outage test)."""
    _transport_only_outage(source(["in"]), group="g")


def test_brokers_down_reported_only_as_transport_errors_assign():
    """The same with consumer.mode=assign (no group: the plugin polls the
    client for its error callbacks itself)."""
    _transport_only_outage("  - name: src\n"
                           "    connector.class: kafka_source\n"
                           "    topic: recs\n"
                           "    source.topics: in\n"
                           "    consumer.mode: assign\n", group=None)


def _transport_only_outage(src, group):
    hang = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        hang.bind(("127.0.0.1", 0))
        hang.listen(16)
        with start_cluster(1, {"in": 2}) as c:
            produce_ids(c, "in", 2, 50)
            worker = {"kafka.bootstrap.servers": "%s,127.0.0.1:%d"
                      % (c.bootstrap, hang.getsockname()[1]),
                      # The first connection to it can be made at start.
                      "kafka.api.version.request.timeout.ms": 300000,
                      "kafka.socket.connection.setup.timeout.ms": 300000,
                      "kafka.socket.timeout.ms": 300000}
            with Spoke("connectors:\n" + src + file_sink("out.ndjson"),
                       extra_worker=worker) as s:
                out = os.path.join(s.tmp, "out.ndjson")
                wait_for(lambda: len(ids_of(out)) == 100, TIMEOUT, "the first 100 records")
                # status.json is rewritten on each state change, a few ms
                # after it: the records can be out before it says RUNNING.
                s.wait_state("src", "RUNNING")
                if group:
                    # The outage outlasts session.timeout.ms: committed, so
                    # the lost assignment cannot deliver anything twice.
                    wait_committed(c, group, "in")
                c.cmd("down all")

                def retrying():
                    st = s.connector("src")
                    assert st.get("state") == "RUNNING", "connector left RUNNING: %r" % st
                    return st.get("retrying") and "kafka: all brokers down" in (
                        st.get("trace") or "") and st
                st = wait_for(retrying, TIMEOUT, lambda: "retrying with 'kafka: all brokers "
                              "down' (now %r)" % s.connector("src"))
                assert "_TRANSPORT" in st["trace"], "not a transport error: %r" % st["trace"]
                assert "_ALL_BROKERS_DOWN" not in s.log(), "librdkafka reported " \
                    "_ALL_BROKERS_DOWN: the transport-only path was not reached"
                c.cmd("up all")
                produce_ids(c, "in", 2, 50, start=100)
                wait_for(lambda: len(ids_of(out)) == 200, TIMEOUT, lambda: "the 200 records "
                         "once the brokers answer (%d, source %r)"
                         % (len(ids_of(out)), s.connector("src")))
                wait_for(lambda: not s.connector("src").get("retrying"), TIMEOUT,
                         "retrying to clear")
                if group:
                    wait_committed(c, group, "in")
                assert "_ALL_BROKERS_DOWN" not in s.log()
                assert sum(ids_of(out).values()) == 200, "duplicates: %d" % (
                    sum(ids_of(out).values()) - 200)
    finally:
        hang.close()

def test_stop_is_bounded_when_the_coordinator_is_slow():
    """With every broker answering 3 s late, leaving the group cannot finish
    within close.timeout.ms: stop gives up after it (the client is destroyed
    without a second close), the offsets were committed before, and the
    process exits cleanly."""
    with start_cluster(1, {"in": 2}) as c:
        produce_ids(c, "in", 2, 50)
        s = kafka_spoke(c, source(["in"], extra="    close.timeout.ms: 300\n")
                        + file_sink("out.ndjson"))
        try:
            out = os.path.join(s.tmp, "out.ndjson")
            wait_for(lambda: len(ids_of(out)) == 100, TIMEOUT, "the 100 records")
            wait_committed(c, "g", "in")
            c.cmd("rtt all 3000")
            t0 = time.monotonic()
            rc = s.stop(timeout=30)
            took = time.monotonic() - t0
            assert rc == 0, "spoke exited with %d" % rc
            assert took < 10, "stopping took %.1fs" % took
            log = s.log()
            assert log.count("did not leave the group within close.timeout.ms (300 ms)") == 1, \
                "expected one warning about the unfinished close"
        finally:
            if s.alive():
                s.kill()


def test_consumer_group_splits_partitions_and_survives_a_kill():
    """Two spokes in one consumer group split 4 partitions 2/2; after one is
    killed (SIGKILL) the other takes all 4 and the union of their outputs
    holds every record. Eager rebalancing (librdkafka's default)."""
    _group_of_two("")


def test_consumer_group_cooperative_sticky():
    """The same with incremental (cooperative-sticky) rebalancing."""
    b = _group_of_two("    kafka.partition.assignment.strategy: cooperative-sticky\n")
    log = b.log()
    # Its own two partitions, then the dead member's two, added to them
    # (eager would revoke everything and assign all four at once).
    assert log.count("kafka: assigned 2 partition(s) (incremental)") == 2 and \
        "assigned 4 partition(s)" not in log, "the survivor did not take the partitions " \
        "incrementally:\n%s" % "\n".join(l for l in log.splitlines() if "kafka: " in l)


def _group_of_two(extra):
    parts = 4
    with start_cluster(1, {"in": parts}) as c:
        conns = source(["in"], extra=extra) + file_sink("out.ndjson")
        a = kafka_spoke(c, conns)
        b = kafka_spoke(c, conns)
        try:
            wait_for(lambda: metric(a, "src", "assigned_partitions") == 2 and
                     metric(b, "src", "assigned_partitions") == 2, TIMEOUT,
                     "partitions split 2/2 (now %s, %s)"
                     % (metric(a, "src", "assigned_partitions"),
                        metric(b, "src", "assigned_partitions")))
            outa, outb = os.path.join(a.tmp, "out.ndjson"), os.path.join(b.tmp, "out.ndjson")
            per = 5000
            produce_ids(c, "in", parts, per, make=lambda i, p, j: {"value": '{"id":%d}' % i})
            wait_for(lambda: len(ids_of(outa) + ids_of(outb)) >= parts * per, TIMEOUT,
                     "the first %d records" % (parts * per))
            pa = {i // per for i in ids_of(outa)}
            pb = {i // per for i in ids_of(outb)}
            assert len(pa) == 2 and len(pb) == 2 and not pa & pb, \
                "partitions not split: a has %r, b has %r" % (pa, pb)
            wait_committed(c, "g", "in")
            a.kill()
            produce_ids(c, "in", parts, per, start=100000,
                        make=lambda i, p, j: {"value": '{"id":%d}' % i})
            wait_for(lambda: metric(b, "src", "assigned_partitions") == 4, TIMEOUT,
                     "the survivor to take all 4 partitions")
            want = set(range(parts * per)) | set(range(100000, 100000 + parts * per))
            wait_for(lambda: want <= set(ids_of(outa) + ids_of(outb)), TIMEOUT,
                     "every record in the union of the outputs")
            wait_committed(c, "g", "in")
            got = ids_of(outa) + ids_of(outb)
            assert set(got) == want
            assert {(i - 100000) // per for i in ids_of(outb) if i >= 100000} == set(range(4))
            assert sum(got.values()) == len(want), "duplicates: the killed member had " \
                "committed everything, so none were expected (%d)" % (sum(got.values()) - len(want))
            rc = b.stop()
            assert rc == 0
            return b
        finally:
            for sp in (a, b):
                if sp.alive():
                    sp.kill()


def test_member_joins_mid_backlog_nothing_lost():
    """A second spoke joins the group while the first is reading a backlog
    of 640,000 records, its sink holding it back (paused until the group
    has told the first member to give partitions up): with eager
    rebalancing (librdkafka's default) every partition is revoked
    mid-backlog, with records consumed but not delivered, and shared out
    again. Sampled throughout, the group never has an offset past a record
    that was not delivered; in the end every record was delivered at least
    once and the offsets reach the end."""
    _member_joins_mid_backlog("")


def test_member_joins_mid_backlog_nothing_lost_cooperative():
    """The same with cooperative-sticky (incremental) rebalancing: only the
    partitions that move are revoked; the first member keeps reading the
    others."""
    _member_joins_mid_backlog("    kafka.partition.assignment.strategy: cooperative-sticky\n")


class _Delivered:
    """The ids of the records appended to some file_sink outputs, read
    incrementally (only complete lines), and per partition of a topic
    filled by produce_ids the first offset not delivered yet."""

    def __init__(self, paths, parts, per):
        self.pos = {path: 0 for path in paths}
        self.ids = collections.Counter()
        self.per = per
        self.upto = [0] * parts

    def update(self):
        for path in self.pos:
            try:
                with open(path, "rb") as f:
                    f.seek(self.pos[path])
                    data = f.read()
            except FileNotFoundError:
                continue
            n = data.rfind(b"\n") + 1
            self.pos[path] += n
            for line in data[:n].split(b"\n")[:-1]:
                self.ids[json.loads(line)["id"]] += 1
        for p, off in enumerate(self.upto):
            while off < self.per and p * self.per + off in self.ids:
                off += 1
            self.upto[p] = off
        return self


def _member_joins_mid_backlog(extra):
    import resttest
    parts, per = 16, 40000
    total = parts * per
    with start_cluster(1, {"in": parts}) as c:
        produce_ids(c, "in", parts, per, make=lambda i, p, j: {"value": '{"id":%d}' % i})
        # Commits after every poll. A host queue much larger than a poll:
        # the source reads ahead of the sink.
        conns = (source(["in"], extra=extra + "    commit.interval.ms: 0\n") +
                 file_sink("out.ndjson", extra="    queue.capacity: 20000\n"
                                               "    batch.max: 1000\n"))
        # The first member logs librdkafka's group debug lines: they show
        # when the group has asked it to give partitions up.
        a = Spoke("connectors:\n" + conns.replace("    commit.interval.ms: 0\n",
                                                  "    commit.interval.ms: 0\n"
                                                  "    kafka.debug: cgrp\n"),
                  extra_worker={"kafka.bootstrap.servers": c.bootstrap, "log.level": "debug"})
        b = None
        try:
            api = resttest.Api(a)
            outa = os.path.join(a.tmp, "out.ndjson")
            a.wait_for(lambda: count_lines(outa) >= total // 20, TIMEOUT,
                       "the first member to read part of the backlog")
            seen = _Delivered([outa], parts, per)
            last = {}

            def check():
                # The offsets first, then the outputs: a record counted as
                # delivered here was written before the offsets were read.
                committed = committed_offsets(c.bootstrap, "g", "in")
                last.clear()
                last.update(committed)
                seen.update()
                for p, off in committed.items():
                    assert off is None or off <= seen.upto[p], "the group committed in/%d " \
                        "up to offset %d, but offset %d was not delivered" % (p, off,
                                                                              seen.upto[p])
                return committed

            # The sink stops taking records: the source fills its queue and
            # blocks in emit, most of the backlog still unread.
            resttest.expect(api.call("PUT", "/connectors/out/pause"), 202)

            def blocked():
                check()
                m = a.connector("out").get("metrics") or {}
                return m.get("queue_depth") == m.get("queue_capacity")
            a.wait_for(blocked, TIMEOUT, "the first member's sink queue to fill")
            b = kafka_spoke(c, conns)
            outb = os.path.join(b.tmp, "out.ndjson")
            seen.pos[outb] = 0
            a.wait_for(lambda: check() is not None and re.search(
                r"delegating (incremental )?revoke of", a.log()), TIMEOUT,
                "the group to ask the first member for partitions")
            resttest.expect(api.call("PUT", "/connectors/out/resume"), 202)
            # Once the group's offsets reach the end, every record before
            # them must have been delivered.
            end = {p: per for p in range(parts)}
            wait_for(lambda: check() == end, 120, lambda: "the group's offsets to reach the "
                     "end %r (now %r)" % (end, last), interval=0.1)
            lost = [i for i in range(total) if not seen.update().ids[i]]
            assert not lost, "%d records never delivered, e.g. %r (partition, offset)" % (
                len(lost), [divmod(i, per) for i in lost[:5]])
            got_a, got_b = ids_of(outa), ids_of(outb)
            assert got_b and len(got_a) < total, "no partition moved mid-backlog: the first " \
                "member delivered %d records, the second %d" % (len(got_a), len(got_b))
            assert (metric(a, "src", "rebalances") or 0) >= 2, metric(a, "src", "rebalances")
            got = got_a + got_b
            print("member joined mid-backlog: first %d records, second %d, duplicates %d" % (
                len(got_a), len(got_b), sum(got.values()) - total))
            for sp in (a, b):
                assert sp.stop() == 0
        finally:
            for sp in (a, b):
                if sp is not None and sp.alive():
                    sp.kill()


if __name__ == "__main__":
    spoketest.main(globals())
