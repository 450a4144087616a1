#!/usr/bin/env python3
"""plugin-schema_mapper: the schema-driven mapper on the real host.

Every scenario runs file_source -> schema_mapper -> file_sink (rows are
written as JSON) and waits until the source's committed offset reaches the
end of the input, i.e. every record was mapped and written, dropped by a
filter, or took the error path. Expected values are computed here, in
Python, from the same inputs: nothing is compared with the mapper's own
idea of the answer.

Covered: unknown property; the config check (spoke validate, REST) and
what is refused at start (contradictory filters, empty lookup tables);
each type and coercion; long values and computed fields exact at the
64-bit edges; stringify keeping a number's text (both parsers); missing,
extra, required and default fields; every malformed-JSON class (both
parsers) on the error path with its reason, dead-lettered; filters (dropped
records are acknowledged, and dropped even when another field fails);
computed fields; lookups (inline, CSV — padded cells trimmed, quoted ones
kept —, JSON; each missing-key behaviour); key and timestamp; CSV input; row input (two mappers chained);
one schema per seed input over the recorded samples in ../shared/data; the
Vélib' schema over the real 2024-11-19 snapshot with the real postcode table;
tombstones (null values) forwarded unchanged with their key.

tombtest_dir() builds a small test transform (also used by
plugin_aggregator.py) that turns marked JSON records into tombstones and
shows a record's key, value forms and timestamp as JSON, which file_sink
does not write.
"""
import csv
import datetime
import json
import os
import shutil
import subprocess
import tempfile

import spoketest
from spoketest import SHARED_DATA, SOURCE_DIR, Skip, Spoke, metric, q, read_bytes, validate, \
    wait_for, write_bytes

TIMEOUT = 120
SCHEMAS = os.path.join(SOURCE_DIR, "schemas")
VELIB = os.path.join(SCHEMAS, "velib_station_status.yaml")


def need_data(*parts):
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        raise Skip("%s is absent (the recorded samples live in ../shared/data)" % path)
    return path


def iso(ms):
    """The host's timestamp text: 2024-11-19T08:22:18.000Z."""
    t = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def iso_of(dt):
    """A naive datetime read as UTC, in the host's timestamp text."""
    delta = dt - datetime.datetime(1970, 1, 1)
    return iso(delta.days * 86400000 + delta.seconds * 1000 + delta.microseconds // 1000)


class Run:
    """Results of one pipeline run."""

    def __init__(self, rows, dlq, log, metrics, raw_out):
        self.rows, self.dlq, self.log, self.metrics, self.raw_out = rows, dlq, log, metrics, raw_out

    def m(self, name):
        return self.metrics.get(name, 0)


def run_mapper(data, schema=None, schema_text=None, mapper_keys=None, dlq=False, tmp=None,
               source_keys=None, chain=None, expect_records=None, expect_records2=None,
               expect_metrics=None):
    """Replays data (bytes) through schema_mapper and returns a Run once the
    source offset reaches the end of the input. mapper_keys: extra config of
    the mapper; chain: the schema text of a second mapper reading the first
    one's rows (the output is then the second's)."""
    own = tmp is None
    tmpdir = tmp or tempfile.mkdtemp(prefix="spoke-sm-")
    try:
        src = os.path.join(tmpdir, "in.data")
        out = os.path.join(tmpdir, "out.ndjson")
        dead = os.path.join(tmpdir, "dead.ndjson")
        write_bytes(src, data)
        if schema_text is not None:
            schema = os.path.join(tmpdir, "schema.yaml")
            write_bytes(schema, schema_text.encode())
        keys = {"errors.tolerance": "all"}
        if dlq:
            keys["errors.deadletterqueue.topic.name"] = "dead"
        keys.update(mapper_keys or {})
        text = ("connectors:\n"
                "  - name: src\n"
                "    connector.class: file_source\n"
                "    topic: raw\n"
                "    file: %s\n"
                "    poll.interval.ms: 20\n" % q(src))
        for k, v in (source_keys or {}).items():
            text += "    %s: %s\n" % (k, spoketest.yaml_scalar(v))
        text += ("  - name: map\n"
                 "    connector.class: schema_mapper\n"
                 "    topics: raw\n"
                 "    topic: rows\n"
                 "    schema.file: %s\n" % q(schema))
        for k, v in keys.items():
            text += "    %s: %s\n" % (k, spoketest.yaml_scalar(v))
        final = "rows"
        if chain is not None:
            schema2 = os.path.join(tmpdir, "schema2.yaml")
            write_bytes(schema2, chain.encode())
            text += ("  - name: map2\n"
                     "    connector.class: schema_mapper\n"
                     "    topics: rows\n"
                     "    topic: rows2\n"
                     "    schema.file: %s\n" % q(schema2))
            final = "rows2"
        text += ("  - name: out\n"
                 "    connector.class: file_sink\n"
                 "    topics: %s\n"
                 "    file: %s\n"
                 "    fsync: false\n" % (final, q(out)))
        if dlq:
            text += ("  - name: deadout\n"
                     "    connector.class: file_sink\n"
                     "    topics: dead\n"
                     "    file: %s\n"
                     "    fsync: false\n" % q(dead))
        size = len(data)
        with Spoke(text, tmp=tmpdir) as s:
            def done():
                if not s.alive():
                    raise AssertionError("spoke exited:\n" + s.log()[-3000:])
                st = s.connector("map")
                if st.get("state") == "FAILED":
                    raise AssertionError("mapper FAILED: %s" % st.get("trace"))
                return s.offsets().get("src", {}).get(src) == size
            wait_for(done, TIMEOUT, "the source offset to reach the end of the input (%d)" % size)
            names = ("records_mapped", "records_filtered", "records_failed")
            for conn, n in (("map", expect_records), ("map2", expect_records2)):
                if n is not None:
                    wait_for(lambda: sum(metric(s, conn, k) or 0 for k in names) == n,
                             TIMEOUT, "%d records counted by %s" % (n, conn))
            # Details the mapper publishes with its totals (another thread
            # writes the status file): waited for, so a count that never
            # arrives fails here with its name.
            for k, v in (expect_metrics or {}).items():
                wait_for(lambda: (metric(s, "map", k) or 0) == v, TIMEOUT,
                         "map's %s to reach %d" % (k, v))
            metrics = dict((s.connector("map").get("metrics") or {}).get("plugin") or {})
            if chain is not None:
                metrics["map2"] = dict((s.connector("map2").get("metrics") or {}).get("plugin")
                                       or {})
            log = s.log()
        raw = read_bytes(out)
        rows = [json.loads(line) for line in raw.splitlines()]
        return Run(rows, read_bytes(dead).splitlines(), log, metrics, raw)
    finally:
        if own:
            import shutil
            shutil.rmtree(tmpdir, ignore_errors=True)


def ndjson(objs):
    """NDJSON bytes: dicts through json.dumps, bytes and str as they are."""
    out = b""
    for o in objs:
        if isinstance(o, bytes):
            line = o
        elif isinstance(o, str):
            line = o.encode()
        else:
            line = json.dumps(o).encode()
        out += line + b"\n"
    return out


# ---------------------------------------------------------------------------
# tombtest_transform: tombstones in, keys out (a test-only plugin)

TOMBTEST_C = r"""
#include <stdio.h>
#include <string.h>
#include <spoke/plugin.h>

/* mode make: a JSON object {"tombstone": "k"} becomes a record with key k
 * and a null value, {"tombstone": true} a null value without a key; "ts"
 * (epoch ms) sets the record timestamp; any other record passes unchanged.
 * mode show: the value becomes {"key", "forms", "ts", "value"}. */
static const char *const modes[] = { "make", "show", NULL };
static const struct spoke_config_field tt_config[] = {
    { .name = "mode", .type = SPOKE_CFG_STRING, .flags = SPOKE_CFG_REQUIRED,
      .doc = "make or show", .allowed = modes },
    { 0 }
};

struct tt_state { const struct spoke_host_api *api; int show; };

static int tt_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                   const struct spoke_config *cfg, void **out, char *err, size_t errsz)
{
    struct tt_state *st = api->alloc(sizeof(*st));
    if (!st)
        return SPOKE_ERR_NOMEM;
    st->api = api;
    st->show = strcmp(api->config_string(cfg, "mode"), "show") == 0;
    *out = st;
    return SPOKE_OK;
}

static int tt_make(struct tt_state *st, struct spoke_record *rec)
{
    const struct spoke_host_api *api = st->api;
    json_t *v = api->record_value_json(rec);
    json_t *t = json_is_object(v) ? json_object_get(v, "tombstone") : NULL;
    if (!t)
        return SPOKE_OK;
    json_t *ts = json_object_get(v, "ts");
    if (json_is_integer(ts))
        api->record_set_timestamp(rec, json_integer_value(ts));
    if (json_is_string(t) && api->record_set_key(rec, (void *)json_string_value(t),
                                                 json_string_length(t), SPOKE_COPY) != SPOKE_OK)
        return SPOKE_ERR_NOMEM;
    return api->record_set_value(rec, NULL, 0, SPOKE_COPY);
}

static int tt_show(struct tt_state *st, struct spoke_record *rec)
{
    const struct spoke_host_api *api = st->api;
    unsigned forms = api->record_value_forms(rec);
    size_t klen = 0, vlen = 0;
    const void *key = api->record_key(rec, &klen);
    const void *val = api->record_value_bytes(rec, &vlen);
    json_t *o = json_object();
    json_object_set_new(o, "key", key ? json_stringn(key, klen) : json_null());
    json_object_set_new(o, "forms", json_integer(forms));
    json_object_set_new(o, "ts", json_integer(api->record_timestamp(rec)));
    json_object_set_new(o, "value", val ? json_loadb(val, vlen, 0, NULL) : json_null());
    return api->record_set_json(rec, o);
}

static int tt_process(void *vst, struct spoke_record *rec, char *err, size_t errsz)
{
    struct tt_state *st = vst;
    return st->show ? tt_show(st, rec) : tt_make(st, rec);
}

static void tt_destroy(void *vst)
{
    struct tt_state *st = vst;
    if (st)
        st->api->free(st);
}

static const struct spoke_plugin tombtest_transform = {
    .hdr = SPOKE_PLUGIN_HEADER_INIT, .name = "tombtest_transform",
    .kind = SPOKE_KIND_TRANSFORM, .version = "0.0.1",
    .description = "Test: makes tombstones, shows keys", .config = tt_config,
    .init = tt_init, .process = tt_process, .destroy = tt_destroy,
};
SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &tombtest_transform; }
"""

_tombtest_dir = None


def tombtest_dir():
    """Builds tombtest_transform.so once (cc + jansson); returns its directory."""
    global _tombtest_dir
    if _tombtest_dir:
        return _tombtest_dir
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    assert cc, "no C compiler (cc) to build the tombstone test transform"
    d = tempfile.mkdtemp(prefix="tombtest-")
    src = os.path.join(d, "tombtest_transform.c")
    write_bytes(src, TOMBTEST_C.encode())
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "jansson"], capture_output=True,
                           text=True, check=True).stdout.split()
    p = subprocess.run([cc, "-std=c11", "-shared", "-fPIC", "-fvisibility=hidden", "-O1",
                        "-I", os.path.join(SOURCE_DIR, "host", "include"), src,
                        "-o", os.path.join(d, "tombtest_transform.so")] + flags,
                       capture_output=True, text=True)
    assert p.returncode == 0, "cannot build the tombstone test transform:\n%s" % p.stderr
    os.unlink(src)  # only .so files in a plugin directory
    _tombtest_dir = d
    return d


