#!/usr/bin/env python3
"""it-seed_examples: the seed pipelines of examples/ end to end on the
recorded data of ../shared/data, each result checked against the seed's
published output or an independent computation from the same file:

- examples/flights-top-airports.yaml: the top 10 source airports equal the
  seed's published top10_source_airport.csv (ATL 915, ORD 558, ...), and
  exactly the routes with a \\N id (898, the seed's "errors by var
  transform") are dead-lettered, verbatim; the per-window top 10 plane
  types (the 16 routes without one a group of their own) never count more
  routes of a type than routes.dat has; every connector runs.
- examples/meetup-rsvps.yaml: RSVPs per (country, answer) count each
  rsvp_id once, in the state of its newest mtime (the stream re-sends
  changed RSVPs, and out of order): the top 10 equal that computation
  (815 RSVPs in 1,000 messages; counting messages fails it). The
  recording's 72 late copies agree with the newer ones on answer and
  guests, so the late-copy rule is proven by plugin-aggregator's
  stale-record tests, not here.
- examples/taxi-trips.yaml: trips, revenue, average fare and average tip
  ratio per payment type, and the top 10 pickup areas, equal a csv-module
  computation; the trips without a pickup area are one group
  (group.by.nulls: group), the third largest.

The examples run as shipped except for the data and schema paths, the
replay rate (as fast as possible), the emit interval (200 ms instead of
5 s), and a file_sink added on their output topics so the rows can be read.
"""
import csv
import json
import os

from plugin_schema_mapper import need_data as need
from spoketest import SHARED_DATA, SOURCE_DIR, Spoke, complete_lines, main

TIMEOUT = 90


def example(name, topics, replace=()):
    """The example's connectors section, pointed at the data and schemas,
    with a file_sink (out.ndjson) on topics."""
    text = open(os.path.join(SOURCE_DIR, "examples", name)).read()
    body = text[text.index("\nconnectors:") + 1:]
    for old, new in [("../shared/data/", SHARED_DATA + "/"),
                     ("schema.file: schemas/", "schema.file: %s/schemas/" % SOURCE_DIR),
                     ("emit.interval.ms: 5000", "emit.interval.ms: 200")] + list(replace):
        assert old in body, "%s: %r not found" % (name, old)
        body = body.replace(old, new)
    return body + ("  - name: test-out\n"
                   "    connector.class: file_sink\n"
                   "    topics: [%s]\n"
                   "    file: out.ndjson\n" % ", ".join(topics))


def counter(sp, conn, name):
    """A host counter of the connector (status.json: records_in, errors,
    dead_lettered, ...); None until it is there."""
    return sp.connector(conn).get("metrics", {}).get(name)


def all_running(sp, names):
    for name in names:
        assert sp.connector(name)["state"] == "RUNNING", (name, sp.connector(name))


def last_tick(rows, key, rank):
    """The last complete emission of rows. An emission is one row per group,
    in top.by order (rank, largest first): a new one starts where a group
    repeats or the rank goes up. (A repeat alone is not enough: a group new
    to the top 10 at the head of an emission would join the one before.)"""
    ticks, cur = [], []
    for r in rows:
        if cur and (any(key(c) == key(r) for c in cur) or rank(r) > rank(cur[-1])):
            ticks.append(cur)
            cur = []
        cur.append(r)
    if cur:
        ticks.append(cur)
    return ticks[-1] if ticks else []


def sink_rows(sp):
    return [json.loads(line) for line in complete_lines(os.path.join(sp.tmp, "out.ndjson"))]


def test_flights_example_reproduces_the_seeds_top_airports():
    routes = need("openflights", "routes.dat")
    with open(need("openflights", "top10_source_airport.csv")) as f:
        published = [{"source_airport": r["source_airport"], "routes": int(r["count"])}
                     for r in csv.DictReader(f)]
    with open(routes, "rb") as f:
        lines = [raw.rstrip(b"\r\n") for raw in f.read().splitlines()]
    bad = [line for line in lines if b"\\N" in [line.split(b",")[i] for i in (1, 3, 5)]]
    good = [line.decode().split(",") for line in lines if line not in set(bad)]
    equipment = {}
    for f in good:
        equipment[f[8] or None] = equipment.get(f[8] or None, 0) + 1
    assert len(bad) == 898 and len(good) == 66765 and equipment[None] == 16
    body = example("flights-top-airports.yaml", ["flights.top_airports", "flights.top_equipment"],
                   [("records.per.second: 2000", "records.per.second: 0")])
    with Spoke(body) as sp:
        def top_now():
            rows = [r for r in sink_rows(sp) if "source_airport" in r]
            tick = last_tick(rows, lambda r: r["source_airport"], lambda r: r["routes"])
            return [{k: r[k] for k in ("source_airport", "routes")} for r in tick]
        sp.wait_for(lambda: counter(sp, "top-airports", "records_in") == len(good) and
                    top_now() == published, TIMEOUT,
                    lambda: "the published top 10 after %d records, got %r after %r" % (
                        len(good), top_now(), counter(sp, "top-airports", "records_in")))
        sp.wait_for(lambda: os.path.exists(os.path.join(sp.tmp, "flights-rejected.ndjson")) and
                    open(os.path.join(sp.tmp, "flights-rejected.ndjson"), "rb").read().count(
                        b"\n") == len(bad), TIMEOUT, "898 rejected routes")
        with open(os.path.join(sp.tmp, "flights-rejected.ndjson"), "rb") as f:
            assert f.read().splitlines() == bad
        assert counter(sp, "typed", "dead_lettered") == len(bad)
        # The routes without a plane type are a group (null), not errors.
        assert not counter(sp, "top-equipment", "errors")
        all_running(sp, ("routes", "typed", "rejected", "top-airports", "top-equipment",
                         "console"))
    # The 30 s windows close by processing time: whatever closed while the
    # host ran holds at most ten types, largest first, none above its total.
    for r in sink_rows(sp):
        if "equipment" in r:
            assert r["routes"] <= equipment[r["equipment"]], r


