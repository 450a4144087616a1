#!/usr/bin/env python3
"""it-velib_pipeline: the Vélib' pipeline end to end, on the real recorded feeds.

The two real snapshots of ../shared/data/velib (2024-11-19: 1,485 stations;
2022-05: 1,439) are served with their station_information by a local HTTP
server (httpfixture) that switches between them at run time. The all-stations
pipeline runs on them:

    velib_source -> schema_mapper (real postcode table, lookup.missing: drop)
                 -> aggregator (group.by postcode, table semantics, entity.key
                    stationCode, count and sums of bikes) -> file_sink

and the per-postcode table it ends with is compared with an independent
computation in Python from the same files, after each switch: 2024, then
2022 ALONE (the 99 stations of 2024 that 2022 lacks are gone, through the
tombstones velib_source emits, schema_mapper forwards and the aggregator
applies; nothing accumulates across polls), then 2024 alone again.

The pipeline is examples/velib-all-stations.yaml as shipped (URLs, paths
and intervals aside). Its aggregator keeps event time (time.field:
last_reported, the rows' timestamp) with table.order: arrival: the latest
poll counts. With table.order: event a record older than what its station
already holds is stale by design, so going back to an older recording
would replace nothing; and in these two real recordings two stations
(15063, 18010) report a 2018 last_reported in 2024 against a 2022 one in
2022, so even 2022 -> 2024 would keep their 2022 bikes.

Last, the default two-station pipeline in examples/velib-offline.yaml's
exact shape, pointed at the fixture: 16107 -> 75016, 32017 -> 93200 with
the 2024 snapshot's numbers.
"""
import csv
import json
import os
import re
import tempfile

import spoketest
from httpfixture import HttpFixture, Response
from resttest import Api, sample
from spoketest import SOURCE_DIR, Skip, Spoke, metric, q, read_bytes, wait_for

TIMEOUT = 60
DATA = os.path.join(spoketest.SHARED_DATA, "velib")
SNAPSHOTS = {
    "2024": ("station_status-2024-11-19.json", "station_information-2024-11-19.json"),
    "2022": ("station_status-2022-05.json", "station_information-2022-05.json"),
}
POSTCODES = "stations_postcodes.csv"
SCHEMA = os.path.join(SOURCE_DIR, "schemas", "velib_station_status.yaml")
COLUMNS = ("stations", "total_bikes_available", "total_mechanical_bikes", "total_electric_bikes")


def need_data():
    names = [n for pair in SNAPSHOTS.values() for n in pair] + [POSTCODES]
    missing = [n for n in names if not os.path.exists(os.path.join(DATA, n))]
    if missing:
        raise Skip("the recorded Vélib' feeds are not in %s (missing: %s); this test serves "
                   "them over HTTP and cannot run without them" % (DATA, ", ".join(missing)))


# ---------------------------------------------------------------------------
# The independent computation, from the same files

def load_status(which):
    with open(os.path.join(DATA, SNAPSHOTS[which][0])) as f:
        return json.load(f)


def postcode_table():
    """stationCode -> postcode; an empty postcode is no entry (the mapper
    reads an empty CSV value as null, a miss, and drops the station)."""
    with open(os.path.join(DATA, POSTCODES), newline="") as f:
        return {r["stationCode"]: r["postcode"] for r in csv.DictReader(f) if r["postcode"]}


def totals(stations, postcode):
    """Per postcode, over the given stations that have one: station count and
    the sums of num_bikes_available, mechanical and ebike."""
    out = {}
    for s in stations:
        pc = postcode.get(s["stationCode"])
        if pc is None:
            continue
        types = {}
        for t in s["num_bikes_available_types"]:
            types.update(t)
        row = out.setdefault(pc, dict.fromkeys(COLUMNS, 0))
        row["stations"] += 1
        row["total_bikes_available"] += s["num_bikes_available"]
        row["total_mechanical_bikes"] += types["mechanical"]
        row["total_electric_bikes"] += types["ebike"]
    return out


def expected(which, postcode):
    return totals(load_status(which)["data"]["stations"], postcode)


# ---------------------------------------------------------------------------
# The pipeline's table, read back from file_sink

def read_rows(path):
    return [json.loads(line) for line in spoketest.complete_lines(path)]


def table(path, columns=COLUMNS):
    """Update mode: the latest row of each postcode is its current state; a
    postcode whose last station left was emitted once more with count 0 and
    null sums."""
    latest = {}
    for r in read_rows(path):
        latest[r["postcode"]] = r
    return {pc: {c: r[c] for c in columns} for pc, r in latest.items()
            if r.get("stations", 1) > 0 and r["total_bikes_available"] is not None}


