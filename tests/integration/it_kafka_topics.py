#!/usr/bin/env python3
"""it-kafka_topics: Kafka-backed topics (connectors.yaml `topics:` with
`backend: kafka`) against librdkafka's mock cluster, checked with kcat.

- examples/velib-kafka.yaml, the seed pipeline, end to end on the recorded
  Vélib' snapshot served over local HTTP: `velib-projet` holds the station
  records, `velib-projet-final-data` the per-postcode totals, equal to an
  independent computation from the same file.
- The host's bridges show in the status and refuse REST changes.
- A Kafka-backed topic is durable: what a source wrote while nobody read it
  is consumed by a reader started later, in another process run.
"""
import json
import os
import re

import it_velib_pipeline as velib
import kafkatest
import spoketest
from httpfixture import HttpFixture, Response
from resttest import Api
from spoketest import SOURCE_DIR, Spoke, count_lines, main, wait_for, write_seq

EXAMPLE = os.path.join(SOURCE_DIR, "examples", "velib-kafka.yaml")


def example_pipeline():
    """The example's `topics` and `connectors` sections (the worker section
    is the test's own), with the schema path made absolute."""
    text = open(EXAMPLE).read()
    body = text[text.index("\ntopics:") + 1:]
    return body.replace("schemas/velib_station_status.yaml",
                        spoketest.q(os.path.join(SOURCE_DIR, "schemas", "velib_station_status.yaml")))


def last_per_key(msgs, field):
    out = {}
    for m in msgs:
        v = json.loads(m["value"])
        out[v[field]] = v
    return out


def test_velib_kafka_example_end_to_end():
    velib.need_data()
    stations = {s["stationCode"]: s for s in velib.load_status("2024")["data"]["stations"]}
    want = velib.totals([stations["16107"], stations["32017"]], {"16107": "75016", "32017": "93200"})
    with kafkatest.start_cluster() as cl, HttpFixture() as srv:
        velib.serve(srv, "2024")
        os.environ["VELIB"] = "http://127.0.0.1:%d" % srv.port
        with Spoke(example_pipeline(), extra_worker={"kafka.bootstrap.servers": cl.bootstrap}) as sp:
            def final_ok():
                got = last_per_key(kafkatest.kcat_consume(cl.bootstrap, "velib-projet-final-data"),
                                   "postcode")
                ok = set(got) == set(want) and all(
                    got[pc][c] == want[pc][c] for pc in want for c in
                    ("total_bikes_available", "total_mechanical_bikes", "total_electric_bikes"))
                return got if ok else None
            got = wait_for(final_ok, 60, "velib-projet-final-data to hold the expected totals")
            # The station records went through Kafka, keyed by station code.
            recs = kafkatest.kcat_consume(cl.bootstrap, "velib-projet")
            assert sorted(m["key"] for m in recs) == ["16107", "32017"], recs
            for m in recs:
                assert json.loads(m["value"])["stationCode"] == m["key"], m
            # The console prints the same table.
            wait_for(lambda: all(" %s " % pc in sp.stdout_text() for pc in want), 30, "console")
            # The bridges the host made, RUNNING, and out of REST's reach.
            st = sp.status()["connectors"]
            for name in ("kafka-out.velib-projet", "kafka-in.stations.velib-projet",
                         "kafka-out.velib-projet-final-data",
                         "kafka-in.console.velib-projet-final-data"):
                assert st.get(name, {}).get("state") == "RUNNING", (name, sorted(st))
            api = Api(sp)
            r = api.call("DELETE", "/connectors/kafka-out.velib-projet")
            assert r.status == 409, r
            r = api.call("PUT", "/connectors/kafka-out.velib-projet/config",
                         body={"connector.class": "kafka_sink", "topics": "x"})
            assert r.status == 400 and "managed" in r.json["message"], r
            # The readers consumed in groups spoke-<connector>, and committed.
            last = {}

            def committed():
                c = kafkatest.committed_offsets(cl.bootstrap, "spoke-stations", "velib-projet")
                e = kafkatest.end_offsets(cl.bootstrap, "velib-projet")
                last.update(committed=c, end=e)
                # An empty partition has nothing to commit.
                return all(c.get(p) == n for p, n in e.items() if n > 0)
            try:
                wait_for(committed, 30, "group spoke-stations committed to the end of velib-projet")
            except AssertionError:
                raise AssertionError("committed %(committed)s, end offsets %(end)s" % last)
            assert got["75016"]["total_bikes_available"] == stations["16107"]["num_bikes_available"]


def test_kafka_topic_outlives_the_process_and_feeds_a_later_reader():
    with kafkatest.start_cluster(topics={"durable": 3}) as cl:
        extra = {"kafka.bootstrap.servers": cl.bootstrap}
        topics = "topics:\n  durable:\n    backend: kafka\n"
        with Spoke("", start=False, extra_worker=extra) as sp:
            inp = os.path.join(sp.tmp, "in.ndjson")
            out = os.path.join(sp.tmp, "out.ndjson")
            write_seq(inp, 20000)
            # Run 1: only the writer. Every record is acknowledged once Kafka has it.
            sp.write_config(topics + """
connectors:
  - name: src
    connector.class: file_source
    topic: durable
    file: %s
""" % inp)
            sp.start()
            size = os.path.getsize(inp)
            wait_for(lambda: sp.offsets().get("src", {}).get(inp) == size, 60,
                     "the source acknowledged by Kafka")
            assert "kafka-out.durable" in sp.status()["connectors"]
            sp.stop()
            assert len(kafkatest.kcat_consume(cl.bootstrap, "durable")) == 20000
            # Run 2: only a reader, added later; it gets everything from Kafka.
            sp.write_config(topics + """
connectors:
  - name: dst
    connector.class: file_sink
    topics: durable
    file: %s
""" % out)
            sp.start()
            wait_for(lambda: count_lines(out) >= 20000, 60, "the reader to get every record")
            with open(out) as f:
                seqs = [json.loads(l)["seq"] for l in f]
            assert sorted(set(seqs)) == list(range(20000)), len(set(seqs))
            st = sp.status()["connectors"]
            assert "kafka-out.durable" not in st, sorted(st)  # nobody writes it now
            assert st["kafka-in.dst.durable"]["state"] == "RUNNING", st


if __name__ == "__main__":
    main(globals())
