#!/usr/bin/env python3
"""plugin-aggregator: the aggregator driven through the real host.

Every scenario runs file_source (NDJSON objects, which the host turns into
rows) -> aggregator -> file_sink and compares the rows written with an
independent computation in Python over the same input: every aggregate
function, stream and table semantics (300 polls of two stations give the
latest total, never 300 times it), entities moving between groups, tumbling
and hopping windows on event time with late records within and beyond the
allowed lateness, processing-time windows closed by the wall clock, the three
emit modes, top-N, max.groups, restart from a snapshot (SIGTERM and kill -9)
equal to an uninterrupted run, corrupt / foreign / mismatched snapshots
refused (one of another configuration with what deleting it costs, and the
way to apply the new one to all the input, both checked), a version 1
snapshot of the previous aggregator restored, INT sums beyond int64 (exact
avg, null sum, across a restart) and overflowed DOUBLE sums (null),
per-column INT -> DOUBLE promotion, record keys distinct per group (escaped
when several fields or nulls), the 64 KiB key limit, invalid records on the
error path with their reason, configuration errors, the real Velib'
snapshot's per-postcode totals, and tombstones (null
values, made by the tombtest_transform that plugin_schema_mapper.py builds):
retraction in table semantics (update and complete modes, event time, windows,
across a restart), unknown keys counted, and the cases where they are ignored.
"""
import contextlib
import csv
import fractions
import json
import math
import os
import signal
import statistics
import tempfile

import resttest
import spoketest
from plugin_schema_mapper import tombtest_dir
from spoketest import (PLUGIN_DIR, SHARED_DATA, TEST_PLUGIN_DIR, Skip, Spoke, metric, q,
                       read_bytes, run_spoke, validate, wait_for, yaml_scalar)

TIMEOUT = 30
BASE_T = 1732000000000  # 2024-11-19T07:06:40Z, epoch ms


# ---------------------------------------------------------------------------
# Pipeline helpers

def pipeline_yaml(inp, out, agg, extra_src="", extra=""):
    """file_source(inp) -> rows -> aggregator(agg) -> totals -> file_sink(out)."""
    lines = ["connectors:",
             "  - name: src",
             "    connector.class: file_source",
             "    topic: rows",
             "    file: %s" % q(inp),
             "    poll.interval.ms: 20",
             ]
    lines += ["    " + l for l in extra_src.splitlines() if l.strip()]
    lines += ["  - name: agg",
              "    connector.class: aggregator",
              "    topics: rows",
              "    topic: totals",
              "    snapshot.interval.ms: 50"]
    for k, v in agg.items():
        lines.append("    %s: %s" % (k, yaml_scalar(v)))
    lines += ["  - name: out",
              "    connector.class: file_sink",
              "    topics: totals",
              "    file: %s" % q(out),
              "    fsync: false"]
    return "\n".join(lines) + "\n" + extra


@contextlib.contextmanager
def started_pipeline(records, agg):
    """A started host running pipeline_yaml over records; yields (sp, inp, out)."""
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, records)
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        yield sp, inp, out


def write_ndjson(path, records, mode="w"):
    with open(path, mode) as f:
        for r in records:
            f.write(r if isinstance(r, str) else json.dumps(r))
            f.write("\n")


def read_rows(path):
    rows = []
    for line in spoketest.complete_lines(path):
        rows.append(json.loads(line))
    return rows


def iso_ms(text):
    """'2024-11-19T07:06:40.000Z' -> epoch ms."""
    import datetime
    d = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)
    return int(round(d.timestamp() * 1000))


def latest(rows, key_cols):
    """Last row per key (the state after every update)."""
    out = {}
    for r in rows:
        out[tuple(r[c] for c in key_cols)] = r
    return out


def close(a, b):
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is None and b is None
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def diff(expected, actual):
    """Human-readable differences between {key: {col: v}} maps (actual may
    have more columns)."""
    out = []
    for k in sorted(set(expected) | set(actual), key=repr):
        if k not in actual:
            out.append("missing group %r (expected %r)" % (k, expected[k]))
        elif k not in expected:
            out.append("unexpected group %r: %r" % (k, actual[k]))
        else:
            for c, v in expected[k].items():
                if not close(v, actual[k].get(c)):
                    out.append("group %r column %s: expected %r, got %r" % (k, c, v, actual[k].get(c)))
    return out


def wait_equal(expected, actual_fn, what, timeout=TIMEOUT):
    """Waits until actual_fn() matches expected; on timeout fails with the differences."""
    last = []
    def ok():
        last[:] = diff(expected, actual_fn())
        return not last
    try:
        wait_for(ok, timeout, what)
    except AssertionError:
        raise AssertionError("%s: still different after %ss:\n  %s" % (what, timeout, "\n  ".join(last[:20])))


def host_metric(sp, conn, name):
    """A counter the host keeps for a connector (status.json: metrics, e.g.
    errors); None while it is not there yet."""
    return (sp.connector(conn).get("metrics") or {}).get(name)


def agg_in(sp, n):
    return sp.connector("agg").get("metrics", {}).get("records_in", 0) >= n


# ---------------------------------------------------------------------------
# Independent reference computations

def ref_value(fn, field, contribs):
    """contribs: list of (record, t, seq) of one group, in any order."""
    if fn == "count":
        return len(contribs) if field is None else sum(1 for r, _, _ in contribs if r.get(field) is not None)
    vals = [(r[field], t, s) for r, t, s in contribs if r.get(field) is not None]
    if not vals:
        return None
    xs = [v for v, _, _ in vals]
    if fn == "sum":
        return sum(xs) if all(isinstance(x, int) for x in xs) else math.fsum(xs)
    if fn == "avg":
        return math.fsum(xs) / len(xs)
    if fn == "min":
        return min(xs)
    if fn == "max":
        return max(xs)
    if fn in ("variance", "stddev"):
        if len(xs) < 2:
            return None
        v = float(statistics.variance([float(x) for x in xs]))
        return v if fn == "variance" else math.sqrt(v)
    if fn in ("var_pop", "stddev_pop"):
        v = float(statistics.pvariance([float(x) for x in xs]))
        return v if fn == "var_pop" else math.sqrt(v)
    if fn == "first":
        return min(vals, key=lambda e: (e[1], e[2]))[0]
    if fn == "last":
        return max(vals, key=lambda e: (e[1], e[2]))[0]
    raise ValueError(fn)


def parse_aggs(specs):
    out = []
    for s in specs:
        name, rhs = s.split("=")
        fn, arg = rhs[:-1].split("(")
        out.append((name, fn, arg or None))
    return out


def ref_table(contribs_by_group, specs):
    aggs = parse_aggs(specs)
    return {g: {name: ref_value(fn, field, cs) for name, fn, field in aggs}
            for g, cs in contribs_by_group.items()}


def ref_stream(records, group, specs, tfield=None):
    groups = {}
    for seq, r in enumerate(records):
        groups.setdefault(r[group], []).append((r, r[tfield] if tfield else 0, seq))
    return ref_table({(g,): cs for g, cs in groups.items()}, specs)


def ref_entities(records, group, entity, specs, tfield=None, order="event"):
    """Table semantics: each entity's latest record (by event time when
    tfield is given and order is "event": an older one is ignored; else the
    last to arrive) is its contribution."""
    ents = {}
    for seq, r in enumerate(records):
        t = r[tfield] if tfield else 0
        old = ents.get(r[entity])
        if old is not None and tfield and order == "event" and t < old[1]:
            continue
        ents[r[entity]] = (r, t, seq)
    groups = {}
    for r, t, s in ents.values():
        groups.setdefault((r[group],), []).append((r, t, s))
    return ref_table(groups, specs)