# ---------------------------------------------------------------------------
# Configuration

def test_unknown_property_rejected():
    good = ("connectors:\n"
            "  - name: map\n"
            "    connector.class: schema_mapper\n"
            "    topics: raw\n"
            "    topic: rows\n"
            "    schema.file: %s\n" % q(VELIB))
    r = validate(good)
    assert r.returncode == 0, "valid config refused: %s" % r.stderr
    r = validate(good + "    lookup.fiel: x.csv\n")
    assert r.returncode == 1, "misspelled key accepted (rc %d)" % r.returncode
    assert "lookup.fiel" in r.stderr, "error does not name the key: %r" % r.stderr
    r = validate(good + "    lookup.missing: sometimes\n")
    assert r.returncode == 1 and "lookup.missing" in r.stderr, r.stderr
    r = validate(good.replace("    schema.file: %s\n" % q(VELIB), ""))
    assert r.returncode == 1 and "schema.file" in r.stderr, "missing schema.file accepted"


def test_config_check_refuses_before_running():
    """What the connector config alone can tell is refused by `spoke
    validate`, `spoke run` and the REST API (create, config, config/validate)
    before the connector starts, at the key at fault: filter.field without
    filter.values (or the reverse), lookup.inline entries that are not
    key=value, have an empty key, or give a key twice, lookup.default with
    a lookup.missing other than default (it would never be used); several
    mistakes together are all reported."""
    import resttest
    head = ("  - name: map\n    connector.class: schema_mapper\n    topics: raw\n"
            "    topic: rows\n    schema.file: %s\n" % q(VELIB))
    cases = [
        ("filter.field", {"filter.field": "stationCode"},
         "filter.field 'stationCode' needs filter.values"),
        ("filter.field", {"filter.field": "stationCode", "filter.values": []},
         "filter.field 'stationCode' needs filter.values"),
        ("filter.values", {"filter.values": ["16107"]}, "filter.values needs filter.field"),
        ("lookup.inline", {"lookup.inline": ["16107=75016", "32017"]},
         "lookup.inline: entry 2 '32017' is not key=value (no '=')"),
        ("lookup.inline", {"lookup.inline": ["=75016"]},
         "lookup.inline: entry 1 '=75016' has an empty key"),
        ("lookup.inline", {"lookup.inline": ["16107=1", "32017=2", "16107=3"]},
         "lookup.inline: entries 1 and 3 both give key '16107'"),
        ("lookup.default", {"lookup.inline": ["16107=75016"], "lookup.missing": "drop",
                            "lookup.default": "?"},
         "lookup.default is used only with lookup.missing: default (it is drop): set "
         "lookup.missing: default, or remove lookup.default"),
    ]

    def yaml_keys(keys):
        return "".join("    %s: %s\n" % (k, spoketest.yaml_scalar(v)) for k, v in keys.items())

    spoketest.expect_checks_each_refuse(
        head, "map", [(key, yaml_keys(extra), want) for key, extra, want in cases],
        yaml_keys({"filter.field": "stationCode", "filter.values": ["16107"],
                   "lookup.inline": ["16107=a=b", "32017="]}))
    base = {"connector.class": "schema_mapper", "topics": "raw", "topic": "rows",
            "schema.file": VELIB}
    resttest.expect_each_refused("schema_mapper", "map", base,
                                 [(key, {k: v if not isinstance(v, list) else ",".join(v)
                                         for k, v in extra.items()}, want)
                                  for key, extra, want in cases if extra.get("filter.values") != []])
    # Independent mistakes are all reported, each at its own key (the
    # host's check_problem): four errors, two of them on lookup.inline.
    many = {"filter.values": ["16107"], "lookup.missing": "drop", "lookup.default": "?",
            "lookup.inline": ["16107=75016", "32017", "16107=3"]}
    problems = [("filter.values", "filter.values needs filter.field (the field whose values "
                                  "they are)"),
                ("lookup.default", "lookup.default is used only with lookup.missing: default "
                                   "(it is drop)"),
                ("lookup.inline", "lookup.inline: entry 2 '32017' is not key=value (no '=')"),
                ("lookup.inline", "lookup.inline: entries 1 and 3 both give key '16107'")]
    with tempfile.TemporaryDirectory(prefix="spoke-check-") as tmp:
        spoketest.expect_checks_refuse(tmp, head + yaml_keys(many),
                                       [("map", k, w) for k, w in problems])
    sp, api = resttest.rest_spoke("connectors: []\n")
    with sp:
        resttest.expect_refused_all(api, "schema_mapper", "map", dict(base, **{
            k: v if not isinstance(v, list) else ",".join(v) for k, v in many.items()}),
            problems)