def differences(want, got):
    out = []
    for pc in sorted(set(want) | set(got)):
        if pc not in got:
            out.append("postcode %s missing (expected %r)" % (pc, want[pc]))
        elif pc not in want:
            out.append("postcode %s not expected (got %r)" % (pc, got[pc]))
        elif want[pc] != got[pc]:
            out.append("postcode %s: expected %r, got %r" % (pc, want[pc], got[pc]))
    return out


def wait_table(path, want, what, columns=COLUMNS):
    last = []

    def ok():
        last[:] = differences(want, table(path, columns))
        return not last
    try:
        wait_for(ok, TIMEOUT, what)
    except AssertionError:
        raise AssertionError("%s: the table still differs after %ss:\n  %s"
                             % (what, TIMEOUT, "\n  ".join(last[:20])))


def wait_metrics(sp, conn, want, what):
    wait_for(lambda: all((metric(sp, conn, k) or 0) == v for k, v in want.items()), TIMEOUT,
             "%s: %s metrics %r (now %r)" % (what, conn, want,
                                             {k: metric(sp, conn, k) for k in want}))


# ---------------------------------------------------------------------------
# All stations, two real snapshots, back and forth

def all_stations_yaml(srv, out, poll_ms=200, info_ms=300):
    """examples/velib-all-stations.yaml's connectors as shipped, pointed at
    the fixture and polling faster, plus a file_sink on the table's topic
    (the console stays): the totals checked are those of the shipped
    configuration."""
    path = os.path.join(SOURCE_DIR, "examples", "velib-all-stations.yaml")
    with open(path) as f:
        text = f.read()
    text = text[text.index("\nconnectors:") + 1:]
    for old, new in (
            (re.search(r"url: (\$\{env:VELIB_STATUS_URL:-[^}]*\})", text).group(1),
             q(srv.url("/station_status.json"))),
            (re.search(r"url: (\$\{env:VELIB_INFO_URL:-[^}]*\})\n", text).group(1),
             "%s\n    information.interval.ms: %d" % (q(srv.url("/station_information.json")),
                                                     info_ms)),
            ("poll.interval.ms: 60000", "poll.interval.ms: %d" % poll_ms),
            ("ttl.max.ms: 60000", "ttl.max.ms: 0"),
            ("lookup.file: ${env:VELIB_POSTCODES}",
             "lookup.file: %s" % q(os.path.join(DATA, POSTCODES))),
            ("schema.file: schemas/", "schema.file: %s/" % os.path.dirname(SCHEMA))):
        assert text.count(old) == 1, "%s no longer has %r once: update this test" % (path, old)
        text = text.replace(old, new)
    aggregates = re.findall(r"^      - (\w+)=", text, re.M)
    assert aggregates == ["stations"] + list(COLUMNS[1:]), aggregates
    return with_table_file(text, "out", out)


def with_table_file(text, name, out):
    """An example's connectors plus a file_sink on its table's topic."""
    topics = re.findall(r"^    topic: (\S+)$", text, re.M)
    assert topics and topics[-1] == "velib.postcodes", topics
    return text.rstrip("\n") + ("\n  - name: %s\n"
                                "    connector.class: file_sink\n"
                                "    topics: velib.postcodes\n"
                                "    file: %s\n"
                                "    fsync: false\n" % (name, q(out)))


def serve(srv, which):
    status, info = SNAPSHOTS[which]
    srv.route("/station_information.json", Response.file(os.path.join(DATA, info)))
    srv.route("/station_status.json", Response.file(os.path.join(DATA, status)))