def ref_windows(records, group, specs, tfield, size, advance, lateness):
    """Event-time windows: a record goes to each of its windows still open
    (end > highest time seen - lateness); returns (closed windows' groups,
    number of records that reached no window, final bound)."""
    contribs = {}
    max_t = None
    bound = None
    late = 0
    for seq, r in enumerate(records):
        t = r[tfield]
        starts = []
        s = (t // advance) * advance
        while s > t - size:
            starts.append(s)
            s -= advance
        live = [s for s in starts if bound is None or s + size > bound]
        if not live:
            late += 1
            continue
        for s in live:
            contribs.setdefault((s, r[group]), []).append((r, t, seq))
        if max_t is None or t > max_t:
            max_t = t
            bound = max_t - lateness
    res = ref_table(contribs, specs)
    closed = {k: v for k, v in res.items() if k[0] + size <= bound}
    return closed, late, bound


def window_rows(rows, group):
    return {(iso_ms(r["window_start"]), r[group]): r for r in rows}


# ---------------------------------------------------------------------------
# Configuration

def test_unknown_property_rejected():
    good = ("connectors:\n"
            "  - name: agg\n"
            "    connector.class: aggregator\n"
            "    topics: rows\n"
            "    topic: totals\n"
            "    group.by: postcode\n"
            "    aggregates: [n=count()]\n")
    r = validate(good)
    assert r.returncode == 0, "valid config refused: %s" % r.stderr
    r = validate(good + "    group.bi: postcode\n")
    assert r.returncode == 1, "misspelled key accepted (rc %d)" % r.returncode
    assert "group.bi" in r.stderr, "error does not name the key: %r" % r.stderr
    r = validate(good + "    semantics: upsert\n")
    assert r.returncode == 1 and "semantics" in r.stderr, r.stderr
    r = validate(good.replace("    aggregates: [n=count()]\n", ""))
    assert r.returncode == 1 and "aggregates" in r.stderr, r.stderr


# (config, the key the error points at, the reason)
BAD_CONFIGS = [
    ({"aggregates": ["total"]}, "aggregates",
     "aggregates item 1 'total': expected name=function(field)"),
    ({"aggregates": ["n=count()", "t=median(x)"]}, "aggregates", "unknown function 'median'"),
    ({"aggregates": ["t=sum()"]}, "aggregates", "sum() needs a field"),
    ({"aggregates": ["t=sum(x"]}, "aggregates", "missing ')'"),
    ({"aggregates": ["1t=sum(x)"]}, "aggregates", "column name '1t' must be a letter"),
    ({"aggregates": ["t=sum(x) extra"]}, "aggregates", "unexpected text after ')'"),
    ({"aggregates": ["t=sum(x)", "t=max(x)"]}, "aggregates", "output column 't' appears twice"),
    ({"aggregates": ["g=sum(x)"]}, "aggregates", "output column 'g' appears twice"),
    ({"aggregates": ["timestamp=sum(x)"]}, "aggregates",
     "clashes with the output column timestamp"),
    ({"group.by": "timestamp"}, "group.by", "clashes with the output column timestamp"),
    ({"group.by": ["g", "g"]}, "group.by", "group.by: field 'g' is listed twice"),
    ({"group.by": "g" * 300}, "group.by", "group.by: field name 'ggg"),
    ({"aggregates": ["s=sum(%s)" % ("x" * 300)]}, "aggregates", "an aggregate: field name 'xxx"),
    ({"semantics": "table"}, "semantics", "semantics table needs entity.key"),
    ({"entity.key": "id"}, "entity.key", "entity.key is only used with semantics: table"),
    ({"time": "event"}, "time", "time: event needs time.field"),
    ({"table.order": "arrival"}, "table.order",
     "table.order is only used with semantics: table"),
    ({"semantics": "table", "entity.key": "id", "table.order": "event"}, "table.order",
     "table.order: event needs time: event and a time.field"),
    ({"time": "processing", "time.field": "t"}, "time.field",
     "time.field 't' is only read with time: event"),
    ({"allowed.lateness.ms": 10}, "allowed.lateness.ms", "allowed.lateness.ms applies to windows"),
    ({"window": "tumbling"}, "window", "window: tumbling needs window.size.ms"),
    ({"window": "tumbling", "window.size.ms": 1000, "window.advance.ms": 500},
     "window.advance.ms", "window.advance.ms is for hopping windows"),
    ({"window": "hopping", "window.size.ms": 1000}, "window",
     "window: hopping needs window.advance.ms"),
    ({"window": "hopping", "window.size.ms": 1000, "window.advance.ms": 2000},
     "window.advance.ms", "must not exceed window.size.ms"),
    ({"window.size.ms": 1000}, "window.size.ms", "window.size.ms needs window: tumbling or hopping"),
    ({"window.advance.ms": 1000}, "window.advance.ms",
     "window.advance.ms needs window: tumbling or hopping"),
    ({"emit": "final"}, "emit", "emit: final emits when a window closes"),
    ({"emit": "complete", "emit.interval.ms": 0}, "emit.interval.ms",
     "emit: complete needs emit.interval.ms > 0"),
    ({"emit": "complete", "top.n": 3}, "top.n", "top.n needs top.by"),
    ({"emit": "complete", "top.by": "nope"}, "top.by", "top.by 'nope' is not an aggregate column"),
    ({"top.by": "n"}, "top.by", "top.n and top.by apply to emit: complete or final"),
    ({"emit": "complete", "emit.on.idle": True}, "emit.on.idle",
     "emit.on.idle is for emit: update"),
]


def test_bad_configurations_refused_with_reason():
    """Each bad aggregator config is refused before anything runs (the
    plugin's check between keys): `spoke validate` reports every one with
    its reason at the line of the key at fault, and `spoke run` refuses the
    file."""
    with tempfile.TemporaryDirectory(prefix="spoke-agg-") as tmp:
        inp = os.path.join(tmp, "in.ndjson")
        write_ndjson(inp, [{"g": "a", "x": 1, "t": BASE_T}])
        conns = ["  - name: src", "    connector.class: file_source", "    topic: rows",
                 "    file: %s" % q(inp)]
        for i, (cfg, _, _) in enumerate(BAD_CONFIGS):
            full = {"group.by": "g", "aggregates": ["n=count()"]}
            full.update(cfg)
            conns += ["  - name: bad%d" % i, "    connector.class: aggregator",
                      "    topics: rows", "    topic: out%d" % i]
            conns += ["    %s: %s" % (k, yaml_scalar(v)) for k, v in full.items()]
            conns += ["  - name: sink%d" % i, "    connector.class: null_sink",
                      "    topics: out%d" % i]
        spoketest.expect_checks_refuse(tmp, "\n".join(conns) + "\n", [
            ("bad%d" % i, key, want) for i, (_, key, want) in enumerate(BAD_CONFIGS)])


def test_independent_mistakes_all_reported_each_at_its_key():
    """Mistakes in independent keys are all reported at once, each at its
    own key (the host's check_problem), by `spoke validate`, a file load and
    the REST API alike; a mistake does not bring others that only follow
    from it (a group.by refused is not also "group.by.nulls needs group.by",
    a top.by naming a refused aggregate is not also "not an aggregate")."""
    many = {"group.by": "g", "aggregates": ["total", "n=count()", "m=median(x)"],
            "time": "event", "window": "hopping", "window.size.ms": 1000,
            "emit": "complete", "emit.interval.ms": 0, "top.n": 3}
    problems = [
        ("aggregates", "aggregates item 1 'total': expected name=function(field)"),
        ("aggregates", "aggregates item 3 'm=median(x)': unknown function 'median'"),
        ("time", "time: event needs time.field"),
        ("window", "window: hopping needs window.advance.ms"),
        ("emit.interval.ms", "emit: complete needs emit.interval.ms > 0"),
        ("top.n", "top.n needs top.by"),
    ]
    follow = {"group.by": ["g", "g"], "group.by.nulls": "group",
              "aggregates": ["n=count()", "s=sum(x"], "emit": "complete", "top.by": "s"}
    follow_problems = [("group.by", "group.by: field 'g' is listed twice"),
                       ("aggregates", "aggregates item 2 's=sum(x': missing ')'")]
    head = ["  - name: src", "    connector.class: file_source", "    topic: rows",
            "    file: /nonexistent.ndjson"]
    with tempfile.TemporaryDirectory(prefix="spoke-agg-") as tmp:
        for cfg, want in ((many, problems), (follow, follow_problems)):
            conns = head + ["  - name: agg", "    connector.class: aggregator",
                            "    topics: rows", "    topic: out"]
            conns += ["    %s: %s" % (k, yaml_scalar(v)) for k, v in cfg.items()]
            conns += ["  - name: sink", "    connector.class: null_sink", "    topics: out"]
            spoketest.expect_checks_refuse(tmp, "\n".join(conns) + "\n",
                                           [("agg", k, w) for k, w in want])
    base = {"connector.class": "aggregator", "topics": "rows", "topic": "out"}
    sp, api = resttest.rest_spoke("connectors: []\n")
    with sp:
        for cfg, want in ((many, problems), (follow, follow_problems)):
            resttest.expect_refused_all(api, "aggregator", "agg", dict(base, **{
                k: ",".join(v) if isinstance(v, list) else str(v).lower()
                if isinstance(v, bool) else str(v) for k, v in cfg.items()}), want)


def test_readme_config_table_matches_plugin():
    p = run_spoke("plugins", "-c", "/nonexistent.yaml", "--plugin-path", PLUGIN_DIR,
                  "--doc", "aggregator")
    assert p.returncode == 0, p.stderr
    text = open(os.path.join(spoketest.SOURCE_DIR, "plugins", "aggregator", "README.md")).read()
    a, b = text.find("<!-- config:begin -->"), text.find("<!-- config:end -->")
    assert a >= 0 and b > a, "config markers missing"
    assert text[a + len("<!-- config:begin -->"):b].strip() == p.stdout.strip(), \
        "README config table differs from `spoke plugins --doc aggregator`:\n" + p.stdout


# ---------------------------------------------------------------------------
# Functions and semantics

ALL_FUNCS = ["n=count()", "nv=count(v)", "s=sum(i)", "sd=sum(d)", "a=avg(i)", "mn=min(i)",
             "mx=max(d)", "var=variance(d)", "sdv=stddev(i)", "vp=var_pop(d)",
             "sdp=stddev_pop(i)", "f=first(name)", "l=last(name)", "fv=first(v)", "lv=last(v)",
             "mnt=min(t)"]


def mixed_records(n, groups=5, entities=None, seed=7):
    import random
    rnd = random.Random(seed)
    recs = []
    for k in range(n):
        r = {"g": "g%d" % rnd.randrange(groups),
             "i": rnd.randrange(-50, 1000),
             "d": rnd.choice([0.1, 2.5, -3.25, 1e6 + 0.3, 7.0, 1 / 3]) * rnd.randrange(1, 9),
             "name": "n%03d" % rnd.randrange(1000),
             "v": rnd.choice([None, 1, 2, 3]),
             "t": BASE_T + rnd.randrange(0, 100000)}
        if entities:
            r["id"] = "e%d" % rnd.randrange(entities)
        recs.append(r)
    return recs


def test_every_function_stream():
    recs = mixed_records(2000)
    agg = {"group.by": "g", "aggregates": ALL_FUNCS, "time.field": "t", "emit.interval.ms": 50}
    expected = ref_stream(recs, "g", ALL_FUNCS, tfield="t")
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, recs)
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        wait_equal(expected, lambda: latest(read_rows(out), ["g"]), "stream aggregates")
        rows = read_rows(out)
        last = latest(rows, ["g"])
        for r in last.values():
            assert isinstance(r["s"], int) and isinstance(r["n"], int), "int sums stay ints: %r" % r
            assert isinstance(r["sd"], float) and isinstance(r["a"], float), r
            assert isinstance(r["mnt"], int), "min of an int field stays int: %r" % r
            assert iso_ms(r["timestamp"]) == max(x["t"] for x in recs if x["g"] == r["g"]), \
                "timestamp is the highest event time of the group"
        wait_for(lambda: metric(sp, "agg", "state_groups") == 5, TIMEOUT, "state_groups 5")
        assert metric(sp, "agg", "state_bytes") > 0
        assert metric(sp, "agg", "records_invalid") == 0


# Numbers only (no min/max multisets, no strings): table updates take the
# plugin's short path; ALL_FUNCS takes the general one.
NUMERIC_FUNCS = ["n=count()", "nv=count(v)", "s=sum(i)", "sd=sum(d)", "a=avg(i)",
                 "var=variance(d)", "sdp=stddev_pop(i)", "fv=first(v)", "lv=last(v)"]


@contextlib.contextmanager
def started(recs, agg):
    """A host running file_source (recs) -> aggregator (agg) -> file_sink;
    yields it and the output file."""
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, recs)
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        yield sp, out


def test_every_function_table():
    recs = mixed_records(3000, groups=4, entities=60, seed=11)
    ents, stale = {}, 0
    for r in recs:
        if r["id"] in ents and r["t"] < ents[r["id"]]:
            stale += 1  # older than the entity's contribution: ignored
            continue
        ents[r["id"]] = r["t"]
    assert stale > 0
    for specs in (ALL_FUNCS, NUMERIC_FUNCS, NUMERIC_FUNCS[:6]):
        agg = {"group.by": "g", "aggregates": specs, "semantics": "table", "entity.key": "id",
               "time.field": "t", "emit.interval.ms": 50}
        expected = ref_entities(recs, "g", "id", specs, tfield="t")
        with started(recs, agg) as (sp, out):
            wait_equal(expected, lambda: {k: v for k, v in latest(read_rows(out), ["g"]).items()
                                          if v["n"] > 0}, "table aggregates %s" % specs)
            wait_for(lambda: metric(sp, "agg", "state_entities") == 60, TIMEOUT, "60 entities")
            wait_for(lambda: metric(sp, "agg", "stale_ignored") == stale, TIMEOUT,
                     "stale_ignored == %d" % stale)
            # The first stale record is logged, once.
            assert sp.log().count("is older than its entity's") == 1, sp.log()[-3000:]


def test_table_order_arrival_the_last_record_counts():
    """table.order: arrival (a polled snapshot's rule): an entity's last
    record to arrive replaces its contribution even when its time.field is
    older; time.field still orders first/last and gives the timestamp."""
    recs = mixed_records(3000, groups=4, entities=60, seed=11)
    specs = NUMERIC_FUNCS
    by_event = ref_entities(recs, "g", "id", specs, tfield="t")
    expected = ref_entities(recs, "g", "id", specs, tfield="t", order="arrival")
    assert by_event != expected, "the records do not tell the two orders apart"
    agg = {"group.by": "g", "aggregates": specs, "semantics": "table", "entity.key": "id",
           "time.field": "t", "table.order": "arrival", "emit.interval.ms": 50}
    with started(recs, agg) as (sp, out):
        wait_equal(expected, lambda: {k: v for k, v in latest(read_rows(out), ["g"]).items()
                                      if v["n"] > 0}, "table aggregates, arrival order")
        wait_for(lambda: agg_in(sp, len(recs)), TIMEOUT, "every record read")
        assert metric(sp, "agg", "stale_ignored") == 0
        assert "is older than its entity's" not in sp.log()