def test_contradictory_filters_and_empty_tables_fail_at_start():
    """What needs the schema or a lookup file is refused when the connector
    starts (the connector fails with the reason, file:line:column for the
    schema): a min above a max on one field (in one filter or two), an
    empty in, and a lookup table in which every key would miss (no entries,
    or none with a value), a default that no miss would use (lookup.default
    while the schema's missing is not default and lookup.missing is not set;
    a field default with a missing that is not default, in the schema or
    set by lookup.missing); conditions that can hold, an empty file that
    lookup.inline completes, and defaults that a miss uses, run."""
    with tempfile.TemporaryDirectory(prefix="spoke-sm-") as tmp:
        def path(name, text):
            p = os.path.join(tmp, name)
            write_bytes(p, text.encode())
            return p

        base = "fields:\n  - {name: a, type: int}\n  - {name: s, type: string}\n"
        lk = ("fields:\n  - {name: stationCode, type: string}\n"
              "  - name: postcode\n    type: string\n    lookup: {key: stationCode%s}\n")
        header_only = path("header.csv", "stationCode,postcode\n")
        no_values = path("novalues.csv", "stationCode,postcode\n16107,\n32017,\n")
        empty_json = path("empty.json", "{}")
        lkd = ("fields:\n  - {name: stationCode, type: string}\n"
               "  - name: postcode\n    type: string\n    default: \"?\"\n"
               "    lookup: {key: stationCode%s}\n")
        inline = {"lookup.inline": ["16107=75016"]}
        bad = [  # name, schema text, extra config, (where in the schema, reason): the
                 # error is at the start of the marker's last token (the YAML node)
            ("minmax", base + "filters:\n  - {field: a, min: 5, max: 1}\n", {},
             ("max: 1", "filter on 'a': min 5 is above max 1: no record can pass")),
            ("minmax2", base + "filters:\n  - {field: a, min: 5}\n  - {field: a, max: 4}\n", {},
             ("max: 4", "filter on 'a': min 5 is above max 4: no record can pass")),
            ("maxmin", base + "filters:\n  - {field: s, max: \"a\"}\n  - {field: s, min: \"b\"}\n",
             {}, ('min: "b"', "filter on 's': min \"b\" is above max \"a\": no record can pass")),
            ("emptyin", base + "filters:\n  - {field: s, in: []}\n", {},
             ("[]", "filter on 's': in is empty: no record can pass")),
            ("emptymap", lk % ", map: {}", {},
             ("{key", "field 'postcode': lookup: the table (schema map) is empty: it has no "
                      "entries, so every key would miss")),
            ("headeronly", lk % "", {"lookup.file": header_only},
             (None, "lookup for 'postcode': the table (%s) is empty: it has no entries, so "
                    "every key would miss" % header_only)),
            ("novalues", lk % "", {"lookup.file": no_values},
             (None, "lookup for 'postcode': the table (%s) is empty: none of its 2 entries "
                    "has a value" % no_values)),
            ("emptyjson", lk % "", {"lookup.file": empty_json},
             (None, "the table (%s) is empty: it has no entries" % empty_json)),
            ("lkdefault", lk % ", missing: null", dict(inline, **{"lookup.default": "?"}),
             (None, "lookup.default is used only with missing: default, and field 'postcode' "
                    "has missing: null in the schema (lookup.missing is not set): set "
                    "lookup.missing: default, or remove lookup.default")),
            ("lkdefault2", lk % "", dict(inline, **{"lookup.default": ""}),
             (None, "lookup.default is used only with missing: default, and field 'postcode' "
                    "has missing: null in the schema")),
            ("fielddefault", lkd % ", missing: drop", inline,
             ("{key", "field 'postcode': lookup: a default is used only with missing: default "
                      "(here missing: drop): set missing: default, or remove the field's "
                      "default")),
            ("fielddefault2", lkd % "", dict(inline, **{"lookup.missing": "error"}),
             ("{key", "field 'postcode': lookup: a default is used only with missing: default "
                      "(lookup.missing is error): set lookup.missing: default, or remove the "
                      "field's default")),
        ]
        good = [
            ("equal", base + "filters:\n  - {field: a, min: 3, max: 3}\n  - {field: s, in: [x]}\n",
             {}),
            ("patched", lk % "", {"lookup.file": header_only, "lookup.inline": ["16107=75016"]}),
            ("lkdefaultok", lk % ", missing: default", dict(inline, **{"lookup.default": "?"})),
            ("fielddefaultok", lkd % "", dict(inline, **{"lookup.missing": "default"})),
            ("fielddefaultover", lkd % ", missing: default", dict(inline, **{"lookup.missing": "drop"})),
        ]
        text = "connectors:\n"
        for name, schema, keys in [(n, sc, k) for n, sc, k, _ in bad] + good:
            text += ("  - name: %s\n    connector.class: schema_mapper\n    topics: raw\n"
                     "    topic: rows_%s\n    schema.file: %s\n" % (name, name,
                                                                    q(path(name + ".yaml", schema))))
            text += "".join("    %s: %s\n" % (k, spoketest.yaml_scalar(v)) for k, v in keys.items())
        with Spoke(text, tmp=tmp) as sp:
            def settled(name):
                sp.wait_for(lambda: sp.connector(name).get("state") in ("FAILED", "RUNNING"),
                            TIMEOUT, "connector %s to start or fail" % name)
                return sp.connector(name)

            for name, schema, _, (marker, reason) in bad:
                st = settled(name)
                assert st.get("state") == "FAILED", "%s: %r" % (name, st)
                trace = st.get("trace") or ""
                if marker is not None:
                    at = schema.index(marker) + len(marker) - len(marker.split()[-1])
                    before = schema[:at]
                    line, col = before.count("\n") + 1, len(before) - before.rfind("\n")
                    reason = "%s:%d:%d: %s" % (os.path.join(tmp, name + ".yaml"), line, col, reason)
                assert reason in trace, "%s: %r lacks %r" % (name, trace, reason)
            for name, _, _ in good:
                assert settled(name).get("state") == "RUNNING", sp.connector(name)


def test_bad_schema_fails_with_position():
    with tempfile.TemporaryDirectory(prefix="spoke-sm-") as tmp:
        schema = os.path.join(tmp, "bad.yaml")
        write_bytes(schema, b"fields:\n  - {name: a, type: long}\n  - {name: b, type: integr}\n")
        src = os.path.join(tmp, "in.ndjson")
        write_bytes(src, b'{"a":1}\n')
        text = ("connectors:\n"
                "  - name: src\n    connector.class: file_source\n    topic: raw\n"
                "    file: %s\n"
                "  - name: map\n    connector.class: schema_mapper\n    topics: raw\n"
                "    topic: rows\n    schema.file: %s\n" % (q(src), q(schema)))
        with Spoke(text, tmp=tmp) as s:
            s.wait_state("map", "FAILED")
            trace = s.connector("map").get("trace") or ""
            want = "%s:3:21: field 'b': unknown type 'integr'" % schema
            assert want in trace, "trace %r lacks %r" % (trace, want)
        # A lookup CSV with a bad line: file:line and the reason.
        lk = os.path.join(tmp, "pc.csv")
        write_bytes(lk, b"stationCode,postcode\n16107,75016\n16107,75017\n")
        text = text.replace(q(schema), q(VELIB)) + "    lookup.file: %s\n" % q(lk)
        with Spoke(text, tmp=tmp) as s:
            s.wait_state("map", "FAILED")
            trace = s.connector("map").get("trace") or ""
            assert "%s:3: duplicate key \"16107\" (first at line 2)" % lk in trace, trace


# ---------------------------------------------------------------------------
# Types, coercions, missing and extra fields

TYPES_SCHEMA = """
schema: types
key: code
timestamp: at
fields:
  - {name: code, type: string, required: true}
  - {name: renamed, type: string, path: original.name}
  - {name: small, type: int}
  - {name: big, type: long}
  - {name: ratio, type: double}
  - {name: money, type: double, strip: "$,"}
  - {name: flag, type: bool}
  - {name: word, type: bool}
  - {name: at, type: timestamp, unit: s}
  - {name: at_ms, type: timestamp}
  - {name: at_iso, type: timestamp}
  - {name: at_local, type: timestamp, tz: "+01:00"}
  - {name: at_fmt, type: timestamp, format: "%m/%d/%Y %I:%M:%S %p"}
  - {name: tags, type: list, items: string, path: "tags[*].name"}
  - {name: nums, type: list, items: double, path: nums}
  - {name: third, type: string, path: "tags[2].name"}
  - {name: text, type: string, path: num, stringify: true}
  - {name: level, type: int, default: 3}
  - {name: hidden_n, type: int, path: n, hidden: true}
  - {name: twice, type: long, expr: "hidden_n * 2"}
"""


def test_each_type_and_coercion():
    lines = [
        {"code": "A", "original": {"name": "n\u00e9"}, "small": -5, "big": 9007199254740993,
         "ratio": 0.1, "money": "$1,234.50", "flag": 1, "word": "yes", "at": 1732001704,
         "at_ms": 1732001704123, "at_iso": "2024-11-19T08:22:18.5Z",
         "at_local": "2024-03-28 23:20:19", "at_fmt": "04/06/2016 08:45:00 PM",
         "tags": [{"name": "x"}, {"name": "y"}, {"name": "z"}], "nums": [1, 2.5, "3"],
         "num": 12.50, "level": 9, "n": 21, "extra": {"ignored": [1, 2, 3]}},
        # Numbers as strings, booleans as words, everything optional missing.
        {"code": "B", "small": "42", "big": " -7 ", "ratio": "1e-3", "flag": 0, "word": "N",
         "at": "1732001704", "at_iso": "2024-11-19", "tags": [], "num": True},
    ]
    r = run_mapper(ndjson(lines), schema_text=TYPES_SCHEMA, expect_records=2)
    assert r.m("records_mapped") == 2 and r.m("records_failed") == 0, (r.metrics, r.log[-2000:])
    want = [
        {"code": "A", "renamed": "n\u00e9", "small": -5, "big": 9007199254740993, "ratio": 0.1,
         "money": 1234.5, "flag": True, "word": True, "at": "2024-11-19T07:35:04.000Z",
         "at_ms": "2024-11-19T07:35:04.123Z", "at_iso": "2024-11-19T08:22:18.500Z",
         "at_local": "2024-03-28T22:20:19.000Z", "at_fmt": "2016-04-06T20:45:00.000Z",
         "tags": ["x", "y", "z"], "nums": [1.0, 2.5, 3.0], "third": "z", "text": "12.5",
         "level": 9, "twice": 42},
        {"code": "B", "renamed": None, "small": 42, "big": -7, "ratio": 0.001, "money": None,
         "flag": False, "word": False, "at": "2024-11-19T07:35:04.000Z", "at_ms": None,
         "at_iso": "2024-11-19T00:00:00.000Z", "at_local": None, "at_fmt": None, "tags": [],
         "nums": None, "third": None, "text": "true", "level": 3, "twice": None},
    ]
    assert r.rows == want, "got %r" % r.rows
    # Doubles are written in shortest round-trip form, whole ones with ".0".
    assert b'"ratio":0.1,' in r.raw_out and b'"nums":[1.0,2.5,3.0]' in r.raw_out, r.raw_out


