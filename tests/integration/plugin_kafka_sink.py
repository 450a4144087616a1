#!/usr/bin/env python3
"""plugin-kafka_sink: kafka_sink against the real Kafka wire protocol
(librdkafka's mock cluster), checked with kcat, an independent client.

- 100,000 records through the sink: kcat reads back exactly N, with keys,
  headers and values intact, and the source offset reaches the end of the
  file only because every message was confirmed.
- key.field takes the key from the value.
- A message the broker refuses for good (over message.max.bytes) takes the
  error path (dead-letter topic) with the reason; the others are delivered.
- Brokers down: the connector shows `retrying` with a Kafka reason, nothing
  is acknowledged meanwhile, and everything arrives once they are back.
- Connector configs may not set code/file-loading librdkafka properties or
  properties outside the allow-list; the worker section may.
- The plugin's check refuses, before anything runs (spoke validate, spoke
  run, REST), topic.create without target.topic and librdkafka values that
  librdkafka refuses, at the key's line.
"""
import json
import os

import kafkatest
import spoketest
from resttest import Api
from spoketest import Spoke, main, metric, wait_for

N = 100000


def write_records(path, n, start=0, big_every=0):
    with open(path, "w") as f:
        for i in range(start, start + n):
            v = {"seq": i, "station": "s%d" % (i % 1470), "bikes": i % 31}
            if big_every and i % big_every == 0:
                v["pad"] = "x" * 3000
            f.write(json.dumps(v, separators=(",", ":")) + "\n")


def validate(text):
    """`spoke validate` on a complete file (the worker section included)."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="spoke-validate-") as tmp:
        path = os.path.join(tmp, "connectors.yaml")
        with open(path, "w") as f:
            f.write(text.replace("@STATE@", os.path.join(tmp, "state")))
        return spoketest.run_spoke("validate", "-c", path)


def test_100k_records_with_keys_headers_values():
    with kafkatest.start_cluster(topics={"out": 4}) as cl, \
            Spoke("", start=False, extra_worker={"kafka.bootstrap.servers": cl.bootstrap}) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_records(inp, N)
        # echo_transform adds the header echo=spoke-test to every record.
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: raw
    file: %s
  - name: tag
    connector.class: echo_transform
    topics: raw
    topic: tagged
    header.value: spoke-test
  - name: out
    connector.class: kafka_sink
    topics: tagged
    target.topic: out
    key.field: station
""" % inp)
        sp.start()
        size = os.path.getsize(inp)
        wait_for(lambda: sp.offsets().get("src", {}).get(inp) == size, 120,
                 "every record confirmed by Kafka (offsets at the end of the file)")
        wait_for(lambda: metric(sp, "out", "delivered") == N, 20, "delivered == N in the status")
        got = kafkatest.kcat_consume(cl.bootstrap, "out", N, timeout=120)
        assert len(got) == N, len(got)
        seen = set()
        for m in got:
            v = json.loads(m["value"])
            assert m["key"] == "s%d" % (v["seq"] % 1470), m
            assert ("echo", "spoke-test") in m["headers"], m
            assert v["bikes"] == v["seq"] % 31, m
            seen.add(v["seq"])
        assert seen == set(range(N)), "missing %d" % (N - len(seen))
        # Same key -> same partition (the key really is the message key).
        part = {}
        for m in got:
            assert part.setdefault(m["key"], m["partition"]) == m["partition"], m
        assert len(set(part.values())) > 1


def test_record_key_and_topic_by_default():
    with kafkatest.start_cluster(topics={"keyed": 2}) as cl, \
            Spoke("", start=False, extra_worker={"kafka.bootstrap.servers": cl.bootstrap}) as sp:
        sp.write_config("""
connectors:
  - name: out
    connector.class: kafka_sink
    topics: keyed
""")
        sp.start()
        sp.wait_state("out", "RUNNING")
        # A REST-created file_source feeds the in-memory topic `keyed`; the
        # sink produces to the Kafka topic of the same name, keyless.
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_records(inp, 500)
        r = Api(sp).call("PUT", "/connectors/src/config",
                         body={"connector.class": "file_source", "topic": "keyed", "file": inp})
        assert r.status == 201, r
        got = kafkatest.kcat_consume(cl.bootstrap, "keyed", 500, timeout=60)
        assert sorted(json.loads(m["value"])["seq"] for m in got) == list(range(500))
        assert all(m["key"] is None for m in got)