def test_variance_exact_after_the_first_value_is_replaced():
    """The variance sums are shifted by a group's first value. Once the
    entity that gave it holds a value far from it, the shift is far from
    every value: the sums must still hold the small differences."""
    # Within the ~32 significant digits of (value - shift)^2 that the sums
    # keep (the README's bound): before, every one of these came out 0.
    cases = [(1e8, [1, 2, 3]), (100000000, [1, 2, 3]), (1.5e9, [0.1, 0.2, 0.4]),
             (-1e6, [0.001, 0.002, 0.004]), (1e10, [7, 7, 8])]
    recs = []
    for g, (first, vals) in enumerate(cases):
        t = BASE_T + g * 1000
        recs.append({"g": "g%d" % g, "e": "%d.0" % g, "v": first, "t": t})
        for k, v in enumerate(vals[1:], 1):
            recs.append({"g": "g%d" % g, "e": "%d.%d" % (g, k), "v": v, "t": t + k})
        recs.append({"g": "g%d" % g, "e": "%d.0" % g, "v": vals[0], "t": t + 10})  # replaces first
    specs = ["var=variance(v)", "sd=stddev(v)", "vp=var_pop(v)"]
    agg = {"group.by": "g", "aggregates": specs, "semantics": "table", "entity.key": "e",
           "time.field": "t", "emit.interval.ms": 50}
    with started(recs, agg) as (sp, out):
        wait_for(lambda: agg_in(sp, len(recs)) and len(latest(read_rows(out), ["g"])) == len(cases),
                 TIMEOUT, "every group emitted")

        def close(a, b):
            return a is not None and abs(a - b) <= 1e-9 * abs(b)

        def wrong():
            last = latest(read_rows(out), ["g"])
            bad = []
            for g, (_, vals) in enumerate(cases):
                r = last[("g%d" % g,)]
                want = (statistics.variance(vals), statistics.stdev(vals),
                        statistics.pvariance(vals))
                if not all(close(r[c], w) for c, w in zip(("var", "sd", "vp"), want)):
                    bad.append((vals, r, want))
            return bad
        wait_for(lambda: not wrong(), TIMEOUT, lambda: "exact variances: %r" % wrong())


def test_table_300_polls_of_two_stations_give_the_latest_total():
    """The bug of the project this replaces: 300 polls of the same two
    stations summed to 300x the bikes. Table semantics keep each station's
    latest poll only: 19 bikes, never 5,700."""
    recs = []
    for poll in range(300):
        a = 4 + poll % 3 if poll < 299 else 4  # the last poll: 4 + 15 = 19 bikes
        recs.append({"stationCode": "16107", "postcode": "75016", "num_bikes_available": a,
                     "mechanical": a - 1, "ebike": 1, "last_reported": BASE_T + poll * 60000})
        recs.append({"stationCode": "32017", "postcode": "75016", "num_bikes_available": 15,
                     "mechanical": 10, "ebike": 5, "last_reported": BASE_T + poll * 60000})
    aggs = ["total_bikes_available=sum(num_bikes_available)", "total_mechanical_bikes=sum(mechanical)",
            "total_electric_bikes=sum(ebike)"]
    for semantics, want in (("table", 19), ("stream", sum(r["num_bikes_available"] for r in recs))):
        agg = {"group.by": "postcode", "aggregates": aggs, "emit.interval.ms": 50,
               "semantics": semantics}
        if semantics == "table":
            agg["entity.key"] = "stationCode"
        with Spoke("", start=False) as sp:
            inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
            write_ndjson(inp, recs)
            sp.write_config(pipeline_yaml(inp, out, agg))
            sp.start()
            wait_for(lambda: agg_in(sp, len(recs)), TIMEOUT, "all records processed")
            wait_for(lambda: latest(read_rows(out), ["postcode"]).get(("75016",), {})
                     .get("total_bikes_available") == want, TIMEOUT,
                     "%s semantics total %d" % (semantics, want))
            if semantics == "table":
                row = latest(read_rows(out), ["postcode"])[("75016",)]
                assert row["total_mechanical_bikes"] == 13 and row["total_electric_bikes"] == 6, row
                assert max(r["total_bikes_available"] for r in read_rows(out)) <= 21, \
                    "a table total went beyond one poll of the two stations"
    assert want > 5700  # stream semantics count every poll: the seed's bug, reproduced


def test_entity_moves_between_groups():
    specs = ["n=count()", "bikes=sum(b)", "mx=max(b)", "mn=min(b)", "f=first(id)", "l=last(id)"]
    recs = [
        {"id": "s1", "pc": "A", "b": 10},
        {"id": "s2", "pc": "A", "b": 3},
        {"id": "s3", "pc": "B", "b": 7},
        {"id": "s1", "pc": "B", "b": 12},   # s1 moves A -> B, the max of A leaves with it
        {"id": "s2", "pc": "A", "b": 4},
        {"id": "s4", "pc": "C", "b": 1},
        {"id": "s4", "pc": "B", "b": 2},    # C loses its only station
    ]
    agg = {"group.by": "pc", "aggregates": specs, "semantics": "table", "entity.key": "id",
           "emit.interval.ms": 0}
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, recs)
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        wait_for(lambda: len(read_rows(out)) >= 9, TIMEOUT, "9 update rows")
        rows = read_rows(out)
        # emit.interval.ms 0: one row per changed group per record, in order.
        got = [(r["pc"], r["n"], r["bikes"], r["mx"], r["mn"]) for r in rows]
        assert got == [("A", 1, 10, 10, 10), ("A", 2, 13, 10, 3), ("B", 1, 7, 7, 7),
                       ("A", 1, 3, 3, 3), ("B", 2, 19, 12, 7), ("A", 1, 4, 4, 4),
                       ("C", 1, 1, 1, 1), ("C", 0, None, None, None), ("B", 3, 21, 12, 2)], got
        last = latest(rows, ["pc"])
        assert last[("B",)]["f"] == "s3" and last[("B",)]["l"] == "s4", last[("B",)]
        wait_for(lambda: metric(sp, "agg", "state_groups") == 2, TIMEOUT,
                 "the emptied group C is forgotten")
        assert metric(sp, "agg", "state_entities") == 4


def test_int_then_double_promotes_the_column():
    recs = [{"g": "a", "x": 1}, {"g": "a", "x": 2}, {"g": "b", "x": 2.5}, {"g": "a", "x": 0.25}]
    agg = {"group.by": "g", "aggregates": ["s=sum(x)", "m=max(x)"], "emit.interval.ms": 50}
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, recs[:2])
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        wait_for(lambda: latest(read_rows(out), ["g"]).get(("a",), {}).get("s") == 3, TIMEOUT,
                 "int sum 3")
        assert isinstance(latest(read_rows(out), ["g"])[("a",)]["s"], int)
        write_ndjson(inp, recs[2:], mode="a")
        wait_for(lambda: latest(read_rows(out), ["g"]).get(("a",), {}).get("s") == 3.25, TIMEOUT,
                 "sum promoted to double")
        last = latest(read_rows(out), ["g"])
        assert last[("b",)]["s"] == 2.5 and last[("a",)]["m"] == 2.0, last
        assert isinstance(last[("a",)]["m"], float), "max column became DOUBLE"



def test_promotion_is_per_column_and_a_promoted_sum_rounds_once():
    """INT -> DOUBLE promotion is per field, for every group (the README's
    decision: a column has one type): a group that only held INTs shows
    them as the nearest double. A promoted sum adds its INT and DOUBLE
    parts before rounding: 2^53 + 1 and 0.5 give 2^53 + 2, the double
    nearest to 2^53 + 1.5 (it was 2^53: the INT part rounded first)."""
    big = 2 ** 53 + 1
    recs = [{"g": "ints", "x": big}, {"g": "mixed", "x": big}, {"g": "mixed", "x": 0.5},
            {"g": "small", "x": 3}, {"g": "small", "x": 4}]
    specs = ["s=sum(x)", "mn=min(x)", "mx=max(x)", "f=first(x)", "l=last(x)", "a=avg(x)"]
    groups = {}
    for r in recs:
        groups.setdefault(r["g"], []).append(r["x"])
    want = {}
    for g, xs in groups.items():
        exact = sum(fractions.Fraction(x) for x in xs)
        want[(g,)] = {"s": float(exact), "mn": float(min(xs)), "mx": float(max(xs)),
                      "f": float(xs[0]), "l": float(xs[-1]), "a": float(exact / len(xs))}
    assert want[("mixed",)]["s"] == 2.0 ** 53 + 2
    for semantics in ("stream", "table"):
        agg = {"group.by": "g", "aggregates": specs, "emit.interval.ms": 50,
               "semantics": semantics}
        if semantics == "table":
            agg["entity.key"] = "e"
        rs = [dict(r, e="e%d" % k) for k, r in enumerate(recs)]
        with started(rs, agg) as (sp, out):
            def got():
                return {k: {c: (v[c], type(v[c])) for c in want[k]}
                        for k, v in latest(read_rows(out), ["g"]).items()}
            typed = {k: {c: (v, float) for c, v in row.items()} for k, row in want.items()}
            wait_for(lambda: got() == typed, TIMEOUT,
                     lambda: "%s: every column DOUBLE, sums rounded once:\n  want %r\n  got  %r"
                     % (semantics, typed, got()))


# ---------------------------------------------------------------------------
# Windows

def event_records(n, seed, late_every=0, lateness=0):
    """Records in roughly increasing event time with some out of order: a
    few a little late (within lateness) and a few very late."""
    import random
    rnd = random.Random(seed)
    recs, t = [], BASE_T
    for k in range(n):
        t += rnd.randrange(0, 400)
        rt = t
        if late_every and k % late_every == 5:
            rt = t - rnd.randrange(1, max(2, lateness))          # within lateness
        if late_every and k % late_every == 9:
            rt = t - lateness - rnd.randrange(12000, 16000)      # beyond it, past any window
        recs.append({"g": "g%d" % rnd.randrange(3), "x": rnd.randrange(100), "t": rt})
    recs.append({"g": "g0", "x": 0, "t": t + 10 ** 7})  # moves the watermark past everything
    return recs


def run_windows(recs, agg, specs, size, advance, lateness):
    closed, late, _ = ref_windows(recs, "g", specs, "t", size, advance, lateness)
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, recs)
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        wait_equal(closed, lambda: window_rows(read_rows(out), "g"), "final window rows")
        rows = read_rows(out)
        keys = [(iso_ms(r["window_start"]), r["g"]) for r in rows]
        assert len(keys) == len(set(keys)), "final emits each window's group once"
        for r in rows:
            assert iso_ms(r["window_end"]) - iso_ms(r["window_start"]) == size
        assert late > 0
        wait_for(lambda: metric(sp, "agg", "late_dropped") == late, TIMEOUT,
                 "late_dropped == %d" % late)
        # The first late record is logged, once.
        assert sp.log().count("falls in no open window") == 1, sp.log()[-3000:]
        return rows


def test_tumbling_event_time_with_lateness():
    specs = ["n=count()", "s=sum(x)", "mx=max(x)", "l=last(x)"]
    recs = event_records(3000, 3, late_every=50, lateness=3000)
    agg = {"group.by": "g", "aggregates": specs, "window": "tumbling", "window.size.ms": 10000,
           "time.field": "t", "allowed.lateness.ms": 3000, "emit": "final"}
    rows = run_windows(recs, agg, specs, 10000, 10000, 3000)
    assert len(rows) > 100


def test_hopping_event_time_with_lateness():
    specs = ["n=count()", "s=sum(x)", "a=avg(x)"]
    recs = event_records(1500, 5, late_every=40, lateness=2000)
    agg = {"group.by": "g", "aggregates": specs, "window": "hopping", "window.size.ms": 9000,
           "window.advance.ms": 3000, "time.field": "t", "allowed.lateness.ms": 2000,
           "emit": "final"}
    rows = run_windows(recs, agg, specs, 9000, 3000, 2000)
    starts = sorted({iso_ms(r["window_start"]) for r in rows})
    assert all(s % 3000 == 0 for s in starts) and starts[1] - starts[0] == 3000