def test_type_errors_required_and_default():
    schema = """
fields:
  - {name: code, type: string, required: true}
  - {name: n, type: int}
  - {name: b, type: bool}
  - {name: at, type: timestamp, unit: s}
  - {name: kind, type: string, default: "unknown"}
"""
    lines = [
        {"code": "ok", "n": 1},                                    # kind gets its default
        {"n": 1},                                                  # missing required
        {"code": None},                                            # required but null
        {"code": 16107},                                           # number for a string
        {"code": "x", "n": 3.5},                                   # fraction for an int
        {"code": "x", "n": 2147483648},                            # out of int range
        {"code": "x", "b": 2},                                     # not 0/1
        {"code": "x", "at": "yesterday"},                          # not a timestamp
        {"code": "x", "n": "12abc"},                               # not a number
        {"code": "y", "kind": None, "unknown": "extra is fine"},   # null takes the default
    ]
    r = run_mapper(ndjson(lines), schema_text=schema, dlq=True, expect_records=len(lines))
    reasons = [
        "missing required field code",
        "required field code is null",
        "code: expected string, got number 16107",
        "n: expected int, got number 3.5 (not a whole number)",
        "n: 2147483648 is out of range for int",
        "b: expected bool (0 or 1), got number 2",
        "at: expected an ISO-8601 timestamp or an epoch number, got string \"yesterday\"",
        "n: expected int, got string \"12abc\"",
    ]
    for reason in reasons:
        assert reason in r.log, "log lacks %r:\n%s" % (reason, r.log[-3000:])
    assert r.log.count("sent to the dead-letter topic") == len(reasons), r.log[-3000:]
    assert r.rows == [{"code": "ok", "n": 1, "b": None, "at": None, "kind": "unknown"},
                      {"code": "y", "n": None, "b": None, "at": None, "kind": "unknown"}], r.rows
    # The dead-letter topic holds the failed records unchanged.
    assert r.dlq == [json.dumps(o).encode() for o in lines[1:9]], r.dlq
    assert r.m("records_failed") == 8 and r.m("records_mapped") == 2, r.metrics


def exact_number(text):
    """The exact value of JSON number text (or of a string holding one, blanks
    around it allowed), as a Fraction: no double in between."""
    from fractions import Fraction
    return Fraction(text.strip().strip('"').strip())


def simdjson_refuses(text):
    """simdjson refuses number tokens it cannot represent (RFC 8259 allows
    them): integers outside [-2^63, 2^64 - 1], and numbers whose double
    overflows."""
    import re
    for tok in re.findall(r'(?<![\w."])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?', text):
        if re.fullmatch(r"-?\d+", tok):
            if not -2 ** 63 <= int(tok) <= 2 ** 64 - 1:
                return True
        elif float(tok) in (float("inf"), float("-inf")):
            return True
    return False


def test_long_edges_are_exact_in_fields_and_expressions():
    """A long is the number's exact value or an error: integers just below
    -2^63 (whose double is -2^63) are out of range, as strings too; numbers
    with a fraction or an exponent are decided by their decimal value, not
    by their double; computed fields are exact at the edges (INT64_MIN - 1
    is out of range, not INT64_MIN). Both parsers give the same rows."""
    schema = """
fields:
  - {name: i, type: int}
  - {name: v, type: long}
  - {name: dec, type: long, expr: "v + -1"}
  - {name: inc, type: long, expr: "v - 1 + 2"}
  - {name: neg, type: long, expr: "-v"}
  - {name: same, type: long, expr: "v / 1"}
"""
    lo, hi = -2 ** 63, 2 ** 63 - 1
    texts = ["-9223372036854775809", "-9223372036854775900", "-9223372036854776832",
             "-9223372036854775808", "-9223372036854775807", "9223372036854775807",
             "9223372036854775808", "18446744073709551616", '"-9223372036854775809"',
             '" -9223372036854775808 "', "-9223372036854775809.0", "-9223372036854775808.0",
             "9223372036854775807.0", "-9.223372036854775809e18", "9007199254740993.0",
             "1.0000000000000000001", "1e-400", "3.5", "42", "-0"]
    lines = ['{"i":%d,"v":%s}' % (k, t) for k, t in enumerate(texts)]

    def in_range(x):
        return x if lo <= x <= hi else None

    want_rows, want_dead = [], []
    for k, t in enumerate(texts):
        x = exact_number(t)
        if x.denominator != 1 or not lo <= x <= hi:
            want_dead.append((k, "not a whole number" if x.denominator != 1
                              else "is out of range for long"))
            continue
        x = int(x)
        want_rows.append({"i": k, "v": x, "dec": in_range(x - 1), "inc": in_range(x + 1),
                          "neg": in_range(-x), "same": x})
    for parser in ("extractor", "simdjson"):
        keep = [k for k, t in enumerate(texts) if parser == "extractor" or not simdjson_refuses(t)]
        data = ndjson([lines[k] for k in keep])
        r = run_mapper(data, schema_text=schema, dlq=True, expect_records=len(keep),
                       mapper_keys={"json.parser": parser, "errors.log.max.per.second": 0})
        assert r.rows == [w for w in want_rows if w["i"] in keep], \
            "%s: got %r\nwant %r" % (parser, r.rows, want_rows)
        dead = [(k, why) for k, why in want_dead if k in keep]
        assert r.dlq == [lines[k].encode() for k, _ in dead], (parser, r.dlq)
        failed = [l for l in r.log.splitlines() if "TRANSFORMATION failed" in l]
        assert len(failed) == len(dead), (parser, failed)
        for (k, why), line in zip(dead, failed):
            assert "v: " in line and why in line, (parser, texts[k], line)


def json_compact(text):
    """JSON text without the blanks between its tokens (strings untouched)."""
    out, in_str, esc = [], False, False
    for c in text:
        if in_str:
            out.append(c)
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif c not in " \t\r\n":
            out.append(c)
    return "".join(out)


def test_stringify_keeps_the_source_text():
    """stringify writes a number exactly as the input has it (no rounding, no
    "null" for 1e400, -0 and 1E+2 as written) and a container as its compact
    text, in a field and in list items, with both parsers (simdjson, whose
    DOM keeps no text, reads such records again with the extractor; numbers
    it cannot represent are refused as invalid JSON)."""
    schema = """
fields:
  - {name: i, type: int}
  - {name: v, type: string, stringify: true}
  - {name: items, type: list, items: string, stringify: true, path: arr}
"""
    texts = ["12", "-0", "0", "1E+2", "1.10", "2.50", "0.1000000000000000055511151231257827",
             "12345678901234567890123", "18446744073709551615", "18446744073709551616",
             "1e400", "-1e400", "1e-400", "9007199254740993.0", "-9223372036854775809", "true",
             '{"a" : [1, 2.50, "x\\u0041 y"]}', "[ 1 , 1e400 ]", "[-0, 1.0]"]
    lines = ['{"i":%d,"v":%s,"arr":[%s, 7.0]}' % (k, t, t) for k, t in enumerate(texts)]
    want = [{"i": k, "v": json_compact(t), "items": [json_compact(t), "7.0"]}
            for k, t in enumerate(texts)]
    for parser in ("extractor", "simdjson"):
        keep = [k for k, t in enumerate(texts) if parser == "extractor" or not simdjson_refuses(t)]
        refused = [k for k in range(len(texts)) if k not in keep]
        r = run_mapper(ndjson(lines), schema_text=schema, dlq=True, expect_records=len(lines),
                       mapper_keys={"json.parser": parser, "errors.log.max.per.second": 0})
        assert r.rows == [want[k] for k in keep], "%s: got %r" % (parser, r.rows)
        assert r.dlq == [lines[k].encode() for k in refused], (parser, r.dlq)
        assert r.log.count("invalid JSON") == len(refused), (parser, r.log[-3000:])
    assert refused, "simdjson refused none of the numbers beyond its range"


# ---------------------------------------------------------------------------
# Malformed JSON: every class on the error path, with its reason

def malformed_cases():
    deep = b'{"stationCode":"1","a":' + b"[" * 10000 + b"]" * 10000 + b"}"
    huge = b'{"stationCode":"1","pad":"' + b"x" * (10 * 1024 * 1024) + b'"}'
    return [
        (b'{"stationCode":"1","num_bikes_available":3', "unexpected end of input (truncated)"),
        (b'{"stationCode":"1"} trailing', "trailing characters after the JSON value"),
        (b'{"stationCode":"1","is_installed":tru}', "invalid literal"),
        (b'{"stationCode":"1","num_bikes_available":01}', "invalid number (leading zero)"),
        (b'{"stationCode":"1","lat":1.}', "invalid number (no digit after the decimal point)"),
        (b'{"stationCode":"\xff1"}', "invalid UTF-8 in a string"),
        (b'{"stationCode":"\xed\xa0\x80"}', "invalid UTF-8 in a string"),
        (b'{"stationCode":"\\ud800"}', "unpaired UTF-16 surrogate"),
        (b'{"stationCode":"a\tb"}', "control character in a string"),
        (b"{'stationCode':'1'}", "expected a string key"),
        (deep, "nesting deeper than 64"),
        (huge, "record of %d bytes is larger than max.record.bytes (1048576)" % len(huge)),
        (b"[1,2]", "expected a JSON object, got an array"),
    ]


