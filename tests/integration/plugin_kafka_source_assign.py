#!/usr/bin/env python3
"""plugin-kafka_source_assign: kafka_source with consumer.mode=assign (no
consumer group: every partition is read and consumption resumes from the
host's offset store) against librdkafka's mock cluster, with kcat writing
the input and tests/kafka/groupoffsets reading the cluster's offsets.

Covered: every partition read, every record exactly once to a file_sink,
the host's offsets equal to the end offsets, nothing committed to Kafka
(not even for a group.id the worker section sets); kill -9 twice mid-run:
each restart resumes exactly at the host's committed positions (0 lost,
the duplicates are exactly the records written past them, each window
bounded); topics matching source.topics.regex and partitions created
while running are picked up at the next metadata refresh; brokers down at
start and mid-run: `retrying` with the reason, then everything delivered;
group.id with assign mode and an unknown consumer.mode are refused by
spoke validate; a group mode without group.id joins spoke-<connector name>;
over REST, a stopped assign-mode source is rewound by PATCHing its offsets
(partitions it does not read refused), and a group-mode one refuses offset
changes with the way to make them in Kafka.
"""
import json
import os
import time

import spoketest
from kafkatest import committed_offsets, end_offsets, kcat_produce, start_cluster
from plugin_kafka_source import (file_sink, ids_of, kafka_spoke, produce_ids,
                                 stop_and_count_duplicates, stop_with_brokers_down,
                                 kill_test_spoke, KILL_PARTS, KILL_PER, KILL_QCAP,
                                 KILL_BATCH, KILL_PBATCH)
from resttest import Api
from spoketest import Spoke, count_lines, metric, q, read_bytes, wait_for

TIMEOUT = 60


def assign_source(ktopics=None, regex=None, topic="recs", name="src", extra=""):
    text = ("  - name: %s\n"
            "    connector.class: kafka_source\n"
            "    topic: %s\n"
            "    consumer.mode: assign\n" % (name, topic))
    if ktopics is not None:
        text += "    source.topics: %s\n" % spoketest.yaml_scalar(ktopics)
    if regex is not None:
        text += "    source.topics.regex: %s\n" % q(regex)
    return text + extra


def host_offsets(s, name="src"):
    """{kafka partition: position} the host committed for connector name
    ("<topic>/<p>" -> offset + 1 of the last delivered message)."""
    return {k: v for k, v in (s.offsets().get(name) or {}).items()}


def wait_host_offsets(s, topic, end, name="src"):
    """Waits until the host committed every partition of topic up to end."""
    want = {"%s/%d" % (topic, p): o for p, o in end.items() if o > 0}

    def now():
        return {k: v for k, v in host_offsets(s, name).items() if k.startswith(topic + "/")}
    wait_for(lambda: now() == want, TIMEOUT,
             "the host's offsets %s to reach the end %s" % (now(), want), interval=0.1)


# ---------------------------------------------------------------------------