def test_table_semantics_in_tumbling_windows():
    """Table semantics per window: in each window every entity counts once,
    with its latest record there (older event times ignored); entities move
    between groups; late records beyond the lateness are dropped."""
    import random
    rnd = random.Random(17)
    recs, t = [], BASE_T
    for k in range(3000):
        t += rnd.randrange(0, 60)
        rt = t - (rnd.randrange(1, 2500) if k % 37 == 5 else 0) \
             - (rnd.randrange(9000, 12000) if k % 53 == 7 else 0)
        recs.append({"id": "e%d" % rnd.randrange(30), "g": "g%d" % rnd.randrange(4),
                     "x": rnd.randrange(50), "t": rt})
    recs.append({"id": "e0", "g": "g0", "x": 0, "t": t + 10 ** 7})
    specs = ["n=count()", "s=sum(x)", "mx=max(x)", "l=last(x)"]
    size, lateness = 5000, 3000
    wins, max_t, bound, late = {}, None, None, 0
    for seq, r in enumerate(recs):
        ws = r["t"] // size * size
        if bound is not None and ws + size <= bound:
            late += 1
            continue
        ents = wins.setdefault(ws, {})
        old = ents.get(r["id"])
        if old is not None and r["t"] < old[1]:
            continue
        ents[r["id"]] = (r, r["t"], seq)
        if max_t is None or r["t"] > max_t:
            max_t, bound = r["t"], r["t"] - lateness
    contribs = {}
    for ws, ents in wins.items():
        if ws + size <= bound:
            for r, rt, sq in ents.values():
                contribs.setdefault((ws, r["g"]), []).append((r, rt, sq))
    expected = ref_table(contribs, specs)
    assert late > 0
    agg = {"group.by": "g", "aggregates": specs, "semantics": "table", "entity.key": "id",
           "window": "tumbling", "window.size.ms": size, "time.field": "t",
           "allowed.lateness.ms": lateness, "emit": "final"}
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, recs)
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        wait_equal(expected, lambda: window_rows(read_rows(out), "g"), "final rows per window")
        wait_for(lambda: metric(sp, "agg", "late_dropped") == late, TIMEOUT,
                 "late_dropped == %d" % late)
        # Closed windows free their entities: only the last window's remain.
        wait_for(lambda: metric(sp, "agg", "state_entities") == 1, TIMEOUT, "entities freed")


def test_tumbling_update_mode_emits_window_columns():
    specs = ["n=count()", "s=sum(x)"]
    recs = event_records(500, 9)
    agg = {"group.by": "g", "aggregates": specs, "window": "tumbling", "window.size.ms": 5000,
           "time.field": "t", "emit": "update", "emit.interval.ms": 50}
    contribs = {}
    for seq, r in enumerate(recs):
        contribs.setdefault((r["t"] // 5000 * 5000, r["g"]), []).append((r, r["t"], seq))
    expected = ref_table(contribs, specs)
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, recs)
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        wait_equal(expected, lambda: window_rows(read_rows(out), "g"), "update rows per window")
        wait_for(lambda: metric(sp, "agg", "state_windows") == 1, TIMEOUT,
                 "closed windows are freed (only the last is open)")


def test_processing_time_windows_close_by_wall_clock():
    """Processing-time tumbling windows: rows appear without any further
    input once the window's end passes; every record is counted once."""
    size = 400
    specs = ["n=count()", "s=sum(x)"]
    agg = {"group.by": "g", "aggregates": specs, "window": "tumbling", "window.size.ms": size,
           "time": "processing", "emit": "final"}
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, [])
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        sp.wait_state("agg", "RUNNING")
        total_n = total_s = 0
        for burst in range(3):
            recs = [{"g": "a", "x": burst * 10 + k} for k in range(20)]
            write_ndjson(inp, recs, mode="a")
            total_n += len(recs)
            total_s += sum(r["x"] for r in recs)
            # No more input: the windows close by wall clock alone.
            wait_for(lambda: sum(r["n"] for r in read_rows(out)) == total_n, TIMEOUT,
                     "burst %d closed by the wall clock" % burst)
        rows = read_rows(out)
        assert sum(r["s"] for r in rows) == total_s
        for r in rows:
            s, e = iso_ms(r["window_start"]), iso_ms(r["window_end"])
            assert e - s == size and s % size == 0, r
            assert s <= iso_ms(r["timestamp"]), "the row is stamped when it is emitted: %r" % r
        assert len({r["window_start"] for r in rows}) == len(rows)


# ---------------------------------------------------------------------------
# Emit modes and top-N

def test_update_per_record_is_a_running_total():
    recs = [{"g": "g%d" % (k % 3), "x": k} for k in range(60)]
    agg = {"group.by": "g", "aggregates": ["n=count()", "s=sum(x)"], "emit.interval.ms": 0}
    with started_pipeline(recs, agg) as (sp, inp, out):
        wait_for(lambda: len(read_rows(out)) == len(recs), TIMEOUT, "one row per record")
        running, want = {}, []
        for r in recs:
            n, s = running.get(r["g"], (0, 0))
            running[r["g"]] = (n + 1, s + r["x"])
            want.append((r["g"], n + 1, s + r["x"]))
        got = [(r["g"], r["n"], r["s"]) for r in read_rows(out)]
        assert got == want, got[:10]


def test_update_coalesces_changes_per_interval():
    recs = [{"g": "g%d" % (k % 4), "x": 1} for k in range(4000)]
    agg = {"group.by": "g", "aggregates": ["n=count()"], "emit.interval.ms": 300}
    with started_pipeline(recs, agg) as (sp, inp, out):
        wait_for(lambda: {r["g"]: r["n"] for r in read_rows(out)} == {"g0": 1000, "g1": 1000,
                                                                     "g2": 1000, "g3": 1000},
                 TIMEOUT, "final counts")
        assert len(read_rows(out)) < 200, "changes were not coalesced: %d rows" % len(read_rows(out))


def test_update_on_idle_emits_each_burst_at_once():
    """emit.on.idle: the changed groups come out as soon as the aggregator's
    input runs dry, one row per group per burst, long before the 10-minute
    interval; a second burst gives its rows the same way."""
    first = [{"g": "g%d" % (k % 4), "x": 1} for k in range(4000)]
    second = [{"g": "g%d" % (k % 2), "x": 1} for k in range(1000)]
    agg = {"group.by": "g", "aggregates": ["n=count()"], "emit.interval.ms": 600000,
           "emit.on.idle": True}
    with started_pipeline(first, agg) as (sp, inp, out):

        def table():
            return {r["g"]: r["n"] for r in read_rows(out)}
        wait_for(lambda: table() == {"g0": 1000, "g1": 1000, "g2": 1000, "g3": 1000},
                 TIMEOUT, lambda: "first burst's counts, have %r" % table())
        n1 = len(read_rows(out))
        # Bursts are at least a staging group of records (256), or a poll's
        # lines: far fewer rows than records.
        assert n1 <= 400, "changes were not coalesced: %d rows for 4000 records" % n1
        write_ndjson(inp, second, mode="a")
        wait_for(lambda: table() == {"g0": 1500, "g1": 1500, "g2": 1000, "g3": 1000},
                 TIMEOUT, lambda: "second burst's counts, have %r" % table())
        later = read_rows(out)[n1:]
        assert {r["g"] for r in later} == {"g0", "g1"}, "only the changed groups: %r" % later


def test_update_on_idle_burst_ending_in_a_bad_record():
    """A burst whose last record takes the error path still emits the
    groups the others changed at once, not an interval later."""
    recs = [{"g": "g%d" % (k % 3), "x": 1} for k in range(99)] + [{"x": 1}]
    agg = {"group.by": "g", "aggregates": ["n=count()"], "emit.interval.ms": 600000,
           "emit.on.idle": True, "errors.tolerance": "all"}
    with started_pipeline(recs, agg) as (sp, inp, out):
        wait_for(lambda: {r["g"]: r["n"] for r in read_rows(out)} == {"g0": 33, "g1": 33,
                                                                     "g2": 33},
                 TIMEOUT, lambda: "counts, have %r" % read_rows(out))


def test_complete_emits_the_whole_table_every_interval():
    recs = [{"g": "g%d" % k, "x": k} for k in range(6)]
    agg = {"group.by": "g", "aggregates": ["s=sum(x)"], "emit": "complete", "emit.interval.ms": 100}
    with started_pipeline(recs, agg) as (sp, inp, out):
        # Nothing changes after the input, yet every group keeps being emitted.
        def tables():
            """Emissions, split where the key order starts again."""
            out_tables, cur = [], []
            for r in read_rows(out):
                if cur and r["g"] <= cur[-1]["g"]:
                    out_tables.append(cur)
                    cur = []
                cur.append(r)
            return out_tables  # the last one may still be being written
        full = lambda t: [(r["g"], r["s"]) for r in t] == [("g%d" % k, k) for k in range(6)]
        wait_for(lambda: sum(1 for t in tables() if full(t)) >= 3, TIMEOUT, "three full tables")
        ts = tables()
        first_full = min(i for i, t in enumerate(ts) if full(t))
        assert all(full(t) for t in ts[first_full:]), ts[first_full:]


def test_top_n_complete_and_final():
    import random
    rnd = random.Random(5)
    recs = [{"g": "g%02d" % rnd.randrange(20), "x": rnd.randrange(100), "t": BASE_T + k * 10}
            for k in range(2000)]
    totals = {}
    for r in recs:
        totals[r["g"]] = totals.get(r["g"], 0) + r["x"]
    top3 = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    agg = {"group.by": "g", "aggregates": ["s=sum(x)", "n=count()"], "emit": "complete",
           "emit.interval.ms": 100, "top.by": "s", "top.n": 3}
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, recs)
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        wait_for(lambda: agg_in(sp, len(recs)), TIMEOUT, "all processed")
        # Every emission after the input is the same three rows.
        last_table = lambda: [(r["g"], r["s"]) for r in read_rows(out)[-3:]]
        wait_for(lambda: last_table() == top3, TIMEOUT, "top 3 by sum desc: %r" % top3)
        n = len(read_rows(out))
        wait_for(lambda: len(read_rows(out)) >= n + 6, TIMEOUT, "two more emissions")
        rows = read_rows(out)
        assert [(r["g"], r["s"]) for r in rows[-6:]] in (top3 + top3,
                                                         top3[1:] + top3 + top3[:1],
                                                         top3[2:] + top3 + top3[:2]), rows[-6:]
    # final + top.n asc, per window
    agg = {"group.by": "g", "aggregates": ["s=sum(x)"], "emit": "final", "window": "tumbling",
           "window.size.ms": 5000, "time.field": "t", "top.by": "s", "top.n": 2,
           "top.order": "asc"}
    recs2 = recs + [{"g": "g00", "x": 0, "t": BASE_T + 10 ** 6}]
    closed, _, _ = ref_windows(recs2, "g", ["s=sum(x)"], "t", 5000, 5000, 0)
    per_win = {}
    for (ws, g), v in closed.items():
        per_win.setdefault(ws, []).append((v["s"], g))
    want = []
    for ws in sorted(per_win):
        want += [(ws, g, s) for s, g in sorted(per_win[ws])[:2]]
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, recs2)
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        got = lambda: [(iso_ms(r["window_start"]), r["g"], r["s"]) for r in read_rows(out)]
        wait_for(lambda: len(got()) >= len(want), TIMEOUT, "%d final rows" % len(want))
        assert got() == want, (got()[:6], want[:6])



# ---------------------------------------------------------------------------
# Record keys

def key_text(values, escape):
    r"""The README's record key of a group: each value's text joined with
    '|'; a null is \N; with escape (several group.by fields, or
    group.by.nulls: group) a string's \ and | are written \\ and \|."""
    parts = []
    for v in values:
        if v is None:
            parts.append("\\N")
        elif isinstance(v, bool):
            parts.append("true" if v else "false")
        elif isinstance(v, int):
            parts.append(str(v))
        else:
            parts.append(v.replace("\\", "\\\\").replace("|", "\\|") if escape else v)
    return "|".join(parts)


def keyed_pipeline(inp, aggs):
    """file_source(inp) -> rows -> one aggregator per (name, config) of aggs,
    each writing to the topic of its name -> console_sink (line format:
    "<topic> <key> <value>") on all of them."""
    lines = ["connectors:", "  - name: src", "    connector.class: file_source",
             "    topic: rows", "    file: %s" % q(inp), "    poll.interval.ms: 20"]
    for name, agg in aggs:
        lines += ["  - name: %s" % name, "    connector.class: aggregator", "    topics: rows",
                  "    topic: %s" % name]
        lines += ["    %s: %s" % (k, yaml_scalar(v)) for k, v in agg.items()]
    lines += ["  - name: console", "    connector.class: console_sink",
              "    topics: [%s]" % ", ".join(name for name, _ in aggs)]
    return "\n".join(lines) + "\n"