def test_meetup_example_counts_each_rsvp_once_in_its_latest_state():
    path = need("meetup", "meetup_rsvps.ndjson")
    latest = {}
    with open(path) as f:
        for line in f:
            x = json.loads(line)
            old = latest.get(x["rsvp_id"])
            if old is None or x["mtime"] >= old["mtime"]:  # an older copy never wins
                latest[x["rsvp_id"]] = x
    groups = {}
    for x in latest.values():
        k = (x["group"]["group_country"], x["response"])
        g = groups.setdefault(k, {"rsvps": 0, "guests": 0})
        g["rsvps"] += 1
        g["guests"] += x.get("guests", 0)
    assert len(latest) == 815
    counts = sorted((g["rsvps"] for g in groups.values()), reverse=True)[:10]
    body = example("meetup-rsvps.yaml", ["meetup.per_country"],
                   [("records.per.second: 20", "records.per.second: 0")])
    with Spoke(body) as sp:
        def tick():
            return last_tick(sink_rows(sp), lambda r: (r["group_country"], r["response"]),
                             lambda r: r["rsvps"])

        def settled():
            t = tick()
            return (counter(sp, "per-country", "records_in") == 1000 and
                    [r["rsvps"] for r in t] == counts and
                    all(groups[(r["group_country"], r["response"])] ==
                        {"rsvps": r["rsvps"], "guests": r["guests"]} for r in t))
        sp.wait_for(settled, TIMEOUT, lambda: "the top 10 of %r, got %r" % (
            sorted(groups.items(), key=lambda kv: -kv[1]["rsvps"])[:10], tick()))
        all_running(sp, ("rsvps", "typed", "per-country", "console"))
    assert sum(g["rsvps"] for g in groups.values()) == 815


def test_taxi_example_matches_a_csv_computation():
    path = need("taxi", "chicago_taxi_trips_sample_jweinflash.csv")

    def money(s):
        return float(s.replace("$", "").replace(",", "")) if s else None
    pay, areas, no_area = {}, {}, 0
    with open(path, newline="") as f:
        for x in csv.DictReader(f):
            fare, tips, total = money(x["Fare"]), money(x["Tips"]), money(x["Trip Total"])
            p = pay.setdefault(x["Payment Type"], {"trips": 0, "revenue": 0.0, "fares": [],
                                                   "ratios": []})
            p["trips"] += 1
            p["revenue"] += total or 0.0
            if fare is not None:
                p["fares"].append(fare)
            if fare and tips is not None:
                p["ratios"].append(tips / fare)
            area = int(x["Pickup Community Area"]) if x["Pickup Community Area"] else None
            no_area += area is None
            a = areas.setdefault(area, {"trips": 0, "miles": 0.0})
            a["trips"] += 1
            a["miles"] += float(x["Trip Miles"]) if x["Trip Miles"] else 0.0
    assert no_area == 196
    top_areas = sorted((a["trips"] for a in areas.values()), reverse=True)[:10]
    body = example("taxi-trips.yaml", ["taxi.per_payment", "taxi.pickup_areas"])

    def close(a, b):
        return (a is None and b is None) or (a is not None and b is not None and
                                             abs(a - b) <= 1e-9 * max(1.0, abs(b)))
    with Spoke(body) as sp:
        def payments():
            rows = [r for r in sink_rows(sp) if "payment_type" in r]
            return last_tick(rows, lambda r: r["payment_type"], lambda r: r["trips"])

        def pay_ok():
            t = payments()
            if counter(sp, "per-payment", "records_in") != 1250 or len(t) != len(pay):
                return False
            for r in t:
                p = pay[r["payment_type"]]
                mean = lambda v: sum(v) / len(v) if v else None
                if not (r["trips"] == p["trips"] and close(r["revenue"], p["revenue"]) and
                        close(r["avg_fare"], mean(p["fares"])) and
                        close(r["avg_tip_ratio"], mean(p["ratios"]))):
                    return False
            return True
        sp.wait_for(pay_ok, TIMEOUT, lambda: "per payment type %r, got %r" % (
            {k: (p["trips"], p["revenue"]) for k, p in pay.items()}, payments()))

        def areas_tick():
            rows = [r for r in sink_rows(sp) if "pickup_area" in r]
            return last_tick(rows, lambda r: r["pickup_area"], lambda r: r["trips"])

        def areas_ok():
            t = areas_tick()
            return ([r["trips"] for r in t] == top_areas and
                    all(r["trips"] == areas[r["pickup_area"]]["trips"] and
                        close(r["miles"], areas[r["pickup_area"]]["miles"]) for r in t))
        sp.wait_for(areas_ok, TIMEOUT, lambda: "the top 10 areas %r, got %r" % (
            top_areas, areas_tick()))
        assert not counter(sp, "top-pickup-areas", "errors")  # the nulls are a group
        assert any(r["pickup_area"] is None for r in areas_tick())
        all_running(sp, ("trips", "typed", "per-payment", "top-pickup-areas", "console"))


if __name__ == "__main__":
    main(globals())