def test_malformed_json_classes_take_the_error_path():
    cases = malformed_cases()
    good = [b'{"stationCode":"%d","num_bikes_available":%d}' % (i, i) for i in range(3)]
    data = b""
    for i, (line, _) in enumerate(cases):
        data += good[i % 3] + b"\n" + line + b"\n"
    for parser in ("extractor", "simdjson"):
        r = run_mapper(data, schema=VELIB, dlq=True,
                       mapper_keys={"json.parser": parser, "lookup.inline": ["1=75001"],
                                    "errors.log.max.per.second": 0},  # every reason logged
                       source_keys={"max.line.bytes": 16 * 1024 * 1024},
                       expect_records=2 * len(cases))
        assert len(r.rows) == len(cases), "%s: %d rows" % (parser, len(r.rows))
        assert [row["num_bikes_available"] for row in r.rows] == [i % 3 for i in range(len(cases))]
        assert r.dlq == [c[0] for c in cases], "%s: dead-letter content differs" % parser
        assert r.m("records_failed") == len(cases), (parser, r.metrics)
        failed_lines = [l for l in r.log.splitlines() if "TRANSFORMATION failed" in l]
        assert len(failed_lines) == len(cases), (parser, len(failed_lines))
        if parser == "extractor":
            for (line, reason), logline in zip(cases, failed_lines):
                assert reason in logline, "extractor: %r not in %r" % (reason, logline)
            assert ("invalid JSON at byte %d: unexpected end of input (truncated)" % len(cases[0][0])
                    in failed_lines[0]), failed_lines[0]
        else:
            for (line, reason), logline in zip(cases, failed_lines):
                assert "malformed input" in logline or "invalid argument" in logline, logline
    # Raised limit: the same 10 MB record is valid JSON and maps.
    huge = cases[-2][0]
    r = run_mapper(huge + b"\n", schema=VELIB,
                   mapper_keys={"max.record.bytes": 16 * 1024 * 1024, "lookup.inline": ["1=75001"]},
                   source_keys={"max.line.bytes": 16 * 1024 * 1024}, expect_records=1)
    assert len(r.rows) == 1 and r.rows[0]["stationCode"] == "1" and r.rows[0]["postcode"] == "75001"