def console_keys(sp):
    """{topic: {record key: last row}} from console_sink's line output (the
    keys and values of these tests hold no spaces outside the JSON)."""
    out = {}
    for line in sp.stdout_lines():
        topic, key, value = line.split(" ", 2)
        out.setdefault(topic, {})[key] = json.loads(value)
    return out


def test_group_keys_are_distinct_record_keys():
    r"""Two groups never share a record key: with several group.by fields
    (or nulls grouped) strings escape \ and |, and a null is \N, so
    ("x|y","z") and ("x","y|z") no longer both give x|y|z, nor a null and
    the string "null" both null. A single field that cannot be null keeps
    its plain value as the key."""
    pairs = [("x|y", "z"), ("x", "y|z"), ("a\\", "b|c"), ("a|b\\", "c"), ("a", "b"),
             ("\\", "|"), ("\\|", ""), ("", "\\|"), ("null", "\\N")]
    singles = [None, "null", "\\N", "x|y", "a\\b", "x"]
    recs = [{"a": a, "b": b, "g": singles[k % len(singles)], "x": k}
            for k, (a, b) in enumerate(pairs + pairs[:4])]
    aggs = [("pairs", {"group.by": ["a", "b"], "aggregates": ["n=count()", "s=sum(x)"]}),
            ("nulls", {"group.by": "g", "group.by.nulls": "group", "aggregates": ["n=count()"]}),
            # A null group field is refused here (and skipped).
            ("plain", {"group.by": "g", "aggregates": ["n=count()"], "errors.tolerance": "all"})]
    cases = {"pairs": (["a", "b"], recs, True), "nulls": (["g"], recs, True),
             "plain": (["g"], [r for r in recs if r["g"] is not None], False)}
    want = {}
    for topic, (fields, rs, escape) in cases.items():
        groups = {}
        for r in rs:
            groups.setdefault(tuple(r[f] for f in fields), []).append(r["x"])
        want[topic] = {key_text(v, escape): (v, len(xs), sum(xs)) for v, xs in groups.items()}
        assert len(want[topic]) == len(groups), "the reference itself collides"
    for _, agg in aggs:
        agg["emit.interval.ms"] = 50

    def got(sp):
        """{topic: {record key: (group values, n, s)}}: every row its key
        was last seen with."""
        keys = console_keys(sp)
        out = {}
        for topic, (fields, rs, _) in cases.items():
            out[topic] = {}
            for k, row in keys.get(topic, {}).items():
                v = tuple(row[f] for f in fields)
                out[topic][k] = (v, row["n"], row.get("s", want[topic].get(k, (0, 0, 0))[2]))
        return out
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_ndjson(inp, recs)
        sp.write_config(keyed_pipeline(inp, aggs))
        sp.start()
        wait_for(lambda: got(sp) == want, TIMEOUT,
                 lambda: "one record key per group:\n  want %r\n  got  %r" % (want, got(sp)))
        for topic in cases:
            wait_for(lambda: metric(sp, topic, "state_groups") == len(want[topic]), TIMEOUT,
                     "%s: %d groups" % (topic, len(want[topic])))


# ---------------------------------------------------------------------------
# Bounded state

def test_max_groups_refuses_new_groups():
    recs = [{"g": "g%d" % (k % 8), "x": 1} for k in range(80)]
    agg = {"group.by": "g", "aggregates": ["n=count()"], "emit.interval.ms": 50, "max.groups": 5,
           "errors.tolerance": "all"}
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, recs)
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        want = {("g%d" % k,): {"n": 10} for k in range(5)}
        wait_equal(want, lambda: latest(read_rows(out), ["g"]), "5 groups kept")
        wait_for(lambda: metric(sp, "agg", "groups_refused") == 30, TIMEOUT, "30 refused")
        # status.json is rewritten every 100 ms: the host's errors may lag
        # the plugin's metric.
        wait_for(lambda: (host_metric(sp, "agg", "errors") or 0) >= 30, TIMEOUT,
                 lambda: "errors == 30 (now %r)" % host_metric(sp, "agg", "errors"))
        assert host_metric(sp, "agg", "errors") == 30
        assert "max.groups (5) reached: group 'g5' refused" in sp.log()
    agg["errors.tolerance"] = "none"
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, recs)
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        st = sp.wait_state("agg", "FAILED")
        assert "max.groups (5) reached: group 'g5' refused" in st["trace"], st


def test_max_entities_refuses_new_entities():
    recs = [{"id": "e%d" % k, "g": "a", "x": 1} for k in range(6)]
    agg = {"group.by": "g", "aggregates": ["n=count()"], "semantics": "table", "entity.key": "id",
           "max.entities": 4, "errors.tolerance": "all", "emit.interval.ms": 50}
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, recs + [{"id": "e1", "g": "a", "x": 5}])
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        wait_for(lambda: metric(sp, "agg", "entities_refused") == 2, TIMEOUT, "2 refused")
        wait_for(lambda: latest(read_rows(out), ["g"]).get(("a",), {}).get("n") == 4, TIMEOUT,
                 "4 entities counted")
        assert "max.entities (4) reached: entity 'e4' refused" in sp.log()



KEY_LIMIT = 64 * 1024  # the README's bound on a group or entity key, encoded


def test_keys_beyond_64_kib_refused_with_the_reason():
    """A group (or entity) key takes at most 64 KiB, a string its length +
    5 bytes: a single string field of 65,531 bytes is a group, one byte
    more is refused as invalid, with the key's size, the limit and the
    field at fault; the other records go on."""
    fits, over = "k" * (KEY_LIMIT - 5), "k" * (KEY_LIMIT - 4)
    recs = [{"g": fits, "id": "a", "p": "x", "x": 1}, {"g": over, "id": "b", "p": "x", "x": 2},
            {"g": "ok", "id": "e" * (KEY_LIMIT - 4), "p": "x", "x": 3},
            {"g": "ok", "id": "c", "p": "x", "x": 4}]
    aggs = [("groups", {"group.by": "g", "aggregates": ["n=count()", "s=sum(x)"]}),
            ("ents", {"group.by": "p", "semantics": "table", "entity.key": "id",
                      "aggregates": ["n=count()", "s=sum(x)"]})]
    for _, agg in aggs:
        agg.update({"emit.interval.ms": 50, "errors.tolerance": "all"})
    reasons = {
        "groups": "group key is %d bytes, more than the %d allowed (the group.by values "
                  "together, a string taking its length + 5): field 'g' is a string of %d bytes"
                  % (KEY_LIMIT + 1, KEY_LIMIT, len(over)),
        "ents": "entity key is %d bytes, more than the %d allowed (the entity.key values "
                "together, a string taking its length + 5): field 'id' is a string of %d bytes"
                % (KEY_LIMIT + 1, KEY_LIMIT, KEY_LIMIT - 4)}
    want = {"groups": {fits: (1, 1), "ok": (2, 7)}, "ents": {"x": (3, 7)}}
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_ndjson(inp, recs)
        sp.write_config(keyed_pipeline(inp, aggs))
        sp.start()
        got = lambda: {t: {k: (r["n"], r["s"]) for k, r in rows.items()}
                       for t, rows in console_keys(sp).items()}
        wait_for(lambda: got() == want, TIMEOUT,
                 lambda: "groups: %r" % {t: {k[:10]: v for k, v in g.items()}
                                          for t, g in got().items()})
        for name, why in reasons.items():
            wait_for(lambda: metric(sp, name, "records_invalid") == 1, TIMEOUT,
                     "%s: one record invalid" % name)
            # status.json is rewritten every 100 ms: the host's errors may
            # lag the plugin's metric.
            wait_for(lambda: (host_metric(sp, name, "errors") or 0) >= 1, TIMEOUT,
                     lambda: "%s: errors == 1 (now %r)" % (name, host_metric(sp, name, "errors")))
            assert host_metric(sp, name, "errors") == 1
            assert why in sp.log(), "%r not logged:\n%s" % (why, sp.log()[-2000:])


# ---------------------------------------------------------------------------
# Invalid input

def test_invalid_records_take_the_error_path_with_reason():
    lines = [
        '{"g":"a","x":1,"t":%d}' % BASE_T,
        '[1,2]',
        'not json',
        '{"g":"a","t":%d}' % BASE_T,
        '{"g":"a","x":"seven","t":%d}' % BASE_T,
        '{"g":null,"x":1,"t":%d}' % BASE_T,
        '{"g":{"k":1},"x":1,"t":%d}' % BASE_T,
        '{"g":"a","x":1,"t":"yesterday"}',
        '{"g":1,"x":1,"t":%d}' % BASE_T,
        '{"g":"a","x":1,"t":%d}' % (2 ** 60),
        '{"g":"a","x":null,"t":%d}' % BASE_T,
        '{"g":"b","x":2,"t":%d}' % BASE_T,
    ]
    reasons = [
        "value is not a row: value is not a JSON object",
        "value is not a row: value is not valid JSON",
        "field 'x' (aggregated) is missing",
        "field 'x' (aggregated) is STRING, expected INT or DOUBLE",
        "field 'g' (group.by) is null",
        "field 'g' (group.by) is MAP, expected BOOL or INT or STRING or TIMESTAMP",
        "field 't' (time.field) is STRING, expected INT or TIMESTAMP",
        "field 'g' is INT, but earlier records had STRING",
        "time field 't' is 1152921504606846976 ms, out of range",
    ]
    agg = {"group.by": "g", "aggregates": ["n=count()", "s=sum(x)"], "time.field": "t",
           "emit.interval.ms": 50, "errors.tolerance": "all",
           "errors.deadletterqueue.topic.name": "dlq"}
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        dlq = os.path.join(sp.tmp, "dlq.ndjson")
        write_ndjson(inp, lines)
        sp.write_config(pipeline_yaml(inp, out, agg, extra=(
            "  - name: dead\n    connector.class: file_sink\n    topics: dlq\n"
            "    file: %s\n    fsync: false\n" % q(dlq))))
        sp.start()
        want = {("a",): {"n": 2, "s": 1}, ("b",): {"n": 1, "s": 2}}
        wait_equal(want, lambda: latest(read_rows(out), ["g"]), "valid records aggregated")
        wait_for(lambda: spoketest.count_lines(dlq) == len(reasons), TIMEOUT,
                 "%d dead-lettered" % len(reasons))
        log = sp.log()
        for why in reasons:
            assert why in log, "reason %r not logged:\n%s" % (why, log[-3000:])
        # The host's own "not a row" verdicts do not reach the plugin counter
        # differently: every refused record is counted.
        wait_for(lambda: metric(sp, "agg", "records_invalid") == len(reasons), TIMEOUT,
                 "records_invalid == %d" % len(reasons))


# ---------------------------------------------------------------------------
# Snapshots

RESTART_SPECS = ["n=count()", "s=sum(i)", "sd=sum(d)", "a=avg(d)", "var=variance(d)",
                 "mn=min(i)", "mx=max(d)", "f=first(name)", "l=last(name)"]