def test_all_stations_each_snapshot_alone():
    need_data()
    postcode = postcode_table()
    s24, s22 = load_status("2024"), load_status("2022")
    codes24 = {s["stationCode"] for s in s24["data"]["stations"]}
    codes22 = {s["stationCode"] for s in s22["data"]["stations"]}
    want24, want22 = expected("2024", postcode), expected("2022", postcode)
    # The files as PROVENANCE.md describes them, so the numbers below mean something.
    assert len(codes24) == 1485 and len(codes22) == 1439, (len(codes24), len(codes22))
    assert len(want24) == 85 and sum(r["stations"] for r in want24.values()) == 1448
    gone22, gone24 = codes24 - codes22, codes22 - codes24   # left at each switch
    assert len(gone22) == 99 and len(gone24) == 53, (len(gone22), len(gone24))
    # Without retraction the 2022 table would keep the 2024-only stations:
    # check that this test can tell the difference.
    accumulated = totals(list({s["stationCode"]: s for s in s24["data"]["stations"] +
                               s22["data"]["stations"]}.values()), postcode)
    assert differences(want22, accumulated), "the two snapshots do not tell accumulation apart"

    def with_pc(codes):
        return sum(1 for c in codes if c in postcode)

    with tempfile.TemporaryDirectory(prefix="spoke-it-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "postcodes.ndjson")
        serve(srv, "2024")
        url = srv.url("/station_status.json")
        with Spoke(all_stations_yaml(srv, out), tmp=tmp) as sp:
            # 1. The 2024 snapshot.
            wait_table(out, want24, "2024 snapshot")
            wait_for(lambda: sp.offsets().get("velib", {}).get(url) == s24["lastUpdatedOther"],
                     TIMEOUT, "the 2024 snapshot committed")
            wait_metrics(sp, "velib", {"stations_emitted": 1485, "tombstones_emitted": 0}, "2024")
            wait_metrics(sp, "stations", {"records_mapped": 1448, "records_filtered": 37,
                                          "records_failed": 0}, "2024")
            wait_metrics(sp, "per-postcode", {"state_entities": 1448, "state_groups": 85,
                                              "records_invalid": 0}, "2024")

            # 2. The server switches to 2022: the table is 2022's alone.
            serve(srv, "2022")
            wait_table(out, want22, "2022 snapshot after 2024 (the second alone)")
            wait_for(lambda: sp.offsets().get("velib", {}).get(url) == s22["lastUpdatedOther"],
                     TIMEOUT, "the 2022 snapshot committed")
            wait_metrics(sp, "velib", {"stations_emitted": 1485 + 1439,
                                       "tombstones_emitted": 99}, "2022")
            wait_metrics(sp, "stations", {"tombstones_forwarded": 99, "records_failed": 0},
                         "2022")
            wait_metrics(sp, "per-postcode", {
                "tombstones_applied": with_pc(gone22),
                "tombstones_unknown": 99 - with_pc(gone22),
                "state_entities": with_pc(codes22), "state_groups": len(want22),
                "records_invalid": 0}, "2022")

            # 3. Back to 2024: 2024's table alone again.
            serve(srv, "2024")
            wait_table(out, want24, "2024 snapshot again, after 2022")
            wait_for(lambda: sp.offsets().get("velib", {}).get(url) == s24["lastUpdatedOther"],
                     TIMEOUT, "the 2024 snapshot committed again")
            wait_metrics(sp, "velib", {"stations_emitted": 2 * 1485 + 1439,
                                       "tombstones_emitted": 99 + 53}, "2024 again")
            wait_metrics(sp, "stations", {"tombstones_forwarded": 99 + 53}, "2024 again")
            wait_metrics(sp, "per-postcode", {
                "tombstones_applied": with_pc(gone22) + with_pc(gone24),
                "tombstones_unknown": 99 + 53 - with_pc(gone22) - with_pc(gone24),
                "state_entities": 1448, "state_groups": 85}, "2024 again")
            for conn in ("velib", "stations", "per-postcode", "out"):
                assert sp.connector(conn).get("state") == "RUNNING", sp.connector(conn)


# ---------------------------------------------------------------------------
# The default two-station pipeline, in examples/velib-offline.yaml's shape

def recycled_all_freed(sp, when):
    """After an idle trim: every record and row block went back to the
    allocator (the idle tasks handed their magazines to the depot, the
    trim freed the depot), and the pipeline did allocate some (spoke runs
    on one CPU, where it recycles them)."""
    f = Api(sp).metrics()
    got = {k: v for k, v in f.items() if k.startswith("spoke_recycle_")}
    assert sample(f, "spoke_recycle_fresh_blocks_total") > 1485, "%s: %r" % (when, got)
    assert sample(f, "spoke_recycle_depot_blocks") == 0, "%s: %r" % (when, got)
    assert sample(f, "spoke_recycle_blocks") == 0, "%s: %r" % (when, got)
    return f


def test_idle_process_unmaps_file_pages_and_wakes_right():
    """Once no task has been busy for idle.unmap.after.ms (1 s here), the
    process unmaps the read-only file pages it holds (counted in /metrics);
    the next poll faults back what it needs and gives the right table, and
    the process trims again when idle again. A host without connectors trims
    too, unless idle.unmap.after.ms is 0."""
    need_data()
    postcode = postcode_table()
    want24, want22 = expected("2024", postcode), expected("2022", postcode)

    def trims(sp):
        try:
            f = Api(sp).metrics()
        except OSError:  # the REST listener not up yet
            return 0, 0
        return (sample(f, "spoke_process_idle_trims_total"),
                sample(f, "spoke_process_idle_trimmed_bytes_total"))

    with tempfile.TemporaryDirectory(prefix="spoke-it-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "postcodes.ndjson")
        serve(srv, "2024")
        # A poll every 5 s: the tasks idle a second after the output, the
        # process a second later, several status writes before the next.
        sp = Spoke(all_stations_yaml(srv, out, poll_ms=5000, info_ms=600000), tmp=tmp,
                   extra_worker={"idle.unmap.after.ms": 1000}, start=False)
        # On one CPU, where the host recycles record and row memory.
        sp.cpus = {min(os.sched_getaffinity(0))}
        sp.start()
        with sp:
            wait_table(out, want24, "2024 snapshot")
            wait_for(lambda: trims(sp)[0] >= 1, TIMEOUT,
                     lambda: "an idle trim after the 2024 snapshot (%r)" % (trims(sp),))
            n, unmapped = trims(sp)
            # The pages of the libraries and plugins the start touched: MBs.
            assert unmapped >= 1 << 20, "the first trim unmapped only %d bytes" % unmapped
            recycled_all_freed(sp, "after the 2024 snapshot")
            serve(srv, "2022")
            wait_table(out, want22, "2022 snapshot after an idle trim")
            wait_for(lambda: trims(sp)[0] > n, TIMEOUT,
                     lambda: "a second trim, idle after the 2022 snapshot (%r)" % (trims(sp),))
            f = recycled_all_freed(sp, "after the 2022 snapshot")
            # Blocks freed on one task's thread were reused on another's.
            assert sample(f, "spoke_recycle_reused_blocks_total") > 0, \
                sample(f, "spoke_recycle_reused_blocks_total")
            assert sp.alive()
    # Without connectors, and with idle.unmap.after.ms 0 (started first, so
    # idle at least as long as the other when it trims): no trim.
    with Spoke("", extra_worker={"idle.unmap.after.ms": 0}) as off, \
            Spoke("", extra_worker={"idle.unmap.after.ms": 1000}) as sp:
        wait_for(lambda: trims(sp)[0] >= 1, TIMEOUT,
                 lambda: "a host without connectors trims once (%r)" % (trims(sp),))
        assert trims(sp)[1] >= 1 << 20, trims(sp)
        n = sample(Api(off).metrics(), "spoke_process_idle_trims_total")
        assert n == 0, "idle.unmap.after.ms 0 trimmed %r times" % n


def offline_example_yaml(srv, out):
    """examples/velib-offline.yaml's connectors, pointed at the fixture, plus
    a file_sink on the table's topic (the console stays)."""
    path = os.path.join(SOURCE_DIR, "examples", "velib-offline.yaml")
    with open(path) as f:
        text = f.read()
    text = text[text.index("\nconnectors:") + 1:]
    for old, new in (("http://127.0.0.1:8000/", srv.url("/")),
                     ("schema.file: schemas/", "schema.file: %s/" % os.path.dirname(SCHEMA))):
        assert old in text, "%s no longer has %r: update this test" % (path, old)
        text = text.replace(old, new)
    return with_table_file(text, "table-file", out)


def test_offline_example_two_stations():
    need_data()
    stations = {s["stationCode"]: s for s in load_status("2024")["data"]["stations"]}
    want = totals([stations["16107"], stations["32017"]], {"16107": "75016", "32017": "93200"})
    assert set(want) == {"75016", "93200"}
    columns = COLUMNS[1:]  # the example has no count() column
    want = {pc: {c: r[c] for c in columns} for pc, r in want.items()}
    with tempfile.TemporaryDirectory(prefix="spoke-it-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "postcodes.ndjson")
        for name in SNAPSHOTS["2024"]:
            srv.route("/" + name, Response.file(os.path.join(DATA, name)))
        with Spoke(offline_example_yaml(srv, out), tmp=tmp) as sp:
            wait_table(out, want, "the two seed stations per postcode", columns)
            # The console's last row of each postcode (complete lines only:
            # the console sink may still be writing, or be behind the file).
            def shown():
                last = {}
                for l in sp.stdout_lines():
                    for pc in want:
                        if (" %s " % pc) in l:
                            last[pc] = l.split()[2:]
                return last
            wanted = {pc: [str(r[c]) for c in ("total_bikes_available", "total_mechanical_bikes",
                                               "total_electric_bikes")]
                      for pc, r in want.items()}
            wait_for(lambda: shown() == wanted, TIMEOUT,
                     lambda: "the console table: %r, wanted %r" % (shown(), wanted))
            rows = {r["postcode"]: r for r in read_rows(out)}
            for pc, code in (("75016", "16107"), ("93200", "32017")):
                # Event time: the row's timestamp is the station's last_reported.
                want_ts = stations[code]["last_reported"] * 1000
                assert iso_ms(rows[pc]["timestamp"]) == want_ts, rows[pc]


def iso_ms(text):
    """'2024-11-19T07:35:04.000Z' -> epoch ms."""
    import datetime
    d = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)
    return int(round(d.timestamp() * 1000))


if __name__ == "__main__":
    spoketest.main(globals())