def test_errors_tolerance_none_fails_the_connector():
    with tempfile.TemporaryDirectory(prefix="spoke-sm-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_bytes(src, b'{"stationCode":"1"}\n{"stationCode":\n')
        text = ("connectors:\n"
                "  - name: src\n    connector.class: file_source\n    topic: raw\n"
                "    file: %s\n"
                "  - name: map\n    connector.class: schema_mapper\n    topics: raw\n"
                "    topic: rows\n    schema.file: %s\n    lookup.inline: [\"1=75001\"]\n"
                % (q(src), q(VELIB)))
        with Spoke(text, tmp=tmp) as s:
            s.wait_state("map", "FAILED")
            trace = s.connector("map").get("trace") or ""
            assert "invalid JSON at byte 15: unexpected end of input (truncated)" in trace, trace


# ---------------------------------------------------------------------------
# Filters, computed fields, lookups

def test_filters_drop_and_acknowledge():
    schema = """
fields:
  - {name: code, type: string}
  - {name: bikes, type: int}
  - {name: ok, type: bool}
filters:
  - {field: bikes, min: 1, max: 50}
  - {field: ok, eq: true}
  - {field: code, not_in: ["bad"]}
"""
    lines = []
    for i in range(300):
        lines.append({"code": "bad" if i % 10 == 0 else "c%d" % (i % 5), "bikes": i % 60,
                      "ok": i % 3 != 0})
    keep = [o for o in lines if 1 <= o["bikes"] <= 50 and o["ok"] and o["code"] != "bad"
            and o["code"] in ("c1", "c2")]
    r = run_mapper(ndjson(lines), schema_text=schema,
                   mapper_keys={"filter.field": "code", "filter.values": ["c1", "c2"]},
                   expect_records=len(lines))
    assert r.rows == keep, "kept %d, want %d" % (len(r.rows), len(keep))
    assert r.m("records_filtered") == len(lines) - len(keep), r.metrics
    assert r.m("records_failed") == 0 and "failed" not in r.log, r.log[-2000:]


FILTER_FIRST_SCHEMA = """
fields:
  - {name: code, type: string, required: true}
  - {name: n, type: int}
  - {name: venue, type: string, path: venue.name}
  - {name: twice, type: long, expr: "n * 2"}
  - name: postcode
    type: string
    lookup: {key: code, missing: error, map: {"16107": "75016", "32017": "93200"}}
filters:
  - {field: code, in: ["16107", "32017", "99999"]}
  - {field: twice, max: 100}
"""
FILTER_FIRST_CODES = ("16107", "32017", "99999")
FILTER_FIRST_TABLE = {"16107": "75016", "32017": "93200"}


def filter_first_outcome(o, venues=None):
    """What the README says happens to record o under FILTER_FIRST_SCHEMA
    (plus, when venues is given, a field city from place.city and a filter
    venue in venues): ("row", row), ("drop", None) or ("error", first
    reason). A field that fails is unknown; a filter on a known field that
    rejects the record drops it, whatever else failed."""
    errors, known = [], {}
    place = o.get("place")
    if venues is not None:
        if place is not None and not isinstance(place, dict):
            errors.append("place: expected an object")
        else:
            known["city"] = (place or {}).get("city")
    code = o.get("code")
    if "code" not in o:
        errors.append("missing required field code")
    elif code is None:
        errors.append("required field code is null")
    elif not isinstance(code, str):
        errors.append("code: expected string, got number %s" % code)
    else:
        known["code"] = code
    venue = o.get("venue")
    if venue is not None and not isinstance(venue, dict):
        errors.insert(0, "venue: expected an object, got %s"
                      % ("string" if isinstance(venue, str) else "array"))
    else:
        known["venue"] = (venue or {}).get("name")
    n = o.get("n")
    if n is None or isinstance(n, int):
        known["n"] = n
        known["twice"] = None if n is None else 2 * n
    else:
        errors.append('n: expected int, got string "%s"' % n)
    if "code" in known:
        if known["code"] in FILTER_FIRST_TABLE:
            known["postcode"] = FILTER_FIRST_TABLE[known["code"]]
        else:
            errors.append('postcode: no postcode for code "%s"' % known["code"])
    drops = ("code" in known and known["code"] not in FILTER_FIRST_CODES) or \
        ("twice" in known and (known["twice"] is None or known["twice"] > 100)) or \
        (venues is not None and "venue" in known and known["venue"] not in venues)
    if drops:
        return "drop", None
    if errors:
        return "error", errors[0]
    return "row", {k: known[k] for k in ("code", "n", "venue", "twice", "postcode", "city")
                   if k != "city" or venues is not None}


def test_filters_decide_before_errors():
    """A record a filter rejects is dropped even when another of its fields
    cannot be typed, is missing although required, sits below a structure
    mismatch, or has a lookup miss that is an error (then with
    errors.tolerance none the connector keeps running); a record no filter
    can reject takes the error path with its first reason; malformed JSON
    is an error whatever its fields would say."""
    lines = [{"code": "16107", "n": 1},
             {"code": "00001", "n": "n/a"},            # code drops it; n is bad
             {"code": "99999", "n": 500},              # lookup miss (error); twice drops it
             {"code": "99999", "n": 5},                # lookup miss, nothing drops it
             {"code": "00002", "venue": "Paris", "n": 1},   # mismatch; code drops it
             {"code": "16107", "venue": "Paris", "n": 1},   # mismatch, nothing drops it
             {"code": 5, "n": 1000},                   # code bad; twice drops it
             {"code": 5, "n": 1},                      # code bad, nothing drops it
             {"n": 1000},                              # required code missing; twice drops it
             {"n": 1},                                 # required code missing
             {"code": "32017", "n": 1000},             # twice drops it
             {"code": "32017", "n": "x"},              # n bad: twice unknown (not 2000)
             {"code": "12345", "n": "x", "venue": [1]},  # two failures; code drops it
             {"code": "32017", "n": 2}]
    outcomes = [filter_first_outcome(o) for o in lines]
    kinds = [k for k, _ in outcomes]
    assert kinds.count("drop") >= 5 and kinds.count("error") >= 4, outcomes
    malformed = b'{"code":"00001","n":'
    data = ndjson(lines) + malformed + b"\n"
    for parser in ("extractor", "simdjson"):
        r = run_mapper(data, schema_text=FILTER_FIRST_SCHEMA, dlq=True,
                       expect_records=len(lines) + 1,
                       mapper_keys={"json.parser": parser, "errors.log.max.per.second": 0})
        assert r.rows == [row for k, row in outcomes if k == "row"], (parser, r.rows)
        failed = [o for o, (k, _) in zip(lines, outcomes) if k == "error"]
        assert r.dlq == [json.dumps(o).encode() for o in failed] + [malformed], (parser, r.dlq)
        assert r.m("records_filtered") == kinds.count("drop"), (parser, r.metrics)
        assert r.m("records_failed") == len(failed) + 1, (parser, r.metrics)
        logged = [l for l in r.log.splitlines() if "TRANSFORMATION failed" in l]
        reasons = [why for k, why in outcomes if k == "error"]
        assert len(logged) == len(reasons) + 1, (parser, logged)
        for why, line in zip(reasons, logged):
            assert why in line, (parser, why, line)
    # A filter on a field below a structure mismatch cannot decide: the
    # field is not null, it is unknown.
    # field is not null, it is unknown (also when it is not the record's
    # first mismatch).
    venue_lines = [{"code": "16107", "venue": {"name": "Paris"}, "n": 1},
                   {"code": "16107", "venue": "Paris", "n": 1},
                   {"code": "16107", "venue": {"name": "Lyon"}, "n": 1},
                   {"code": "16107", "n": 1},
                   {"code": "16107", "venue": ["Paris"], "n": "x"},
                   {"code": "16107", "place": 7, "venue": "Paris", "n": 1},
                   {"code": "16107", "place": 7, "venue": {"name": "Lyon"}, "n": 1}]
    venue_out = [filter_first_outcome(o, ("Paris",)) for o in venue_lines]
    assert [k for k, _ in venue_out] == ["row", "error", "drop", "drop", "error", "error",
                                         "drop"], venue_out
    schema = FILTER_FIRST_SCHEMA.replace(
        "filters:", "  - {name: city, type: string, path: place.city}\nfilters:") + \
        '  - {field: venue, in: ["Paris"]}\n'
    r = run_mapper(ndjson(venue_lines), dlq=True, expect_records=len(venue_lines),
                   schema_text=schema)
    assert r.rows == [row for k, row in venue_out if k == "row"], r.rows
    assert r.dlq == [json.dumps(o).encode() for o, (k, _) in zip(venue_lines, venue_out)
                     if k == "error"], r.dlq
    # errors.tolerance none: the records a filter drops never fail the connector.
    keep = [o for o, (k, _) in zip(lines, outcomes) if k != "error"]
    r = run_mapper(ndjson(keep), schema_text=FILTER_FIRST_SCHEMA, expect_records=len(keep),
                   mapper_keys={"errors.tolerance": "none"})
    assert r.rows == [row for k, row in outcomes if k == "row"], r.rows
    assert r.m("records_filtered") == kinds.count("drop") and not r.m("records_failed"), r.metrics


def test_computed_fields():
    schema = """
fields:
  - {name: temperature, type: double, path: main.temp}
  - {name: feels_like, type: double, path: main.feels_like}
  - {name: n, type: long}
  - {name: delta, type: double, expr: "temperature - feels_like"}
  - {name: scaled, type: double, expr: "(temperature + 1) * 2 / n"}
  - {name: whole, type: int, expr: "n / 3"}
  - {name: sure, type: double, expr: "delta * -1", default: 0}
"""
    lines = [{"main": {"temp": 9.91, "feels_like": 7.42}, "n": 4},
             {"main": {"temp": -3.5, "feels_like": 1.25}, "n": 0},
             {"main": {"temp": 2}, "n": 7}]
    r = run_mapper(ndjson(lines), schema_text=schema, expect_records=3)
    want = []
    for o in lines:
        t, f, n = o["main"].get("temp"), o["main"].get("feels_like"), o["n"]
        t = float(t) if t is not None else None
        delta = t - f if t is not None and f is not None else None
        want.append({"temperature": t, "feels_like": f, "n": n, "delta": delta,
                     "scaled": (t + 1) * 2 / n if n else None,
                     "whole": int(n / 3), "sure": -delta if delta is not None else 0.0})
    assert r.rows == want, "got %r\nwant %r" % (r.rows, want)


def test_lookups_inline_csv_json_and_missing_keys():
    stations = [{"stationCode": c, "num_bikes_available": i}
                for i, c in enumerate(["16107", "32017", "99999", "16107"])]
    data = ndjson(stations)
    with tempfile.TemporaryDirectory(prefix="spoke-sm-lk-") as tmp:
        pcsv = os.path.join(tmp, "postcodes.csv")
        write_bytes(pcsv, b"stationCode,station_id,postcode,city\n16107,1,75016,Paris\n"
                          b"32017,2,\"93200\",\"Saint-Denis, France\"\n")
        pjson = os.path.join(tmp, "postcodes.json")
        write_bytes(pjson, b'{"16107": "75016", "32017": "93200"}')
        # Written by hand or padded by an export: a byte order mark, CRLF,
        # spaces and tabs around the header names, keys and values (not
        # part of them), a line of blanks; a quoted key keeps its blank, so
        # " 99999" is not 99999.
        padded = os.path.join(tmp, "padded.csv")
        write_bytes(padded, b"\xef\xbb\xbfstationCode , station_id ,\tpostcode\t, city\r\n"
                            b"16107, 1, 75016 ,Paris\r\n"
                            b"32017 ,\t2,\t93200\t, \"Saint-Denis, France\" \r\n"
                            b" \t\r\n"
                            b"\" 99999\",3,00000,Nowhere\r\n")
        cases = [
            ({"lookup.inline": ["16107=75016", "32017=93200"]}, ["75016", "93200", None, "75016"], 1),
            ({"lookup.file": pcsv}, ["75016", "93200", None, "75016"], 1),
            ({"lookup.file": padded}, ["75016", "93200", None, "75016"], 1),
            ({"lookup.file": pjson}, ["75016", "93200", None, "75016"], 1),
            ({"lookup.file": pcsv, "lookup.inline": ["99999=00000"]},
             ["75016", "93200", "00000", "75016"], 0),
            ({"lookup.inline": ["16107=75016"], "lookup.missing": "default",
              "lookup.default": "?"}, ["75016", "?", "?", "75016"], 2),
        ]
        for keys, postcodes, misses in cases:
            r = run_mapper(data, schema=VELIB, mapper_keys=keys, expect_records=4,
                           expect_metrics={"lookup_misses": misses})
            assert [row["postcode"] for row in r.rows] == postcodes, (keys, r.rows)
            assert r.m("lookup_misses") == misses, (keys, r.metrics)
        r = run_mapper(data, schema=VELIB, expect_records=4,
                       mapper_keys={"lookup.file": pcsv, "lookup.missing": "drop"})
        assert [row["stationCode"] for row in r.rows] == ["16107", "32017", "16107"], r.rows
        assert r.m("records_filtered") == 1 and r.m("lookup_misses") == 1, r.metrics
        r = run_mapper(data, schema=VELIB, dlq=True, expect_records=4,
                       mapper_keys={"lookup.file": pcsv, "lookup.missing": "error"})
        assert len(r.rows) == 3 and r.dlq == [json.dumps(stations[2]).encode()], (r.rows, r.dlq)
        assert ('postcode: no postcode for stationCode "99999" in the lookup table (%s)' % pcsv
                in r.log), r.log[-2000:]
    # A table in the schema itself (map), typed on load.
    schema = """
fields:
  - {name: code, type: long}
  - name: zone
    type: int
    lookup: {key: code, missing: error, map: {1: 10, 2: 20}}
"""
    r = run_mapper(ndjson([{"code": 2}, {"code": 1}, {"code": 3}]), schema_text=schema,
                   expect_records=3)
    assert r.rows == [{"code": 2, "zone": 20}, {"code": 1, "zone": 10}], r.rows
    assert "zone: no zone for code \"3\"" in r.log, r.log[-2000:]


# ---------------------------------------------------------------------------
# CSV input and rows from an upstream mapper

def test_csv_input():
    schema = """
input:
  format: csv
  header: true
  columns: [id, name, "Trip Total", when, flag]
fields:
  - {name: id, type: long, required: true}
  - {name: name, type: string}
  - {name: total, type: double, column: Trip Total, strip: "$,"}
  - {name: when, type: timestamp, format: "%m/%d/%Y %I:%M:%S %p"}
  - {name: flag, type: bool, default: false}
"""
    data = (b'id,name,Trip Total,when,flag\n'
            b'1,"Smith, ""Jo""","$1,013.75","04/06/2016 08:45:00 PM",Y\n'
            b'2,,"$0.50",,\n'
            b'3,unterminated "quote,1,,\n'
            b'4,"x"y,1,,\n'
            b'5,a,b\n'
            b'6,\xc3\xa9,1,12/31/2015 11:59:59 AM,n\n')
    r = run_mapper(data, schema_text=schema, expect_records=7)
    assert r.rows == [
        {"id": 1, "name": 'Smith, "Jo"', "total": 1013.75, "when": "2016-04-06T20:45:00.000Z",
         "flag": True},
        {"id": 2, "name": None, "total": 0.5, "when": None, "flag": False},
        {"id": 6, "name": "\u00e9", "total": 1.0, "when": "2015-12-31T11:59:59.000Z",
         "flag": False}], r.rows
    assert r.m("records_filtered") == 1 and r.m("records_failed") == 3, r.metrics
    for reason in ("invalid CSV at byte 15: quote inside an unquoted field",
                   "invalid CSV at byte 5: unexpected character after a closing quote",
                   "invalid CSV: 3 columns, expected 5"):
        assert reason in r.log, "log lacks %r" % reason


def test_row_input_from_a_chained_mapper():
    """The first mapper's records hold rows; the second reads them through the
    row getters (records_from_rows), with key and timestamp the first set."""
    second = """
fields:
  - {name: code, type: string, path: stationCode, required: true}
  - {name: postcode, type: string}
  - {name: mech, type: int, path: mechanical}
  - {name: eb, type: int, path: ebike}
  - {name: total, type: int, expr: "mech + eb"}
  - {name: renting, type: bool, path: is_renting}
  - {name: reported, type: timestamp, path: last_reported}
  - {name: reported_text, type: string, path: last_reported, stringify: true}
  - {name: key, type: string, meta: key}
  - {name: ts, type: timestamp, meta: timestamp}
filters:
  - {field: total, min: 1}
"""
    stations = [
        {"stationCode": "16107", "station_id": 213688169, "num_bikes_available": 3,
         "num_bikes_available_types": [{"mechanical": 2}, {"ebike": 1}], "is_renting": 1,
         "last_reported": 1732001704},
        {"stationCode": "32017", "num_bikes_available_types": [{"ebike": 0}, {"mechanical": 0}],
         "is_renting": 0, "last_reported": 1732001000},
        {"stationCode": "9020", "num_bikes_available_types": [{"mechanical": 5}, {"ebike": 4}],
         "is_renting": 1, "last_reported": 1732002000},
    ]
    r = run_mapper(ndjson(stations), schema=VELIB, chain=second, expect_records=3,
                   expect_records2=3,
                   mapper_keys={"lookup.inline": ["16107=75016", "32017=93200"]})
    wait_rows = [
        {"code": "16107", "postcode": "75016", "mech": 2, "eb": 1, "total": 3, "renting": True,
         "reported": iso(1732001704000), "reported_text": iso(1732001704000), "key": "16107",
         "ts": iso(1732001704000)},
        {"code": "9020", "postcode": None, "mech": 5, "eb": 4, "total": 9, "renting": True,
         "reported": iso(1732002000000), "reported_text": iso(1732002000000), "key": "9020",
         "ts": iso(1732002000000)},
    ]
    assert r.rows == wait_rows, r.rows
    m2 = r.metrics["map2"]
    assert m2.get("records_from_rows") == 3 and m2.get("records_filtered") == 1, m2
    assert "records_from_rows" not in r.metrics, r.metrics  # the first read bytes


# ---------------------------------------------------------------------------
# One schema per seed input, over the recorded samples

def test_seed_meetup_rsvps():
    path = need_data("meetup", "meetup_rsvps.ndjson")
    data = read_bytes(path)
    objs = [json.loads(line) for line in data.splitlines() if line.strip()]
    r = run_mapper(data, schema=os.path.join(SCHEMAS, "meetup_rsvp.yaml"),
                   expect_records=len(objs))
    want = []
    for x in objs:
        v, e, g = x.get("venue") or {}, x.get("event") or {}, x["group"]
        topics = g.get("group_topics", [])
        fl = lambda d: float(d) if d is not None else None
        want.append({
            "rsvp_id": x["rsvp_id"], "mtime": iso(x["mtime"]), "response": x["response"],
            "guests": x.get("guests", 0), "visibility": x.get("visibility"),
            "venue_id": v.get("venue_id"), "venue_name": v.get("venue_name"),
            "venue_lat": fl(v.get("lat")), "venue_lon": fl(v.get("lon")),
            "event_id": e.get("event_id"), "event_name": e.get("event_name"),
            "event_time": iso(e["time"]) if "time" in e else None,
            "group_id": g.get("group_id"), "group_name": g.get("group_name"),
            "group_city": g.get("group_city"), "group_country": g.get("group_country"),
            "group_lat": fl(g.get("group_lat")), "group_lon": fl(g.get("group_lon")),
            "group_topics": [t["topic_name"] for t in topics],
            "first_topic": topics[0]["urlkey"] if topics else None})
    assert len(r.rows) == len(want) == 1000, len(r.rows)
    for i, (got, exp) in enumerate(zip(r.rows, want)):
        assert got == exp, "record %d:\n got %r\nwant %r" % (i, got, exp)
    assert sum(1 for row in r.rows if row["venue_name"] is not None) == 795
    assert r.m("records_failed") == 0, r.metrics


def test_seed_openflights_routes():
    path = need_data("openflights", "routes.dat")
    data = read_bytes(path)
    r = run_mapper(data, schema=os.path.join(SCHEMAS, "openflights_route.yaml"), dlq=True,
                   expect_records=67663)
    # Independently: the seed's producer rule (int() on the ids) keeps 66,765.
    want, offset, bad = [], 0, []
    for raw in data.splitlines(keepends=True):
        offset += len(raw)
        line = raw.rstrip(b"\r\n")  # routes.dat has CRLF line endings
        f = line.decode().split(",")
        if "\\N" in (f[1], f[3], f[5]):
            bad.append(line)
            continue
        want.append({"id": str(offset), "airline": f[0], "airline_id": int(f[1]),
                     "source_airport": f[2], "source_airport_id": int(f[3]),
                     "destination_airport": f[4], "destination_airport_id": int(f[5]),
                     "codeshare": f[6] == "Y", "stops": int(f[7]), "equipment": f[8] or None})
    assert len(want) == 66765 and len(bad) == 898
    assert r.m("records_mapped") == 66765 and r.m("records_failed") == 898, r.metrics
    assert r.dlq == bad
    got = [{k: v for k, v in row.items() if k != "datetime"} for row in r.rows]
    assert got == want
    assert all(row["datetime"].endswith("Z") for row in r.rows[:100])
    # The seed's published result: top 10 source airports.
    counts = {}
    for row in r.rows:
        counts[row["source_airport"]] = counts.get(row["source_airport"], 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:10]
    with open(need_data("openflights", "top10_source_airport.csv")) as fh:
        published = [(row["source_airport"], int(row["count"])) for row in csv.DictReader(fh)]
    assert top == published, top


def test_seed_weather_recorded():
    path = need_data("weather", "brenoha_arch-big-data_local_batch_data.ndjson")
    data = read_bytes(path)
    objs = [json.loads(line) for line in data.splitlines()]
    r = run_mapper(data, schema=os.path.join(SCHEMAS, "weather_city.yaml"),
                   expect_records=len(objs))
    want = []
    for x in objs:
        local = datetime.datetime.strptime(x["date"], "%Y-%m-%d %H:%M:%S")
        want.append({"city": x["city"], "date": iso_of(local - datetime.timedelta(hours=1)),
                     "lon": x["lon"], "lat": x["lat"], "temperature": x["temperature"],
                     "feels_like": x["feels_like"],
                     "feels_like_delta": x["temperature"] - x["feels_like"]})
    assert len(r.rows) == 372
    assert r.rows == want
    paris = [row for row in r.rows if row["city"] == "Paris"]
    assert len(paris) == 31 and paris[0]["feels_like_delta"] == 9.91 - 7.42


def test_seed_openweathermap_current():
    """No raw OpenWeatherMap response is recorded in ../shared/data (see its
    PROVENANCE): objects of the documented shape, one per city."""
    def owm(name, cid, lon, lat, temp, feels, dt, weather=True):
        o = {"coord": {"lon": lon, "lat": lat}, "base": "stations",
             "main": {"temp": temp, "feels_like": feels, "temp_min": temp - 1,
                      "temp_max": temp + 1, "pressure": 1012, "humidity": 81},
             "visibility": 10000, "wind": {"speed": 4.12, "deg": 230}, "clouds": {"all": 75},
             "dt": dt, "sys": {"type": 2, "country": "FR", "sunrise": dt - 30000,
                                "sunset": dt + 10000}, "timezone": 3600, "id": cid,
             "name": name, "cod": 200}
        if weather:
            o["weather"] = [{"id": 803, "main": "Clouds", "description": "broken clouds",
                             "icon": "04n"}]
        return o
    objs = [owm("Paris", 2988507, 2.3488, 48.8534, 9.91, 7.42, 1711664419),
            owm("Marseille", 2995469, 5.38, 43.2965, 14.15, 13.47, 1711664420, weather=False),
            {"name": "Lyon", "dt": 1711664421, "main": {"temp": 13.05}}]
    r = run_mapper(ndjson(objs), schema=os.path.join(SCHEMAS, "openweathermap_current.yaml"),
                   expect_records=3)
    want = []
    for o in objs[:2]:
        w = (o.get("weather") or [{}])[0]
        want.append({"city_id": o["id"], "city": o["name"], "dt": iso(o["dt"] * 1000),
                     "lon": o["coord"]["lon"], "lat": o["coord"]["lat"],
                     "temperature": o["main"]["temp"], "feels_like": o["main"]["feels_like"],
                     "pressure": 1012, "humidity": 81, "wind_speed": 4.12,
                     "weather": w.get("main"), "description": w.get("description"),
                     "feels_like_delta": o["main"]["temp"] - o["main"]["feels_like"]})
    assert r.rows == want, r.rows
    assert "missing required field feels_like" in r.log


def test_seed_chicago_taxi_csv():
    path = need_data("taxi", "chicago_taxi_trips_sample_jweinflash.csv")
    data = read_bytes(path)
    r = run_mapper(data, schema=os.path.join(SCHEMAS, "chicago_taxi_trip.yaml"),
                   expect_records=1251)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))

    def ts(s):
        return iso_of(datetime.datetime.strptime(s, "%m/%d/%Y %I:%M:%S %p")) if s else None

    def num(s, kind=float):
        return kind(s.replace("$", "").replace(",", "")) if s else None

    want = []
    for x in rows:
        fare, tips = num(x["Fare"]), num(x["Tips"])
        want.append({
            "trip_id": x["Trip ID"], "taxi_id": x["Taxi ID"] or None,
            "trip_start": ts(x["Trip Start Timestamp"]), "trip_end": ts(x["Trip End Timestamp"]),
            "trip_seconds": num(x["Trip Seconds"], int), "trip_miles": num(x["Trip Miles"]),
            "pickup_census_tract": num(x["Pickup Census Tract"], int),
            "dropoff_census_tract": num(x["Dropoff Census Tract"], int),
            "pickup_area": num(x["Pickup Community Area"], int),
            "dropoff_area": num(x["Dropoff Community Area"], int),
            "fare": fare, "tips": tips, "tolls": num(x["Tolls"]), "extras": num(x["Extras"]),
            "trip_total": num(x["Trip Total"]), "payment_type": x["Payment Type"] or None,
            "company": x["Company"] or None,
            "pickup_lat": num(x["Pickup Centroid Latitude"]),
            "pickup_lon": num(x["Pickup Centroid Longitude"]),
            "dropoff_lat": num(x["Dropoff Centroid Latitude"]),
            "dropoff_lon": num(x["Dropoff Centroid Longitude"]),
            "community_area": num(x["Community Areas"], int),
            "tip_ratio": tips / fare if fare else None})
    assert len(want) == 1250 and r.m("records_filtered") == 1, r.metrics  # the header line
    assert r.m("records_failed") == 0, r.log[-2000:]
    for i, (got, exp) in enumerate(zip(r.rows, want)):
        assert got == exp, "row %d:\n got %r\nwant %r" % (i, got, exp)
    assert len(r.rows) == 1250
    assert round(sum(row["trip_total"] for row in r.rows), 2) == \
        round(sum(num(x["Trip Total"]) for x in rows), 2)