def restart_case(agg, recs, split, expected, kill=False):
    """Runs recs[:split], stops (SIGTERM, or SIGKILL), appends the rest and
    restarts until the rows match Python's expected totals; then runs the
    same input without interruption: both final states must be identical
    (bit for bit: the snapshot keeps every double as it was)."""
    keys = ["g"]
    live = lambda rows: {k: v for k, v in latest(rows, keys).items() if v.get("n", 1) > 0}
    worker = {"offset.flush.interval.ms": 60000} if kill else None
    with Spoke("", start=False, extra_worker=worker) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, recs[:split])
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        wait_for(lambda: agg_in(sp, split), TIMEOUT, "first part processed")
        snap = os.path.join(sp.state_dir, "snapshots", "agg.snap")
        wait_for(lambda: os.path.exists(snap), TIMEOUT, "a snapshot")
        if kill:
            # Crash once a snapshot covers the whole first part, while the
            # committed offset (flushed every 60 s) still lags behind it.
            size = os.path.getsize(inp)
            def covered():
                try:
                    return any(p.get("offset") == size for p in json.loads(snap_parts(snap)[1]))
                except (ValueError, OSError):
                    return False
            wait_for(covered, TIMEOUT, "a snapshot covering the first part")
            sp.proc.send_signal(signal.SIGKILL)
            sp.proc.wait()
            sp._close()
        else:
            assert sp.stop() == 0
        write_ndjson(inp, recs[split:], mode="a")
        sp.start()
        wait_for(lambda: "state restored" in sp.log(), TIMEOUT, "restored")
        wait_equal(expected, lambda: live(read_rows(out)), "totals after the restart")
        if kill:
            # The source replayed records the snapshot held, and the host skipped them.
            wait_for(lambda: sp.connector("agg").get("metrics", {}).get("replayed_skipped", 0) > 0,
                     TIMEOUT, "replayed records skipped (else this case tests nothing)")
    restarted = live(read_rows(out))
    with Spoke("", start=False) as sp2:
        inp, out2 = os.path.join(sp2.tmp, "in.ndjson"), os.path.join(sp2.tmp, "out.ndjson")
        write_ndjson(inp, recs)
        sp2.write_config(pipeline_yaml(inp, out2, agg))
        sp2.start()
        wait_equal(expected, lambda: live(read_rows(out2)), "uninterrupted run")
    single = live(read_rows(out2))
    strip = lambda m: {k: {c: v for c, v in r.items() if c != "timestamp"} for k, r in m.items()}
    assert strip(restarted) == strip(single), "restarted %r\n!= uninterrupted %r" % (
        strip(restarted), strip(single))


def test_restart_from_snapshot_equals_uninterrupted_run_stream():
    recs = mixed_records(3000, groups=6, seed=21)
    agg = {"group.by": "g", "aggregates": RESTART_SPECS, "time.field": "t", "emit.interval.ms": 50}
    restart_case(agg, recs, 1700, ref_stream(recs, "g", RESTART_SPECS, tfield="t"))


def test_restart_from_snapshot_equals_uninterrupted_run_table():
    recs = mixed_records(3000, groups=6, entities=80, seed=22)
    agg = {"group.by": "g", "aggregates": RESTART_SPECS, "time.field": "t", "emit.interval.ms": 50,
           "semantics": "table", "entity.key": "id"}
    restart_case(agg, recs, 1200, ref_entities(recs, "g", "id", RESTART_SPECS, tfield="t"))


def test_null_group_keys_form_a_group_when_asked_and_survive_a_restart():
    """group.by.nulls: group: the records whose group field is null form one
    group (SQL's GROUP BY), entities move into and out of it, and a restart
    from the snapshot gives the same table; without it a null is refused
    (test_invalid_records_take_the_error_path_with_reason)."""
    r = spoketest.validate("connectors:\n  - name: a\n    connector.class: aggregator\n"
                           "    topics: t\n    topic: u\n    aggregates: [n=count()]\n"
                           "    group.by.nulls: group\n")
    assert r.returncode == 1 and "group.by.nulls: group needs group.by" in r.stderr, r.stderr
    recs = mixed_records(3000, groups=6, entities=80, seed=23)
    for k, rec in enumerate(recs):
        if k % 5 == 0:
            rec["g"] = None
    agg = {"group.by": "g", "group.by.nulls": "group", "aggregates": RESTART_SPECS,
           "time.field": "t", "emit.interval.ms": 50, "semantics": "table", "entity.key": "id"}
    expected = ref_entities(recs, "g", "id", RESTART_SPECS, tfield="t")
    assert (None,) in expected and len(expected) == 7, sorted(expected, key=str)
    restart_case(agg, recs, 1200, expected, kill=True)


def test_restart_after_kill_9_is_exact():
    """kill -9 after a snapshot but long before the offset flush: the source
    replays records the snapshot holds; the totals stay exact."""
    recs = mixed_records(4000, groups=3, seed=23)
    agg = {"group.by": "g", "aggregates": ["n=count()", "s=sum(i)"], "emit.interval.ms": 50}
    restart_case(agg, recs, 2500, ref_stream(recs, "g", ["n=count()", "s=sum(i)"]), kill=True)


def test_restart_keeps_windows_and_watermark():
    specs = ["n=count()", "s=sum(x)"]
    recs = event_records(2000, 31, late_every=50, lateness=3000)
    agg = {"group.by": "g", "aggregates": specs, "window": "tumbling", "window.size.ms": 10000,
           "time.field": "t", "allowed.lateness.ms": 3000, "emit": "final"}
    closed, _, _ = ref_windows(recs, "g", specs, "t", 10000, 10000, 3000)
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, recs[:1000])
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        wait_for(lambda: agg_in(sp, 1000), TIMEOUT, "first half")
        assert sp.stop() == 0
        write_ndjson(inp, recs[1000:], mode="a")
        sp.start()
        wait_equal(closed, lambda: window_rows(read_rows(out), "g"), "windows across a restart")
        rows = read_rows(out)
        keys = [(r["window_start"], r["g"]) for r in rows]
        assert len(keys) == len(set(keys)), "a window was emitted twice"



INT64_MAX = 2 ** 63 - 1
WIDE_SPECS = ["n=count()", "s=sum(x)", "av=avg(x)", "sy=sum(y)", "ay=avg(y)", "vy=var_pop(y)"]


def ref_wide(contribs_by_group):
    """The README's INT sums (exact: null beyond int64) and DOUBLE sums
    (null once they overflow), with avg from the exact sum."""
    out = {}
    for g, recs in contribs_by_group.items():
        xs = [r["x"] for r in recs if r.get("x") is not None]
        ys = [r["y"] for r in recs if r.get("y") is not None]
        row = {"n": len(recs), "s": None, "av": None, "sy": None, "ay": None, "vy": None}
        if xs:
            row["s"] = sum(xs) if -2 ** 63 <= sum(xs) <= INT64_MAX else None
            row["av"] = sum(xs) / len(xs)  # int / int: correctly rounded
        if ys:
            try:
                row["sy"] = math.fsum(ys)
                row["ay"] = row["sy"] / len(ys)
            except OverflowError:
                pass
            # Exactly, in fractions: overflows only if the variance does.
            try:
                row["vy"] = float(statistics.pvariance([fractions.Fraction(y) for y in ys]))
            except OverflowError:
                pass
        out[(g,)] = row
    return out


def wide_records():
    """INT sums that wrap int64 before the restart (at 6) and come back
    after it, or stay beyond; DOUBLE sums that overflow."""
    M, N = INT64_MAX, -2 ** 63
    part1 = [("a", M, None), ("a", M, None), ("b", N, None), ("b", -1, None),
             ("c", M, None), ("c", 1, None), ("d", None, 1e308), ("d", None, 1e308),
             ("e", None, 1.5), ("e", 3, 2.5)]
    part2 = [("a", -M, None), ("c", -5, None), ("e", 4, 1e308), ("b", -7, None)]
    return [{"g": g, "x": x, "y": y} for g, x, y in part1 + part2], len(part1)


def test_int_sums_beyond_int64_give_exact_avg_and_null_sum():
    """avg over INT values is right when their sum wraps int64 (it was
    computed from the wrapped sum: avg(2^63-1, 2^63-1) gave -1); such a sum
    is null rather than a wrapped value, and exact again once back in
    range, across a restart from the snapshot (stream and table
    semantics). A DOUBLE sum that overflows is null in every sink (the
    console printed NaN)."""
    recs, split = wide_records()
    groups = {}
    for r in recs:
        groups.setdefault(r["g"], []).append(r)
    expected = ref_wide(groups)
    assert expected[("a",)]["s"] == INT64_MAX and expected[("b",)]["s"] is None
    assert expected[("d",)]["sy"] is None
    agg = {"group.by": "g", "aggregates": WIDE_SPECS, "emit.interval.ms": 50}
    restart_case(agg, recs, split, expected)

    # Table semantics: entities replace their values, in place (the short
    # path) and through the general one (min/max), wrapping and coming back.
    M = INT64_MAX
    trecs = [{"id": "e1", "g": "a", "x": M, "y": None}, {"id": "e2", "g": "a", "x": M, "y": None},
             {"id": "e3", "g": "b", "x": -M, "y": 1e300}, {"id": "e4", "g": "b", "x": -M, "y": 2.5},
             {"id": "e2", "g": "a", "x": 5, "y": None},        # 2^63 + 4: still beyond
             {"id": "e5", "g": "a", "x": M, "y": None},
             # after the restart
             {"id": "e1", "g": "a", "x": -10, "y": None},      # back in range
             {"id": "e4", "g": "b", "x": 2, "y": 1.0},
             {"id": "e6", "g": "b", "x": -M, "y": None}]
    ents = {}
    for r in trecs:
        ents[r["id"]] = r
    tgroups = {}
    for r in ents.values():
        tgroups.setdefault(r["g"], []).append(r)
    texpected = ref_wide(tgroups)
    for specs in (WIDE_SPECS, WIDE_SPECS + ["mx=max(x)"]):
        agg = {"group.by": "g", "aggregates": specs, "semantics": "table", "entity.key": "id",
               "emit.interval.ms": 50}
        want = {k: dict(v, **({"mx": max(r["x"] for r in tgroups[k[0]])} if len(specs) > 6 else {}))
                for k, v in texpected.items()}
        restart_case(agg, trecs, 6, want)

    # A DOUBLE sum that overflowed: null in the console's table as in JSON.
    console = ("  - name: console\n    connector.class: console_sink\n    topics: totals\n"
               "    format: table\n    columns: [g, n, sy, ay]\n")
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, [r for r in recs if r["g"] == "d"])
        sp.write_config(pipeline_yaml(inp, out, {"group.by": "g", "aggregates": WIDE_SPECS,
                                                 "emit.interval.ms": 50}, extra=console))
        sp.start()
        wait_for(lambda: latest(read_rows(out), ["g"]).get(("d",), {}).get("n") == 2, TIMEOUT,
                 "group d")
        assert latest(read_rows(out), ["g"])[("d",)]["sy"] is None
        line = lambda: [l.split() for l in sp.stdout_lines() if l.split()[:1] == ["d"]]
        wait_for(line, TIMEOUT, "the console's row of d")
        assert line()[-1][1:] == ["2", "null", "null"], line()



# A format version 1 snapshot (the plugin's bytes, after the host's header
# and positions lines), written by the aggregator before version 2 (which
# added the INT sums' wrap count) from V1_RECORDS under V1_AGG.
V1_RECORDS = [{"a": "x|y", "b": "z", "x": INT64_MAX, "d": 0.5},
              {"a": "x", "b": "y|z", "x": 3, "d": 1.25}]
V1_AGG = {"group.by": ["a", "b"], "aggregates": ["n=count()", "s=sum(x)", "av=avg(x)", "sd=sum(d)"],
          "emit.interval.ms": 50}
V1_SNAPSHOT = bytes.fromhex(
    "53504f4b45414747010000007c00000073656d616e746963733d73747265616d3b67726f75702e62793d612c"
    "623b656e746974792e6b65793d3b77696e646f773d6e6f6e652f302f303b74696d653d70726f63657373696e"
    "672f3b616767726567617465733d6e3d636f756e7428292c733d73756d2878292c61763d6176672878292c73"
    "643d73756d286429040000000100000061040100000062040100000078020100000064030200000000000000"
    "0000000000000000000000000000000080010000000000000000000000020000000e0000000403000000787c"
    "7904010000007a00000000000000000000010000000000000000000000000000000100000000000000ffffff"
    "ffffffff7f000000000000000000000000000000000100000000000000ffffffffffffff7f00000000000000"
    "00000000000000000001000000000000000000000000000000000000000000e03f00000000000000000e0000"
    "000401000000780403000000797c7a0000000000000000000001000000000000000000000000000000010000"
    "0000000000030000000000000000000000000000000000000000000000010000000000000003000000000000"
    "000000000000000000000000000000000001000000000000000000000000000000000000000000f43f000000"
    "0000000000944de51a6a9f550f")