def test_rejected_message_takes_the_error_path():
    with kafkatest.start_cluster(topics={"small": 1}) as cl, \
            Spoke("", start=False, extra_worker={"kafka.bootstrap.servers": cl.bootstrap}) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        dlq = os.path.join(sp.tmp, "dlq.ndjson")
        write_records(inp, 2000, big_every=100)  # 20 records of ~3 KB
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: raw
    file: %s
  - name: out
    connector.class: kafka_sink
    topics: raw
    target.topic: small
    kafka.message.max.bytes: "2000"
    errors.tolerance: all
    errors.deadletterqueue.topic.name: raw.dlq
  - name: dlq
    connector.class: file_sink
    topics: raw.dlq
    file: %s
""" % (inp, dlq))
        sp.start()
        size = os.path.getsize(inp)
        wait_for(lambda: sp.offsets().get("src", {}).get(inp) == size, 60, "offsets at the end")
        wait_for(lambda: spoketest.count_lines(dlq) == 20, 20, "20 refused records dead-lettered")
        wait_for(lambda: sp.connector("out")["metrics"]["dead_lettered"] == 20, 20,
                 "dead_lettered == 20 in the status")
        st = sp.connector("out")
        assert st["state"] == "RUNNING", st
        assert st["metrics"]["dead_lettered"] == 20, st
        assert "too large" in sp.log().lower() or "MSG_SIZE_TOO_LARGE" in sp.log(), sp.log()[-2000:]
        got = kafkatest.kcat_consume(cl.bootstrap, "small", 1980, timeout=60)
        seqs = sorted(json.loads(m["value"])["seq"] for m in got)
        assert seqs == [i for i in range(2000) if i % 100], len(seqs)
    with open(dlq) as f:
        assert [json.loads(l)["seq"] for l in f] == list(range(0, 2000, 100))


def test_delivery_failure_reported_by_the_broker_takes_the_error_path():
    """The broker fails two Produce requests with a permanent error: the
    messages they carried fail in their delivery reports (after put()
    returned), are reported with sink_record_failed and dead-lettered; every
    other record is in Kafka; none is in both, none is lost. Pipelined (the
    default: deliveries settle record by record while the next batches are
    produced)."""
    delivery_failures_take_the_error_path("")


def test_delivery_failure_without_pipelining_takes_the_error_path():
    """The same with pending.max.messages=0: flush() waits for each batch."""
    delivery_failures_take_the_error_path("    pending.max.messages: 0\n")


def delivery_failures_take_the_error_path(extra):
    with kafkatest.start_cluster(topics={"out": 1}) as cl, \
            Spoke("", start=False, extra_worker={"kafka.bootstrap.servers": cl.bootstrap}) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        dlq = os.path.join(sp.tmp, "dlq.ndjson")
        write_records(inp, 3000)
        cl.cmd("error 0 10 2")  # Produce (api key 0) -> MESSAGE_TOO_LARGE, twice
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: raw
    file: %s
  - name: out
    connector.class: kafka_sink
    topics: raw
    target.topic: out
    errors.tolerance: all
    errors.deadletterqueue.topic.name: raw.dlq
    batch.max: 256
%s  - name: dlq
    connector.class: file_sink
    topics: raw.dlq
    file: %s
""" % (inp, extra, dlq))
        sp.start()
        size = os.path.getsize(inp)
        wait_for(lambda: sp.offsets().get("src", {}).get(inp) == size, 60, "offsets at the end")
        with open(dlq) as f:
            failed = [json.loads(l)["seq"] for l in f]
        assert failed, "no delivery failed: the injected errors did not reach the sink"
        assert "MSG_SIZE_TOO_LARGE" in sp.log(), sp.log()[-3000:]
        got = kafkatest.kcat_consume(cl.bootstrap, "out")
        ok = [json.loads(m["value"])["seq"] for m in got]
        assert not set(ok) & set(failed)
        assert sorted(ok + failed) == list(range(3000)), (len(ok), len(failed))
        wait_for(lambda: sp.connector("out")["metrics"]["dead_lettered"] == len(failed), 20,
                 "dead_lettered == the failed deliveries")
        assert sp.connector("out")["state"] == "RUNNING"


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_brokers_down_retrying_then_everything_arrives():
    with kafkatest.start_cluster(topics={"out": 2}) as cl, \
            Spoke("", start=False, extra_worker={"kafka.bootstrap.servers": cl.bootstrap}) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_records(inp, 1000)
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: raw
    file: %s
    poll.interval.ms: 50
  - name: out
    connector.class: kafka_sink
    topics: raw
    target.topic: out
    flush.timeout.ms: 500
    errors.retry.delay.max.ms: 500