def velib_snapshot_ndjson():
    path = need_data("velib", "station_status-2024-11-19.json")
    with open(path) as fh:
        stations = json.load(fh)["data"]["stations"]
    return stations, b"".join(json.dumps(s).encode() + b"\n" for s in stations)


def test_velib_snapshot_all_stations_with_postcodes():
    stations, data = velib_snapshot_ndjson()
    pcsv = need_data("velib", "stations_postcodes.csv")
    with open(pcsv, newline="") as fh:
        postcode = {row["stationCode"]: row["postcode"] or None for row in csv.DictReader(fh)}

    def pick(types, k):
        return next((d[k] for d in types if k in d), None)

    for parser in ("extractor", "simdjson"):
        r = run_mapper(data, schema=VELIB, expect_records=len(stations),
                       mapper_keys={"lookup.file": pcsv, "json.parser": parser})
        assert len(r.rows) == len(stations) == 1485, len(r.rows)
        misses = 0
        for s, row in zip(stations, r.rows):
            types = s["num_bikes_available_types"]
            pc = postcode.get(s["stationCode"])
            misses += pc is None
            assert row["stationCode"] == s["stationCode"]
            assert row["mechanical"] == pick(types, "mechanical"), (s, row)
            assert row["ebike"] == pick(types, "ebike"), (s, row)
            assert row["postcode"] == pc, (s["stationCode"], row["postcode"], pc)
            assert row["num_bikes_available"] == s["num_bikes_available"]
            assert row["station_id"] == s["station_id"]
            assert row["is_installed"] == (s["is_installed"] == 1)
            assert row["last_reported"] == iso(s["last_reported"] * 1000)
            assert row["name"] is None and row["lat"] is None
        assert r.m("lookup_misses") == misses, (r.metrics, misses)
        assert misses == 1485 - sum(1 for s in stations if postcode.get(s["stationCode"]))