def test_version_1_snapshot_still_restores():
    """A snapshot of the previous format (version 1) restores: the totals
    continue exactly (an INT sum that wraps after the restore is null, its
    avg right), and its groups get today's record keys (escaped: the
    snapshot holds the key values, not their text)."""
    more = [{"a": "x|y", "b": "z", "x": 1, "d": 0.25}, {"a": "x", "b": "y|z", "x": 4, "d": None},
            {"a": "x|y", "b": "z", "x": 2, "d": 1.0}]
    groups = {}
    for r in V1_RECORDS + more:
        groups.setdefault((r["a"], r["b"]), []).append(r)
    want = {}
    for v, rs in groups.items():
        xs = [r["x"] for r in rs]
        want[key_text(v, True)] = {
            "a": v[0], "b": v[1], "n": len(rs),
            "s": sum(xs) if -2 ** 63 <= sum(xs) <= INT64_MAX else None, "av": sum(xs) / len(xs),
            "sd": math.fsum(r["d"] for r in rs if r["d"] is not None)}
    assert want[key_text(("x|y", "z"), True)]["s"] is None  # wraps after the restore

    def rows(sp):
        return {k: {c: row[c] for c in ("a", "b", "n", "s", "av", "sd")}
                for k, row in console_keys(sp).get("agg", {}).items()}
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_ndjson(inp, V1_RECORDS)
        covered = os.path.getsize(inp)
        write_ndjson(inp, more, mode="a")
        os.makedirs(os.path.join(sp.state_dir, "snapshots"))
        positions = json.dumps([{"source": "src", "partition": inp, "offset": covered}])
        write_snap(os.path.join(sp.state_dir, "snapshots", "agg.snap"),
                   b"SPOKESNAP 2 0", positions.encode(), V1_SNAPSHOT)
        sp.write_config(keyed_pipeline(inp, [("agg", V1_AGG)]))
        sp.start()
        sp.wait_for(lambda: "restored 2 groups" in sp.log(), TIMEOUT, "the v1 snapshot restored")
        sp.wait_for(lambda: rows(sp) == want, TIMEOUT,
                    lambda: "totals and keys:\n  want %r\n  got  %r" % (want, rows(sp)))
        # status.json is rewritten every 100 ms: it may lag the rows.
        sp.wait_for(lambda: (sp.connector("agg").get("metrics") or {}).get("replayed_skipped")
                    == len(V1_RECORDS), TIMEOUT,
                    lambda: "replayed_skipped == %d (now %r)" % (
                        len(V1_RECORDS), (sp.connector("agg").get("metrics") or {})
                        .get("replayed_skipped")))


def snap_parts(path):
    """Host snapshot file: (header line, positions line, plugin bytes)."""
    data = read_bytes(path)
    a = data.index(b"\n")
    b = data.index(b"\n", a + 1)
    return data[:a], data[a + 1:b], data[b + 1:]


def write_snap(path, header, positions, body):
    """A host snapshot file of body: header ("SPOKESNAP <version> <length>",
    then more words from version 3 on) with its length set to len(body)."""
    words = header.split(b" ")
    words[2] = b"%d" % len(body)
    head = b" ".join(words)
    with open(path, "wb") as f:
        f.write(head + b"\n" + positions + b"\n" + body)


def test_corrupt_or_foreign_snapshot_refused():
    agg = {"group.by": "g", "aggregates": ["n=count()"], "emit.interval.ms": 50}
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, [{"g": "a"}, {"g": "b"}])
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        wait_for(lambda: agg_in(sp, 2), TIMEOUT, "processed")
        assert sp.stop() == 0
        path = os.path.join(sp.state_dir, "snapshots", "agg.snap")
        header, positions, body = snap_parts(path)
        assert body.startswith(b"SPOKEAGG")
        cases = [
            (body[:40] + bytes([body[40] ^ 0x20]) + body[41:], "checksum mismatch"),
            (body[:8] + b"\x63\x00\x00\x00" + body[12:], "snapshot format version 99 is not supported"),
            (b"XXXXXXXX" + body[8:], "not an aggregator snapshot"),
            (body[:20], "checksum mismatch"),
        ]
        for bad, want in cases:
            write_snap(path, header, positions, bad)
            sp.start()
            st = sp.wait_state("agg", "FAILED")
            assert want in st["trace"], "trace %r lacks %r" % (st["trace"], want)
            assert sp.stop() == 0
        # A snapshot of another configuration is refused, naming the difference.
        write_snap(path, header, positions, body)
        agg2 = dict(agg, **{"group.by": "h"})
        sp.write_config(pipeline_yaml(inp, out, agg2))
        sp.start()
        st = sp.wait_state("agg", "FAILED")
        assert "snapshot holds state for group.by=g but the configuration says group.by=h" in \
            st["trace"], st["trace"]
        assert sp.stop() == 0
        # The original snapshot and configuration restore fine.
        sp.write_config(pipeline_yaml(inp, out, agg))
        sp.start()
        sp.wait_state("agg", "RUNNING")
        wait_for(lambda: "restored 2 groups" in sp.log(), TIMEOUT, "restored")



def test_snapshot_of_another_config_says_what_deleting_it_costs():
    """A snapshot of another configuration is refused, and the reason no
    longer just advises deleting it: the state holds records whose offsets
    are committed. The trace says so in short, the log says what each way
    out costs and how to take it; and its claims hold: deleting the
    snapshot alone loses the input it held, and the way it gives to apply
    the new configuration to all the input (stop the source, reset its
    offsets, delete the snapshot, restart the aggregator, resume the
    source) gets it all back, whether the aggregator restarts over REST (the
    positions the refused snapshot listed are forgotten: they used to make
    the restarted task skip the replayed input) or with spoke."""
    from resttest import Api, expect
    first = [{"g": "a", "x": 1}, {"g": "b", "x": 2}]
    later = [{"g": "c", "x": 3}]
    agg = {"group.by": "g", "aggregates": ["s=sum(x)"], "emit.interval.ms": 50}
    agg2 = dict(agg, aggregates=["s=sum(x)", "m=max(x)"])
    for way in ("delete the snapshot alone", "the log's way", "the log's way, spoke restarted"):
        with Spoke("", start=False) as sp:
            inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
            snap = os.path.join(sp.state_dir, "snapshots", "agg.snap")
            write_ndjson(inp, first)
            sp.write_config(pipeline_yaml(inp, out, agg))
            sp.start()
            wait_for(lambda: len(latest(read_rows(out), ["g"])) == 2, TIMEOUT, "first rows")
            assert sp.stop() == 0
            # The premise: the snapshot holds the records, their offsets are committed.
            assert list(sp.offsets()["src"].values()) == [os.path.getsize(inp)], sp.offsets()

            sp.write_config(pipeline_yaml(inp, out, agg2))
            sp.start()
            trace = sp.wait_state("agg", "FAILED")["trace"]
            assert ("snapshot holds state for aggregates=s=sum(x) but the configuration says "
                    "aggregates=s=sum(x),m=max(x): restore that configuration; deleting the "
                    "snapshot loses the input it holds (offsets are committed), see the log") \
                in trace, trace
            log = sp.log()
            for claim in ("the snapshot (snapshots/agg.snap in state.dir) holds state for "
                          "aggregates=s=sum(x), but the configuration now says "
                          "aggregates=s=sum(x),m=max(x)",
                          "their source offsets are committed: no source will send them again",
                          "restore the configuration the snapshot was taken with",
                          "stop them (PUT /connectors/<source>/stop), reset their offsets "
                          "(DELETE /connectors/<source>/offsets), delete the snapshot, "
                          "restart this connector (POST /connectors/<name>/restart) and "
                          "resume them (PUT /connectors/<source>/resume)",
                          "Deleting the snapshot alone starts from empty state"):
                assert claim in log, "%r not logged:\n%s" % (claim, log[-3000:])

            api = Api(sp)
            if way.startswith("the log's way"):
                expect(api.call("PUT", "/connectors/src/stop"), 204, "stop")
                sp.wait_state("src", "STOPPED")
                expect(api.call("DELETE", "/connectors/src/offsets"), 200, "reset offsets")
                if way.endswith("spoke restarted"):
                    assert sp.stop() == 0
                    os.remove(snap)
                    sp.start()
                    api = Api(sp)
                else:
                    os.remove(snap)
                    expect(api.call("POST", "/connectors/agg/restart"), 204, "restart")
                sp.wait_state("agg", "RUNNING")
                expect(api.call("PUT", "/connectors/src/resume"), 202, "resume")
            else:
                os.remove(snap)
                expect(api.call("POST", "/connectors/agg/restart"), 204, "restart")
                sp.wait_state("agg", "RUNNING")
            write_ndjson(inp, later, mode="a")
            kept = later if way == "delete the snapshot alone" else first + later
            want = {(r["g"],): {"s": r["x"], "m": r["x"]} for r in kept}
            wait_equal(want, lambda: {k: v for k, v in latest(read_rows(out), ["g"]).items()
                                      if "m" in v}, "%s: the groups it keeps" % way)
            wait_for(lambda: metric(sp, "agg", "state_groups") == len(kept), TIMEOUT,
                     "%s: %d groups held" % (way, len(kept)))


# ---------------------------------------------------------------------------
# Tombstones

def tomb_pipeline(inp, out, agg):
    """file_source(inp) -> tombtest_transform (lines {"tombstone": "key"} become
    records with that key and a null value) -> aggregator(agg) -> file_sink(out)."""
    y = pipeline_yaml(inp, out, agg)
    y = y.replace("    topic: rows\n", "    topic: raw\n", 1)
    return y.replace("  - name: agg\n", "  - name: make\n    connector.class: tombtest_transform\n"
                     "    mode: make\n    topics: raw\n    topic: rows\n  - name: agg\n", 1)


def tomb_spoke():
    return Spoke("", start=False, extra_worker={
        "plugin.path": [PLUGIN_DIR, TEST_PLUGIN_DIR, tombtest_dir()]})


def tomb(key, ts=None):
    r = {"tombstone": key}
    if ts is not None:
        r["ts"] = ts
    return r


def complete_tables(rows, key):
    """Complete mode: the emissions, each a run of rows in increasing key order."""
    runs = []
    for r in rows:
        if not runs or r[key] <= runs[-1][-1][key]:
            runs.append([])
        runs[-1].append(r)
    return runs


def ref_table_with_deletes(events, group, entity, specs, tfield=None):
    """Table semantics with tombstones: ("del", key, t) retracts the entity
    unless (event time) it is older than the entity's contribution."""
    ents = {}
    for seq, ev in enumerate(events):
        if isinstance(ev, tuple):
            _, key, t = ev
            old = ents.get(key)
            if old is not None and not (tfield and t < old[1]):
                del ents[key]
            continue
        t = ev[tfield] if tfield else 0
        old = ents.get(ev[entity])
        if old is not None and tfield and t < old[1]:
            continue
        ents[ev[entity]] = (ev, t, seq)
    groups = {}
    for r, t, sq in ents.values():
        groups.setdefault((r[group],), []).append((r, t, sq))
    return ref_table(groups, specs)