def test_every_partition_exactly_once_without_a_group():
    """4 partitions x 5,000: every record once, from every partition; the
    host's offsets reach the end offsets; the group the worker section
    names (kafka.group.id, which assign mode must not use) has nothing
    committed. A graceful restart reads only what was produced since."""
    parts, per = 4, 5000
    with start_cluster(1, {"in": parts}) as c:
        produce_ids(c, "in", parts, per)
        conns = assign_source(["in"]) + file_sink("out.ndjson")
        worker_group = "worker-group"
        with Spoke("connectors:\n" + conns, extra_worker={
                "kafka.bootstrap.servers": c.bootstrap, "kafka.group.id": worker_group}) as s:
            out = os.path.join(s.tmp, "out.ndjson")
            wait_for(lambda: count_lines(out) >= parts * per, TIMEOUT,
                     "%d records (now %d)" % (parts * per, count_lines(out)))
            end = end_offsets(c.bootstrap, "in")
            wait_host_offsets(s, "in", end)
            # status.json is written once a second: wait for the write that
            # follows the last message (it carries every metric up to then).
            wait_for(lambda: metric(s, "src", "messages") == parts * per, TIMEOUT,
                     "status.json to count %d messages (now %r)" % (
                         parts * per, metric(s, "src", "messages")))
            assert metric(s, "src", "assigned_partitions") == parts
            assert metric(s, "src", "commits") is None, "assign mode committed to Kafka"
            ids = ids_of(out)
            assert len(ids) == parts * per and set(ids.values()) == {1}, \
                "not exactly once: %d distinct, %d duplicated" % (
                    len(ids), sum(1 for v in ids.values() if v > 1))
            assert {i // per for i in ids} == set(range(parts))
            log = s.log()
            assert "assign mode (no consumer group)" in log
            assert "kafka: consuming 4 more partition(s) without a consumer group " \
                "(0 from the host's offset store, 4 at auto.offset.reset)" in log, log[-2000:]
        assert committed_offsets(c.bootstrap, worker_group, "in") == {p: None for p in
                                                                      range(parts)}, \
            "offsets were committed to Kafka"

        # Restart: resumes at the host's offsets, so only the new records.
        produce_ids(c, "in", parts, 25, start=100000)
        with kafka_spoke(c, conns, tmp=s.tmp) as s2:
            wait_for(lambda: count_lines(out) >= parts * per + 100, TIMEOUT, "the 100 new records")
            wait_host_offsets(s2, "in", end_offsets(c.bootstrap, "in"))
            wait_for(lambda: metric(s2, "src", "messages") == 100, TIMEOUT, "messages == 100")
            assert "(4 from the host's offset store, 0 at auto.offset.reset)" in s2.log()
        ids = ids_of(out)
        assert len(ids) == parts * per + 100 and set(ids.values()) == {1}, \
            "records delivered again after a graceful restart"
        assert committed_offsets(c.bootstrap, worker_group, "in") == {p: None for p in
                                                                      range(parts)}


def test_kill9_resumes_from_the_host_offsets():
    """200,000 messages; spoke is killed (SIGKILL) twice mid-run and
    restarted. Nothing is lost; a record is delivered again only when it
    was written at or past the host's committed position of its partition
    at the kill (state.dir/offsets.json, which the restart resumes from), so
    the duplicates equal those windows. A window holds what was in flight
    downstream (2 x (queue.capacity + batch.max + 256 + poll.batch.max))
    plus what was acknowledged since the last offset flush
    (offset.flush.interval.ms 100: bounded with the run's own rate)."""
    parts, per = KILL_PARTS, KILL_PER
    inflight = 2 * (KILL_QCAP + KILL_BATCH + 256 + KILL_PBATCH)
    with start_cluster(1, {"in": parts}) as c:
        s, out = kill_test_spoke(c, assign_source(["in"], extra="    poll.batch.max: %d\n"
                                                                % KILL_PBATCH))
        windows = []
        try:
            seg_start = 0
            t0 = time.monotonic()
            for k in range(2):
                # Killed once this run's offsets were flushed at least once
                # (so the bound below is about the flush interval, not
                # about how soon the first flush comes).
                prev = sum(host_offsets(s).values())
                wait_for(lambda: sum(host_offsets(s).values()) >= prev + 10000, TIMEOUT,
                         "the host's offsets to move before kill %d (%r)"
                         % (k + 1, host_offsets(s)), interval=0.005)
                s.kill()
                took = time.monotonic() - t0
                stored = host_offsets(s)
                data = read_bytes(out)
                segment = data[seg_start:]
                seg_start = len(data)
                window = lines = 0
                for line in segment.split(b"\n"):
                    try:
                        i = json.loads(line)["id"]
                    except (ValueError, KeyError, TypeError):
                        continue  # a line cut by the kill
                    lines += 1
                    p, off = divmod(i, per)
                    if off >= stored.get("in/%d" % p, 0):
                        window += 1
                windows.append(window)
                # Records per 100 ms flush interval at this run's rate (x3: a
                # flush may lag behind its interval).
                unflushed = 3 * lines / max(took, 0.1) * 0.1
                assert window <= inflight + unflushed, "kill %d: %d records past the host's " \
                    "offsets %r (bound %d + %d)" % (k + 1, window, stored, inflight, unflushed)
                s.start()
                t0 = time.monotonic()
            dups = stop_and_count_duplicates(
                s, out, parts * per,
                lambda: wait_host_offsets(s, "in", end_offsets(c.bootstrap, "in")))
        except BaseException:
            if s.alive():
                s.kill()
            raise
        print("kill -9 x2 (assign mode): windows past the host's offsets %r, duplicates %d"
              % (windows, dups))
        assert dups == sum(windows), "duplicates %d != records past the host's offsets at the " \
            "kills %r" % (dups, windows)


def test_regex_topics_and_partitions_created_while_running():
    """source.topics.regex in assign mode: matching topics (whole names)
    and partitions created after the start are read at the next metadata
    refresh (kafka.topic.metadata.refresh.interval.ms), from the beginning;
    other topics are not."""
    with start_cluster(1, {"ev.a": 2, "other": 1}) as c:
        kcat_produce(c.bootstrap, "ev.a", [{"value": "a%d" % i, "partition": i % 2}
                                           for i in range(20)])
        kcat_produce(c.bootstrap, "other", [{"value": "o%d" % i} for i in range(5)])
        conns = (assign_source(regex=r"ev\.[a-z]+", extra="    value.format: bytes\n"
                               "    kafka.topic.metadata.refresh.interval.ms: \"500\"\n")
                 + file_sink("out.ndjson"))
        with kafka_spoke(c, conns) as s:
            out = os.path.join(s.tmp, "out.ndjson")
            wait_for(lambda: count_lines(out) >= 20, TIMEOUT, "the 20 records of ev.a")
            c.create_topic("ev.b", 3)
            c.create_topic("evxb", 1)
            kcat_produce(c.bootstrap, "ev.b", [{"value": "b%d" % i, "partition": i % 3}
                                               for i in range(30)])
            kcat_produce(c.bootstrap, "evxb", [{"value": "x%d" % i} for i in range(5)])
            wait_for(lambda: count_lines(out) >= 50, TIMEOUT,
                     "the 30 records of ev.b, created while running (now %d)" % count_lines(out))
            wait_for(lambda: metric(s, "src", "assigned_partitions") == 5, TIMEOUT,
                     "5 partitions consumed")
            wait_host_offsets(s, "ev.b", end_offsets(c.bootstrap, "ev.b"))
            got = sorted(read_bytes(out).split(b"\n")[:-1])
            want = sorted([("a%d" % i).encode() for i in range(20)]
                          + [("b%d" % i).encode() for i in range(30)])
            assert got == want, "unexpected records: %r" % (set(got) ^ set(want))
            assert not any(k.startswith("other/") or k.startswith("evxb/")
                           for k in host_offsets(s)), host_offsets(s)


def test_brokers_down_at_start_and_mid_run():
    """Brokers unreachable at start: RUNNING with `retrying` and the Kafka
    reason, then every record once they answer; down again mid-run:
    retrying, and what was produced meanwhile arrives after they return.
    Stopping with the brokers down is bounded."""
    with start_cluster(1, {"in": 2}) as c:
        produce_ids(c, "in", 2, 50)
        c.cmd("down all")
        # librdkafka's reconnect backoff grows to reconnect.backoff.max.ms
        # (10 s by default) while the brokers refuse connections.
        conns = (assign_source(["in"], extra="    kafka.reconnect.backoff.max.ms: \"500\"\n")
                 + file_sink("out.ndjson"))
        s = kafka_spoke(c, conns)
        try:
            out = os.path.join(s.tmp, "out.ndjson")
            wait_for(lambda: s.connector("src").get("retrying") and "kafka: " in
                     (s.connector("src").get("trace") or ""), TIMEOUT,
                     "retrying with the brokers down at start (now %r)" % s.connector("src"))
            assert s.connector("src").get("state") == "RUNNING"
            c.cmd("up all")
            wait_for(lambda: len(ids_of(out)) == 100, TIMEOUT, "the 100 records once the "
                     "brokers answer")
            wait_for(lambda: not s.connector("src").get("retrying"), TIMEOUT, "retrying to clear")
            c.cmd("down all")
            wait_for(lambda: s.connector("src").get("retrying") and "kafka: all brokers down"
                     in (s.connector("src").get("trace") or ""), TIMEOUT,
                     "retrying with 'kafka: all brokers down' (now %r)" % s.connector("src"))
            # Back, but answering every request 300 ms late: longer than the
            # source's 200 ms probe waits, as when the probe's reply queues
            # behind a fetch waiting fetch.wait.max.ms on the same
            # connection. A late answer still means the brokers are back.
            c.cmd("rtt all 300")
            c.cmd("up all")
            produce_ids(c, "in", 2, 50, start=1000)
            wait_for(lambda: len(ids_of(out)) == 200, TIMEOUT, lambda: "the 100 records "
                     "produced after the outage (%d, source %r)" % (len(ids_of(out)),
                                                                   s.connector("src")))
            wait_host_offsets(s, "in", end_offsets(c.bootstrap, "in"))
            wait_for(lambda: not s.connector("src").get("retrying"), TIMEOUT, "retrying to clear")
            c.cmd("rtt all 0")
            assert sum(ids_of(out).values()) == 200, "duplicates after the outage"
            stop_with_brokers_down(c, s, "the third outage")
        finally:
            if s.alive():
                s.kill()


def test_config_errors_and_the_default_group():
    """group.id with consumer.mode assign is refused by spoke validate with
    a clear reason (a rule between keys: the plugin's check; the lines and
    spoke run are covered in plugin_kafka_source.py); an unknown
    consumer.mode is refused by spoke validate; group mode without group.id
    joins spoke-<connector name> and commits there."""
    r = spoketest.validate("connectors:\n" + assign_source(["in"], extra="    consumer.mode: x\n")
                           .replace("    consumer.mode: assign\n", ""))
    assert r.returncode == 1 and "consumer.mode" in r.stderr, \
        "consumer.mode x accepted: %r" % r.stderr
    r = spoketest.validate("connectors:\n" + assign_source(["in"], name="withgroup",
                                                           extra="    group.id: g\n"))
    assert r.returncode == 1 and "group.id cannot be set with consumer.mode assign" in r.stderr, \
        "group.id with assign accepted: %r" % r.stderr
    with start_cluster(1, {"in": 1}) as c:
        produce_ids(c, "in", 1, 20)
        conns = ("  - name: nogroup\n    connector.class: kafka_source\n    topic: recs\n"
                 "    source.topics: in\n"
                 + file_sink("out.ndjson"))
        with kafka_spoke(c, conns) as s:
            s.wait_state("out", "RUNNING")
            s.wait_state("nogroup", "RUNNING")
            wait_for(lambda: committed_offsets(c.bootstrap, "spoke-nogroup", "in") == {0: 20},
                     TIMEOUT, "the 20 records committed in group spoke-nogroup")
            assert len(ids_of(os.path.join(s.tmp, "out.ndjson"))) == 20


def test_rest_offsets_change_assign_and_group():
    """Over REST, with the connectors stopped: an assign-mode source's
    offsets are its resume points, so a PATCH rewinds it (partition 0 back
    to offset 5: its records 5..9 come again, nothing else), and partitions
    it does not read are refused; a group-mode source resumes from its
    group's offsets in Kafka, so PATCH and DELETE are refused with the way
    to move them, and nothing changes."""
    with start_cluster(1, {"in": 2}) as c:
        produce_ids(c, "in", 2, 10)
        conns = (assign_source(["in"]) + file_sink("out.ndjson")
                 + "  - name: grp\n    connector.class: kafka_source\n    topic: grecs\n"
                   "    source.topics: in\n    group.id: g2\n"
                 + file_sink("gout.ndjson", topics="grecs", name="gout"))
        with kafka_spoke(c, conns) as s:
            api = Api(s)
            out = os.path.join(s.tmp, "out.ndjson")
            wait_for(lambda: count_lines(out) == 20, TIMEOUT, "the 20 records")
            wait_host_offsets(s, "in", end_offsets(c.bootstrap, "in"))
            wait_for(lambda: committed_offsets(c.bootstrap, "g2", "in") == {0: 10, 1: 10},
                     TIMEOUT, "group g2 committed")
            for name in ("src", "grp"):
                assert api.call("PUT", "/connectors/%s/stop" % name).status == 204
                s.wait_state(name, "STOPPED")
            before = s.offsets()

            def patch(name, part, off):
                return api.call("PATCH", "/connectors/%s/offsets" % name, {"offsets": [
                    {"partition": {"partition": part}, "offset": {"offset": off}}]})
            r = patch("grp", "in/0", 0)
            assert r.status == 400 and r.json["message"] == (
                "consumer group 'g2' in Kafka holds where grp resumes (consumer.mode group), not "
                "Spoke's offset store: move it with kafka-consumer-groups --reset-offsets --group "
                "g2 while grp is stopped, or use consumer.mode assign"), r
            r = api.call("DELETE", "/connectors/grp/offsets")
            assert r.status == 400 and "consumer group 'g2'" in r.json["message"], r
            assert api.call("GET", "/connectors/grp/offsets").status == 200
            for part, why in (("in", "is not <topic>/<partition number>"),
                              ("in/x", "is not <topic>/<partition number>"),
                              ("other/0", "does not read topic 'other'")):
                r = patch("src", part, 0)
                assert r.status == 400 and why in r.json["message"], (part, r)
            assert s.offsets() == before, "a refused change changed the offsets"

            r = patch("src", "in/0", 5)
            assert r.status == 200, r
            assert host_offsets(s)["in/0"] == 5
            assert api.call("PUT", "/connectors/src/resume").status == 202
            wait_for(lambda: count_lines(out) == 25, TIMEOUT, "partition 0's records 5..9 again")
            wait_host_offsets(s, "in", end_offsets(c.bootstrap, "in"))
            ids = ids_of(out)
            assert sorted(i for i, n in ids.items() if n == 2) == list(range(5, 10)), ids
            assert set(ids) == set(range(20))
        assert committed_offsets(c.bootstrap, "g2", "in") == {0: 10, 1: 10}


if __name__ == "__main__":
    spoketest.main(globals())