""" % inp)
        sp.start()
        size1 = os.path.getsize(inp)
        wait_for(lambda: sp.offsets().get("src", {}).get(inp) == size1, 60, "first records in")
        cl.cmd("down all")
        write_records(inp + ".more", 5000, start=1000)
        with open(inp, "a") as f, open(inp + ".more") as g:
            f.write(g.read())

        def retrying():
            c = sp.connector("out")
            return c if c.get("retrying") else None
        st = wait_for(retrying, 60, "the sink to show retrying while the brokers are down")
        assert "awaiting delivery" in st["trace"], st
        rss = [rss_kb(sp.proc.pid)]
        # Nothing is acknowledged while Kafka has nothing.
        assert sp.offsets().get("src", {}).get(inp) == size1
        rss.append(rss_kb(sp.proc.pid))
        cl.cmd("up all")
        size2 = os.path.getsize(inp)
        wait_for(lambda: sp.offsets().get("src", {}).get(inp) == size2, 120,
                 "everything confirmed after the brokers came back")
        wait_for(lambda: not sp.connector("out").get("retrying"), 30, "retrying cleared")
        got = kafkatest.kcat_consume(cl.bootstrap, "out", 6000, timeout=60)
        seqs = sorted(json.loads(m["value"])["seq"] for m in got)
        assert set(seqs) == set(range(6000)), len(set(seqs))
        assert max(rss) < 200 * 1024, rss


def test_config_allow_list():
    with kafkatest.start_cluster() as cl:
        base = """
worker:
  plugin.path: [%s]
  state.dir: @STATE@
  kafka.bootstrap.servers: %s
  kafka.ssl.ca.location: /etc/ssl/certs/ca-certificates.crt
connectors:
  - name: out
    connector.class: kafka_sink
    topics: t