def test_tombstone_retracts_an_entity_and_unknown_ones_are_counted():
    specs = ["n=count()", "bikes=sum(b)", "mx=max(b)", "mn=min(b)", "l=last(id)"]
    recs = [
        {"id": "s1", "pc": "A", "b": 10},
        {"id": "s2", "pc": "A", "b": 3},
        {"id": "s3", "pc": "B", "b": 7},
        tomb("s1"),             # A loses s1 (and its max)
        tomb("s3"),             # B loses its only station: emitted once with n 0, forgotten
        tomb("s9"),             # never seen: counted, nothing emitted
        tomb("s1"),             # already gone: counted, nothing emitted
        tomb(True),             # no key: ignored
        {"id": "s1", "pc": "A", "b": 5},   # back, as a new entity
    ]
    agg = {"group.by": "pc", "aggregates": specs, "semantics": "table", "entity.key": "id",
           "emit.interval.ms": 0}
    with tomb_spoke() as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, recs)
        sp.write_config(tomb_pipeline(inp, out, agg))
        sp.start()
        wait_for(lambda: agg_in(sp, len(recs)), TIMEOUT, "all records processed")
        wait_for(lambda: len(read_rows(out)) >= 6, TIMEOUT, "6 update rows")
        rows = read_rows(out)
        got = [(r["pc"], r["n"], r["bikes"], r["mx"], r["mn"]) for r in rows]
        assert got == [("A", 1, 10, 10, 10), ("A", 2, 13, 10, 3), ("B", 1, 7, 7, 7),
                       ("A", 1, 3, 3, 3), ("B", 0, None, None, None), ("A", 2, 8, 5, 3)], got
        assert rows[-1]["l"] == "s1", rows[-1]
        want = {"tombstones_applied": 2, "tombstones_unknown": 2, "tombstones_ignored": 1,
                "state_entities": 2, "state_groups": 1, "records_invalid": 0}
        wait_for(lambda: all(metric(sp, "agg", k) == v for k, v in want.items()), TIMEOUT,
                 "metrics %r (now %r)" % (want, {k: metric(sp, "agg", k) for k in want}))
        assert "tombstones (records with a null value) are ignored: a tombstone without a key" \
            in sp.log(), sp.log()[-2000:]


def test_tombstones_complete_mode_event_time_and_restart():
    """Complete mode lists only the groups that still have entities; with
    event time a tombstone older than the entity's record is stale; the
    state after tombstones survives a restart, and tombstones after the
    restart apply to restored entities."""
    import random
    rnd = random.Random(41)
    specs = ["n=count()", "s=sum(x)", "mx=max(x)"]
    first, second = [], []
    for k in range(400):
        first.append({"id": "e%d" % rnd.randrange(40), "g": "g%d" % rnd.randrange(5),
                      "x": rnd.randrange(100), "t": BASE_T + k * 1000})
    t_end = BASE_T + 400 * 1000
    where = {r["id"]: r["g"] for r in first}  # each entity's group now (times increase)
    gone = sorted(e for e, g in where.items() if g == "g4")  # every station of g4 leaves
    first += [tomb(e, t_end) for e in gone]
    first.append(tomb("e0", BASE_T))          # stale: older than e0's record
    first.append(tomb("nobody", t_end))
    for k in range(100):
        second.append({"id": "e%d" % rnd.randrange(40), "g": "g%d" % rnd.randrange(4),
                       "x": rnd.randrange(100), "t": t_end + 1000 + k * 1000})
    second += [tomb(e, t_end + 200000) for e in ("e1", "e2", "e3")]

    def events(recs):
        return [("del", r["tombstone"], r["ts"]) if "tombstone" in r else r for r in recs]
    exp1 = ref_table_with_deletes(events(first), "g", "id", specs, tfield="t")
    exp2 = ref_table_with_deletes(events(first + second), "g", "id", specs, tfield="t")
    assert ("g4",) not in exp1 and len(exp1) == 4, exp1
    agg = {"group.by": "g", "aggregates": specs, "semantics": "table", "entity.key": "id",
           "time.field": "t", "emit": "complete", "emit.interval.ms": 100}
    last = lambda rows: {(r["g"],): r for r in (complete_tables(rows, "g") or [[]])[-1]}
    with tomb_spoke() as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, first)
        sp.write_config(tomb_pipeline(inp, out, agg))
        sp.start()
        wait_for(lambda: agg_in(sp, len(first)), TIMEOUT, "first part processed")
        wait_equal(exp1, lambda: last(read_rows(out)), "complete table after the tombstones")
        wait_for(lambda: metric(sp, "agg", "tombstones_applied") == len(gone) and
                 metric(sp, "agg", "tombstones_unknown") == 1 and
                 metric(sp, "agg", "stale_ignored") == 1, TIMEOUT, "tombstone counters")
        n_ents = sum(r["n"] for r in exp1.values())
        wait_for(lambda: metric(sp, "agg", "state_entities") == n_ents, TIMEOUT,
                 "%d entities left" % n_ents)
        assert sp.stop() == 0
        write_ndjson(inp, second, mode="a")
        sp.start()
        wait_for(lambda: "state restored" in sp.log(), TIMEOUT, "restored")
        wait_equal(exp2, lambda: last(read_rows(out)), "complete table after the restart")
        # Counters restart from 0 with the process; e1..e3 were alive then.
        ids1 = {r["id"] for r in first if "id" in r}
        ids2 = {r["id"] for r in second if "id" in r}
        alive = {e for e in ("e1", "e2", "e3") if (e in ids1 and e not in gone) or e in ids2}
        assert alive, "the case deletes no restored entity"
        wait_for(lambda: metric(sp, "agg", "tombstones_applied") == len(alive), TIMEOUT,
                 "tombstones after the restart applied to restored entities")


def test_tombstones_retract_within_the_windows_of_their_time():
    """Windowed table semantics: a tombstone applies in the open windows of
    its timestamp only; earlier windows keep the entity."""
    specs = ["n=count()", "s=sum(x)"]
    recs = [{"id": "a", "g": "G", "x": 5, "t": BASE_T},            # window 0
            {"id": "b", "g": "G", "x": 7, "t": BASE_T + 100},      # window 0
            {"id": "a", "g": "G", "x": 6, "t": BASE_T + 10000},    # window 1
            {"id": "b", "g": "G", "x": 8, "t": BASE_T + 10100},    # window 1
            tomb("a", BASE_T + 10200)]                             # window 1 only
    ws0 = BASE_T // 10000 * 10000
    agg = {"group.by": "g", "aggregates": specs, "semantics": "table", "entity.key": "id",
           "time.field": "t", "window": "tumbling", "window.size.ms": 10000,
           "allowed.lateness.ms": 100000, "emit.interval.ms": 0}
    with tomb_spoke() as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, recs)
        sp.write_config(tomb_pipeline(inp, out, agg))
        sp.start()
        want = {(ws0, "G"): {"n": 2, "s": 12}, (ws0 + 10000, "G"): {"n": 1, "s": 8}}
        wait_equal(want, lambda: window_rows(read_rows(out), "g"), "per-window totals")
        wait_for(lambda: metric(sp, "agg", "tombstones_applied") == 1, TIMEOUT, "applied once")


def test_tombstones_ignored_when_they_cannot_apply():
    """Stream semantics (an event cannot be taken back), an int entity key,
    a two-field entity key: tombstones are ignored, counted, logged once;
    totals are unchanged and nothing fails."""
    cases = [
        ({"semantics": "stream"}, "they need semantics: table"),
        ({"semantics": "table", "entity.key": "num"}, "the entity.key field is not a string"),
        ({"semantics": "table", "entity.key": ["id", "g"]}, "entity.key has several fields"),
    ]
    recs = [{"id": "s1", "num": 1, "g": "A", "x": 4}, {"id": "s2", "num": 2, "g": "A", "x": 6},
            tomb("s1"), tomb("1"), {"id": "s2", "num": 2, "g": "A", "x": 6}, tomb("s2")]
    for extra, why in cases:
        agg = {"group.by": "g", "aggregates": ["n=count()", "s=sum(x)"], "emit.interval.ms": 50}
        agg.update(extra)
        want = {("A",): {"n": 3, "s": 16}} if extra["semantics"] == "stream" else \
            {("A",): {"n": 2, "s": 10}}
        with tomb_spoke() as sp:
            inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
            write_ndjson(inp, recs)
            sp.write_config(tomb_pipeline(inp, out, agg))
            sp.start()
            wait_equal(want, lambda: latest(read_rows(out), ["g"]), "%s: totals" % why)
            wait_for(lambda: metric(sp, "agg", "tombstones_ignored") == 3, TIMEOUT,
                     "%s: tombstones_ignored == 3" % why)
            assert sp.connector("agg").get("state") == "RUNNING", sp.connector("agg")
            assert not metric(sp, "agg", "records_invalid"), why
            log = sp.log()
            assert log.count("tombstones (records with a null value) are ignored: " + why) == 1, \
                log[-2000:]


# ---------------------------------------------------------------------------
# The real Velib' snapshot

def velib_rows():
    base = os.path.join(SHARED_DATA, "velib")
    status = os.path.join(base, "station_status-2024-11-19.json")
    codes = os.path.join(base, "stations_postcodes.csv")
    if not (os.path.exists(status) and os.path.exists(codes)):
        raise Skip("%s not found: the real Velib' snapshot is not available here" % base)
    postcode = {}
    with open(codes, newline="") as f:
        for r in csv.DictReader(f):
            if r["postcode"].strip():
                postcode[r["stationCode"]] = r["postcode"].strip()
    rows = []
    with open(status) as f:
        for s in json.load(f)["data"]["stations"]:
            if s["stationCode"] not in postcode:
                continue
            types = {}
            for t in s["num_bikes_available_types"]:
                types.update(t)
            rows.append({"stationCode": s["stationCode"], "postcode": postcode[s["stationCode"]],
                         "num_bikes_available": s["num_bikes_available"],
                         "mechanical": types.get("mechanical", 0), "ebike": types.get("ebike", 0),
                         "last_reported": s["last_reported"] * 1000})
    return rows


def test_real_velib_snapshot_per_postcode_totals():
    """Three polls of the real 2024-11-19 snapshot (1,448 stations with a
    postcode) through table semantics: per-postcode totals equal Python's
    sum over ONE snapshot, and the console shows the seed's table."""
    rows = velib_rows()
    aggs = ["total_bikes_available=sum(num_bikes_available)",
            "total_mechanical_bikes=sum(mechanical)", "total_electric_bikes=sum(ebike)"]
    expected = {}
    for r in rows:
        e = expected.setdefault((r["postcode"],), {"total_bikes_available": 0,
                                                   "total_mechanical_bikes": 0,
                                                   "total_electric_bikes": 0})
        e["total_bikes_available"] += r["num_bikes_available"]
        e["total_mechanical_bikes"] += r["mechanical"]
        e["total_electric_bikes"] += r["ebike"]
    assert len(expected) == 85, len(expected)
    agg = {"group.by": "postcode", "semantics": "table", "entity.key": "stationCode",
           "time.field": "last_reported", "aggregates": aggs, "emit.interval.ms": 100}
    console = ("  - name: console\n    connector.class: console_sink\n    topics: totals\n"
               "    format: table\n    columns: [timestamp, postcode, total_bikes_available, "
               "total_mechanical_bikes, total_electric_bikes]\n")
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_ndjson(inp, rows + rows + rows)
        sp.write_config(pipeline_yaml(inp, out, agg, extra=console))
        sp.start()
        wait_equal(expected, lambda: latest(read_rows(out), ["postcode"]), "per-postcode totals")
        wait_for(lambda: agg_in(sp, 3 * len(rows)), TIMEOUT, "three polls processed")
        wait_for(lambda: metric(sp, "agg", "state_entities") == len(rows), TIMEOUT,
                 "%d stations" % len(rows))
        assert metric(sp, "agg", "state_groups") == 85
        header = lambda: [l for l in sp.stdout_lines() if "total_bikes_available" in l]
        wait_for(header, TIMEOUT, "console table")
        header = header()[0]
        assert header.split() == ["timestamp", "postcode", "total_bikes_available",
                                  "total_mechanical_bikes", "total_electric_bikes"], header


if __name__ == "__main__":
    spoketest.main(globals())