def test_velib_default_pipeline_two_stations():
    stations, data = velib_snapshot_ndjson()
    r = run_mapper(data, schema=VELIB, expect_records=len(stations),
                   mapper_keys={"lookup.inline": ["16107=75016", "32017=93200"],
                                "filter.field": "stationCode",
                                "filter.values": ["16107", "32017"]})
    want = [s for s in stations if s["stationCode"] in ("16107", "32017")]
    assert [row["stationCode"] for row in r.rows] == [s["stationCode"] for s in want]
    assert {row["stationCode"]: row["postcode"] for row in r.rows} == \
        {s["stationCode"]: {"16107": "75016", "32017": "93200"}[s["stationCode"]] for s in want}
    assert r.m("records_filtered") == len(stations) - len(want), r.metrics
    assert r.m("lookup_misses") == 0, r.metrics


# ---------------------------------------------------------------------------
# Tombstones

def test_tombstones_pass_through_with_their_key():
    """A record with a null value has nothing to map: it is forwarded as it
    is, key and timestamp included, past filters and lookups (there is no
    field to test), so a table downstream can delete that key."""
    station = {"station_id": 213688169, "stationCode": "16107", "num_bikes_available": 1,
               "num_bikes_available_types": [{"mechanical": 1}, {"ebike": 0}],
               "num_docks_available": 34, "is_installed": 1, "is_returning": 1,
               "is_renting": 1, "last_reported": 1732001704}
    other = dict(station, stationCode="32017", station_id=1)
    lines = [station,
             {"tombstone": "16107", "ts": 1732004538000},
             {"tombstone": "99999", "ts": 1732004538000},  # no postcode: would be dropped
             {"tombstone": True},                           # no key at all
             other]                                          # filtered out
    with tempfile.TemporaryDirectory(prefix="spoke-sm-") as tmp:
        src, out = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        data = ndjson(lines)
        write_bytes(src, data)
        text = ("connectors:\n"
                "  - name: src\n    connector.class: file_source\n    topic: raw\n"
                "    file: %s\n    poll.interval.ms: 20\n"
                "  - name: make\n    connector.class: tombtest_transform\n    mode: make\n"
                "    topics: raw\n    topic: marked\n"
                "  - name: map\n    connector.class: schema_mapper\n    topics: marked\n"
                "    topic: rows\n    schema.file: %s\n"
                "    lookup.inline: [\"16107=75016\"]\n    lookup.missing: drop\n"
                "    filter.field: stationCode\n    filter.values: [\"16107\"]\n"
                "  - name: show\n    connector.class: tombtest_transform\n    mode: show\n"
                "    topics: rows\n    topic: shown\n"
                "  - name: out\n    connector.class: file_sink\n    topics: shown\n"
                "    file: %s\n    fsync: false\n" % (q(src), q(VELIB), q(out)))
        extra = {"plugin.path": [spoketest.PLUGIN_DIR, spoketest.TEST_PLUGIN_DIR,
                                 tombtest_dir()]}
        with Spoke(text, tmp=tmp, extra_worker=extra) as s:
            wait_for(lambda: s.offsets().get("src", {}).get(src) == len(data), TIMEOUT,
                     "every record acknowledged")
            wait_for(lambda: metric(s, "map", "tombstones_forwarded") == 3, TIMEOUT,
                     "tombstones_forwarded == 3 (now %r)" % metric(s, "map", "tombstones_forwarded"))
            assert metric(s, "map", "records_mapped") == 1, s.connector("map")
            assert metric(s, "map", "records_filtered") == 1, s.connector("map")
            assert not metric(s, "map", "records_failed"), s.connector("map")
        got = [json.loads(line) for line in read_bytes(out).splitlines()]
        assert len(got) == 4, got
        row, t1, t2, t3 = got
        assert row["key"] == "16107" and row["forms"] & 2, row
        assert row["value"]["postcode"] == "75016" and row["value"]["mechanical"] == 1, row
        assert row["ts"] == 1732001704000, row
        assert t1 == {"key": "16107", "forms": 0, "ts": 1732004538000, "value": None}, t1
        assert t2 == {"key": "99999", "forms": 0, "ts": 1732004538000, "value": None}, t2
        assert t3["key"] is None and t3["forms"] == 0 and t3["value"] is None, t3


if __name__ == "__main__":
    spoketest.main(globals())