""" % (spoketest.PLUGIN_DIR, cl.bootstrap)
        p = validate(base)
        assert p.returncode == 0, p.stdout + p.stderr
        for key, want in (("kafka.plugin.library.paths", "worker section"),
                          ("kafka.ssl.ca.location", "worker section"),
                          ("kafka.sasl.kerberos.kinit.cmd", "worker section"),
                          ("kafka.sasl.oauthbearer.token.endpoint.url", "worker section"),
                          ("kafka.enable.auto.commit", "allow-list"),
                          ("kafka.bogus.property", "allow-list")):
            p = validate(base + "    %s: x\n" % key)
            assert p.returncode != 0, key
            assert want in p.stdout + p.stderr, (key, p.stdout + p.stderr)
        # A librdkafka-level error in an allowed property is refused before
        # the connector runs (the plugin's check), naming it.
        p = validate(base + "    kafka.linger.ms: nope\n")
        assert p.returncode == 1 and "linger.ms" in p.stderr, p
        with Spoke("connectors: []\n",
                   extra_worker={"kafka.bootstrap.servers": cl.bootstrap}) as sp:
            api = Api(sp)
            api.wait_healthy()
            r = api.call("PUT", "/connectors/out/config",
                         body={"connector.class": "kafka_sink", "topics": "t",
                               "kafka.linger.ms": "nope"})
            assert r.status == 400 and "linger.ms" in r.json["message"], r
            assert api.get("/connectors").json == [], "a refused connector was created"
            r = api.call("PUT", "/connectors/k2/config",
                         body={"connector.class": "kafka_sink", "topics": "t",
                               "kafka.ssl.key.location": "/etc/shadow"})
            assert r.status == 400 and "worker section" in r.json["message"], r
            r = api.call("PUT", "/connectors/k3/config",
                         body={"connector.class": "kafka_sink", "topics": "t",
                               "kafka.sasl.password": "hunter2"})
            assert r.status == 201, r
            r = api.get("/connectors/k3/config")
            assert r.json["kafka.sasl.password"] != "hunter2", r
            r = api.get("/connectors/k3")
            assert "hunter2" not in r.raw.decode(), r
            assert "hunter2" not in sp.log()



def test_checks_between_keys_refuse_before_running():
    """The rules the config table cannot say (topic.create needs
    target.topic, a legal target topic name, no topic of 0 partitions or
    replicas; the values of the connector's librdkafka properties) are
    the plugin's check: a config that breaks one is refused before anything
    runs, no Kafka needed. `spoke validate` and `spoke run` exit 1 with the
    reason at the key's line; REST answers 400 and creates nothing,
    config/validate counts the error on the key. Several mistakes are
    reported together, each at its key."""
    import tempfile
    import resttest
    # (key named, extra lines, reason)
    cases = [("topic.create", "    topic.create: true\n", "topic.create needs target.topic"),
             ("kafka.linger.ms", "    kafka.linger.ms: abc\n",
              "librdkafka property 'linger.ms' (connector kafka.*): Invalid value"),
             ("kafka.compression.type", "    target.topic: out\n    kafka.compression.type: rar\n",
              "librdkafka property 'compression.type' (connector kafka.*): Invalid value"),
             ("target.topic", "    target.topic: \"bikes/paris\"\n",
              "target.topic: 'bikes/paris' is not a valid Kafka topic name"),
             ("topic.partitions", "    target.topic: out\n    topic.partitions: 0\n",
              "topic.partitions: 0 is not a count a topic can have"),
             ("topic.replication.factor", "    target.topic: out\n    topic.replication.factor: 0\n",
              "topic.replication.factor: 0 is not a count a topic can have")]
    spoketest.expect_checks_each_refuse(
        "  - name: out\n    connector.class: kafka_sink\n    topics: t\n", "out", cases,
        "    target.topic: out\n    topic.create: true\n    kafka.linger.ms: \"20\"\n"
        "    kafka.compression.type: zstd\n")
    resttest.expect_each_refused("kafka_sink", "out", {"connector.class": "kafka_sink",
                                                       "topics": "t"}, [
        ("topic.create", {"topic.create": "true"}, cases[0][2]),
        ("kafka.linger.ms", {"kafka.linger.ms": "abc"}, cases[1][2]),
        ("kafka.compression.type", {"kafka.compression.type": "rar"}, cases[2][2]),
        ("target.topic", {"target.topic": "bikes/paris"}, cases[3][2]),
        ("topic.partitions", {"target.topic": "out", "topic.partitions": "0"}, cases[4][2])])
    # Several at once, each at its key (both librdkafka properties too).
    many = [("target.topic", "bikes/paris", cases[3][2]), ("topic.partitions", 0, cases[4][2]),
            ("kafka.linger.ms", "abc", cases[1][2]),
            ("kafka.compression.type", "rar", cases[2][2])]
    with tempfile.TemporaryDirectory(prefix="spoke-check-") as tmp:
        spoketest.expect_checks_refuse(
            tmp, "  - name: out\n    connector.class: kafka_sink\n    topics: t\n" +
            "".join("    %s: %s\n" % (k, spoketest.yaml_scalar(v)) for k, v, _ in many),
            [("out", k, w) for k, _, w in many])
    sp, api = resttest.rest_spoke("connectors: []\n")
    with sp:
        resttest.expect_refused_all(api, "kafka_sink", "out", dict(
            {"connector.class": "kafka_sink", "topics": "t"}, **{k: str(v) for k, v, _ in many}),
            [(k, w) for k, _, w in many])


if __name__ == "__main__":
    main(globals())
