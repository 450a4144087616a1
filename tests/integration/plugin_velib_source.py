#!/usr/bin/env python3
"""plugin-velib_source: velib_source against a local HTTP server (httpfixture)
serving the real recorded Vélib' feeds from ../shared/data/velib, and
misbehaving on demand.

Output is checked through file_sink (the values, as JSON) and through a tiny
recording sink compiled by this test (keys, timestamps, source positions,
value forms and row types, which file_sink does not show), against an
independent reading of the same files with Python's json module.
"""
import copy
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import spoketest
from httpfixture import HttpFixture, Response, http_date
from resttest import Api
from spoketest import (PLUGIN_DIR, SOURCE_DIR, TEST_PLUGIN_DIR, Skip, Spoke, metric, q, run_spoke,
                       validate, wait_for)

TIMEOUT = 60
DATA = os.path.join(spoketest.SHARED_DATA, "velib")
STATUS_2024 = "station_status-2024-11-19.json"
INFO_2024 = "station_information-2024-11-19.json"
STATUS_2022 = "station_status-2022-05.json"
INFO_2022 = "station_information-2022-05.json"

STATUS_FIELDS = ["station_id", "stationCode", "num_bikes_available", "numBikesAvailable",
                 "num_bikes_available_types", "num_docks_available", "numDocksAvailable",
                 "is_installed", "is_returning", "is_renting", "last_reported"]
INFO_FIELDS = ["name", "lat", "lon", "capacity"]
SCHEMA_TYPES = {"station_id": "int", "stationCode": "string", "num_bikes_available": "int",
                "numBikesAvailable": "int", "num_bikes_available_types": "list",
                "num_docks_available": "int", "numDocksAvailable": "int", "is_installed": "int",
                "is_returning": "int", "is_renting": "int", "last_reported": "int",
                "name": "string", "lat": "double", "lon": "double", "capacity": "int"}
FEW = ["16107", "32017", "9020"]


# ---------------------------------------------------------------------------
# the recorded feeds, read independently

def need_data():
    for name in (STATUS_2024, INFO_2024, STATUS_2022, INFO_2022):
        if not os.path.exists(os.path.join(DATA, name)):
            raise Skip("the recorded Vélib' feeds are not in %s (%s missing): these tests serve "
                       "them over HTTP" % (DATA, name))


def data_path(name):
    return os.path.join(DATA, name)


_loaded = {}


def load(name):
    if name not in _loaded:
        with open(data_path(name), "rb") as f:
            _loaded[name] = json.load(f)
    return copy.deepcopy(_loaded[name])


def expected_rows(status, info=None, codes=None):
    """What velib_source must emit for a snapshot: each selected station's
    fields in schema order, joined with info by station_id (info None: no
    join, so no info fields at all)."""
    by_id = {s["station_id"]: s for s in info["data"]["stations"]} if info else {}
    out = []
    for s in status["data"]["stations"]:
        if codes and s["stationCode"] not in codes:
            continue
        row = {f: s.get(f) for f in STATUS_FIELDS}
        if info is not None:
            i = by_id.get(s.get("station_id"), {})
            for f in INFO_FIELDS:
                row[f] = s[f] if s.get(f) is not None else i.get(f)
        out.append(row)
    return out


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def variant(status, luo, bump=0):
    """A snapshot derived from a real one: a new lastUpdatedOther and, with
    bump, different bike counts at every station (new content)."""
    v = copy.deepcopy(status)
    v["lastUpdatedOther"] = luo
    if bump:
        for s in v["data"]["stations"]:
            s["num_docks_available"] += bump
            s["numDocksAvailable"] += bump
    return v


# ---------------------------------------------------------------------------
# a recording sink: key, timestamp, position, value forms and row types

RECORDER_C = r"""
#include <stdio.h>
#include <string.h>
#include <spoke/plugin.h>

static const struct spoke_config_field rec_config[] = {
    { "file", SPOKE_CFG_STRING, NULL, SPOKE_CFG_REQUIRED, "Where to append one line per record" },
    { 0 }
};

struct rec_state { const struct spoke_host_api *api; FILE *f; };

static const char *tname(enum spoke_type t)
{
    switch (t) {
    case SPOKE_TYPE_NULL: return "null";
    case SPOKE_TYPE_BOOL: return "bool";
    case SPOKE_TYPE_INT: return "int";
    case SPOKE_TYPE_DOUBLE: return "double";
    case SPOKE_TYPE_STRING: return "string";
    case SPOKE_TYPE_TIMESTAMP: return "timestamp";
    case SPOKE_TYPE_LIST: return "list";
    case SPOKE_TYPE_MAP: return "map";
    }
    return "?";
}

/* [[name, declared type, nested...]] for a map row; [type, ...] for a list. */
static json_t *describe(const struct spoke_host_api *api, const struct spoke_row *row)
{
    json_t *a = json_array();
    const struct spoke_schema *s = api->row_schema(row);
    for (size_t i = 0; i < api->row_count(row); i++) {
        enum spoke_type t = s ? api->schema_type(s, i) : api->row_type(row, i);
        json_t *d = json_array();
        if (s)
            json_array_append_new(d, json_string(api->schema_name(s, i)));
        json_array_append_new(d, json_string(tname(t)));
        if (api->row_get_row(row, i))
            json_array_append_new(d, describe(api, api->row_get_row(row, i)));
        json_array_append_new(a, d);
    }
    return a;
}

static int rec_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                    const struct spoke_config *cfg, void **out, char *err, size_t errsz)
{
    struct rec_state *st = api->alloc(sizeof(*st));
    if (!st)
        return SPOKE_ERR_NOMEM;
    st->api = api;
    st->f = fopen(api->config_string(cfg, "file"), "a");
    if (!st->f) {
        api->free(st);
        snprintf(err, errsz, "cannot open the output");
        return SPOKE_ERR_IO;
    }
    *out = st;
    return SPOKE_OK;
}

static int rec_put(void *vst, const struct spoke_record *rec, char *err, size_t errsz)
{
    struct rec_state *st = vst;
    const struct spoke_host_api *api = st->api;
    json_t *o = json_object();
    size_t klen = 0, vlen = 0;
    const char *part = NULL;
    int64_t off = -1;
    unsigned forms = api->record_value_forms(rec);  /* before any getter adds one */
    const void *key = api->record_key(rec, &klen);
    api->record_position(rec, &part, &off);
    json_object_set_new(o, "topic", json_string(api->record_topic(rec)));
    json_object_set_new(o, "key", key ? json_stringn(key, klen) : json_null());
    json_object_set_new(o, "ts", json_integer(api->record_timestamp(rec)));
    json_object_set_new(o, "part", part ? json_string(part) : json_null());
    json_object_set_new(o, "off", json_integer(off));
    json_object_set_new(o, "forms", json_integer(forms));
    const struct spoke_row *row = api->record_value_row(rec, NULL);
    json_object_set_new(o, "schema", row ? describe(api, row) : json_null());
    const void *val = api->record_value_bytes(rec, &vlen);
    json_object_set_new(o, "value", val ? json_loadb(val, vlen, 0, NULL) : json_null());
    int rc = json_dumpf(o, st->f, JSON_COMPACT) == 0 && fputc('\n', st->f) != EOF;
    json_decref(o);
    if (!rc) {
        snprintf(err, errsz, "write failed");
        return SPOKE_ERR_IO;
    }
    return SPOKE_OK;
}

static int rec_flush(void *vst, char *err, size_t errsz)
{
    struct rec_state *st = vst;
    return fflush(st->f) == 0 ? SPOKE_OK : SPOKE_ERR_IO;
}

static void rec_destroy(void *vst)
{
    struct rec_state *st = vst;
    if (!st)
        return;
    fclose(st->f);
    st->api->free(st);
}

static const struct spoke_plugin velibtest_sink = {
    .hdr = SPOKE_PLUGIN_HEADER_INIT, .name = "velibtest_sink", .kind = SPOKE_KIND_SINK,
    .version = "0.0.1", .description = "Test recorder for plugin_velib_source.py",
    .config = rec_config, .init = rec_init, .put = rec_put, .flush = rec_flush,
    .destroy = rec_destroy,
};
SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &velibtest_sink; }
"""

_recorder_dir = None


def recorder_dir():
    """Builds velibtest_sink.so once (cc + jansson); returns its directory."""
    global _recorder_dir
    if _recorder_dir:
        return _recorder_dir
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    assert cc, "no C compiler (cc) to build the recording test sink"
    d = tempfile.mkdtemp(prefix="velibtest-sink-")
    src = os.path.join(d, "velibtest_sink.c")
    with open(src, "w") as f:
        f.write(RECORDER_C)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "jansson"], capture_output=True,
                           text=True, check=True).stdout.split()
    p = subprocess.run([cc, "-std=c11", "-shared", "-fPIC", "-fvisibility=hidden", "-O1",
                        "-I", os.path.join(SOURCE_DIR, "host", "include"), src,
                        "-o", os.path.join(d, "velibtest_sink.so")] + flags,
                       capture_output=True, text=True)
    assert p.returncode == 0, "cannot build the recording test sink:\n%s" % p.stderr
    os.unlink(src)  # only .so files in a plugin directory
    _recorder_dir = d
    return d


# ---------------------------------------------------------------------------
# pipelines

def pipeline(url, out, info_url="", extra=None, rec=None):
    """velib_source -> stations -> file_sink(out) [+ velibtest_sink(rec)]."""
    keys = {"url": url, "information.url": info_url, "poll.interval.ms": 100,
            "backoff.initial.ms": 50, "backoff.max.ms": 200, "request.timeout.ms": 5000,
            "information.interval.ms": 3600000}
    keys.update(extra or {})
    y = ("connectors:\n"
         "  - name: velib\n"
         "    connector.class: velib_source\n"
         "    topic: stations\n")
    for k, v in keys.items():
        if isinstance(v, (list, tuple)):
            y += "    %s: [%s]\n" % (k, ", ".join(q(str(x)) for x in v))
        else:
            y += "    %s: %s\n" % (k, q(str(v)))
    y += ("  - name: out\n"
          "    connector.class: file_sink\n"
          "    topics: stations\n"
          "    fsync: false\n"
          "    file: %s\n" % q(out))
    if rec:
        y += ("  - name: rec\n"
              "    connector.class: velibtest_sink\n"
              "    topics: stations\n"
              "    file: %s\n" % q(rec))
    return y


def start(yaml, tmp, rec=False):
    extra = {"plugin.path": [PLUGIN_DIR, TEST_PLUGIN_DIR] + ([recorder_dir()] if rec else [])}
    return Spoke(yaml, tmp=tmp, extra_worker=extra)


def lines(path):
    return [json.loads(x) for x in spoketest.complete_lines(path)]


def nlines(path):
    return spoketest.count_lines(path)


def wait_lines(path, n, what=None):
    wait_for(lambda: nlines(path) >= n, TIMEOUT, what or "%d records in %s" % (n, path))
    assert nlines(path) == n, "%d records in %s, expected exactly %d" % (nlines(path), path, n)


def test_extra_field_names_a_row_cannot_hold_are_not_carried():
    """A key with a NUL byte (it would be cut short into another field's
    name) or an empty key is not carried, and never fails a snapshot, this
    one or the next."""
    need_data()
    first = variant(load(STATUS_2024), 1732009999)
    second = variant(load(STATUS_2024), 1732010999, bump=1)
    for v in (first, second):
        st = v["data"]["stations"]
        st[0]["stationCode\u0000x"] = 1
        st[1]["a\u0000b"] = 1
        st[1]["a\u0000c"] = 2
        st[2][""] = 5
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(compact(first)))
        with start(pipeline(srv.url("/status.json"), out, extra={"poll.interval.ms": 100}),
                   tmp) as s:
            wait_lines(out, 1485)
            srv.route("/status.json", Response(compact(second)))
            wait_lines(out, 2 * 1485)
            got = lines(out)
            assert all(list(g.keys()) == STATUS_FIELDS for g in got), got[0]
            assert [g["stationCode"] for g in got[:3]] == \
                [st["stationCode"] for st in first["data"]["stations"][:3]], got[:3]
            assert got[1485]["num_docks_available"] == \
                second["data"]["stations"][0]["num_docks_available"], got[1485]
            log = s.log()
            assert "its name holds a NUL byte" in log, log[-2000:]
            assert "its name is empty" in log, log[-2000:]
            assert "bad snapshot" not in log, log[-2000:]
            assert plugin_metric(s, "errors") == 0


def test_mixed_type_extra_after_many_ignored_names_still_settles():
    """Once 64 field names are remembered as not carried, a field whose
    values have different types (a string here, an integer there) must
    still be kept out: forgotten, it was carried again on the next pass,
    dropped again, and every snapshot was refused with "the station schema
    does not settle" (found by fuzz-velib)."""
    need_data()
    doc = variant(load(STATUS_2024), 1732009999)
    st = doc["data"]["stations"]
    for i in range(70):
        st[i % 10]["nested_%02d" % i] = {"x": i}  # not carried: not a scalar
    st[20]["mixed"] = "x"
    st[21]["mixed"] = 1700
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(compact(doc)))
        with start(pipeline(srv.url("/status.json"), out), tmp) as s:
            wait_for(lambda: nlines(out) >= 1485 or plugin_metric(s, "errors") > 0,
                     TIMEOUT, "the snapshot's records, or an error")
            log = s.log()
            assert "does not settle" not in log, log[-2000:]
            assert plugin_metric(s, "errors") == 0, log[-2000:]
            wait_lines(out, 1485)
            got = lines(out)
            assert all("mixed" not in g for g in got), got[20]
            assert "station field 'mixed' is not carried: its values have different types" \
                in log, log[-2000:]


def test_https_feed_with_a_private_ca():
    """The feed over https from a server a private CA vouches for, given as
    ssl.ca.pem (shared with http_source through lib/httpc), with a client
    certificate whose key is encrypted (ssl.key.password): every station
    arrives; the same server without ssl.ca.pem, or with the CA's list
    revoking its certificate (ssl.crl.pem), is refused with the reason."""
    need_data()
    status = variant(load(STATUS_2024), 1732009999)
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp:
        certs = spoketest.make_certs(tmp)
        with HttpFixture(tls=certs["server"], client_ca=certs["ca"][0]) as srv:
            srv.route("/status.json", Response(compact(status)))
            out = os.path.join(tmp, "out.ndjson")
            ca = spoketest.pem(certs["ca"][0])
            client = {"ssl.certificate.pem": spoketest.pem(certs["client_pkcs8"][0]),
                      "ssl.key.pem": spoketest.pem(certs["client_pkcs8"][1]),
                      "ssl.key.password": spoketest.CERT_PASSWORD}
            with start(pipeline(srv.url("/status.json"), out, extra=dict(
                    client, **{"poll.interval.ms": 100, "ssl.ca.pem": ca})), tmp) as s:
                wait_lines(out, 1485)
                assert plugin_metric(s, "errors") == 0
            for extra, words in (
                    ({}, ("server certificate verification failed", "issuer is unknown")),
                    ({"ssl.ca.pem": ca, "ssl.crl.pem": spoketest.pem(certs["crl_server"][0])},
                     ("server certificate verification failed", "revoked"))):
                with tempfile.TemporaryDirectory(prefix="spoke-velib-") as t2:
                    out2 = os.path.join(t2, "out.ndjson")
                    with start(pipeline(srv.url("/status.json"), out2, extra=dict(
                            client, **extra, **{"poll.interval.ms": 100})), t2) as s:
                        wait_retrying(s, *words)
                        assert nlines(out2) == 0


def plugin_metric(s, name):
    return metric(s, "velib", name) or 0


def rest_task(s):
    """GET /connectors/velib/status's task."""
    return Api(s).get("/connectors/velib/status").json["tasks"][0]


def wait_retrying(s, *words):
    """Until the source is retrying with every word in its trace, in
    status.json and over REST (RUNNING, retrying, trace); returns the trace."""
    def ok():
        c = s.connector("velib")
        t = c.get("trace") or ""
        return c.get("retrying") and all(w in t for w in words) and t
    trace = wait_for(ok, TIMEOUT, "velib retrying with %r in its trace (now %r)"
                     % (words, s.connector("velib").get("trace")))
    assert s.alive(), "spoke died"
    assert s.connector("velib").get("state") == "RUNNING", s.connector("velib")

    wait_rest_flag(s, "retrying", words)
    return trace


def wait_rest_flag(s, flag, words):
    """Until GET .../status's task is RUNNING with flag (retrying, degraded)
    true and every word in its trace."""
    def ok():
        t = rest_task(s)
        return (t["state"] == "RUNNING" and t.get(flag) is True and
                all(w in (t.get("trace") or "") for w in words))
    wait_for(ok, TIMEOUT, lambda: "the REST status %s with %r (now %r)"
             % (flag, words, rest_task(s)))


def wait_recovered(s):
    wait_for(lambda: s.connector("velib").get("retrying") is False and
             not s.connector("velib").get("trace"), TIMEOUT, "velib recovered (not retrying)")
    # A trace left is the note of a source running degraded (wait_degraded).
    wait_for(lambda: "retrying" not in rest_task(s) and
             ("trace" not in rest_task(s) or rest_task(s).get("degraded") is True), TIMEOUT,
             lambda: "the REST status recovered (now %r)" % (rest_task(s),))


def wait_degraded(s, *words):
    """Until the status says the source runs degraded with every word in
    its note (status.json's note; over REST degraded: true and the note as
    trace); with None, until it no longer does."""
    if words == (None,):
        wait_for(lambda: s.connector("velib").get("note") is None and
                 "degraded" not in rest_task(s) and "trace" not in rest_task(s), TIMEOUT,
                 lambda: "velib no longer degraded (now %r)" % (rest_task(s),))
        return
    wait_for(lambda: all(w in (s.connector("velib").get("note") or "") for w in words),
             TIMEOUT, lambda: "velib's note with %r (now %r)"
             % (words, s.connector("velib").get("note")))
    wait_rest_flag(s, "degraded", words)


def after_status(reqs, status):
    """The requests from the first one answered with status on (a poll may
    have slipped in before the route changed)."""
    for i, r in enumerate(reqs):
        if r["status"] == status:
            assert len(reqs) > i + 1, "no request after the %d" % status
            return reqs[i:]
    raise AssertionError("no request was answered %d: %r" % (status, [r["status"] for r in reqs]))


def read_bytes(name):
    with open(data_path(name), "rb") as f:
        return f.read()


# ---------------------------------------------------------------------------
# configuration

def test_unknown_property_rejected():
    good = ("connectors:\n"
            "  - name: velib\n"
            "    connector.class: velib_source\n"
            "    topic: stations\n"
            "    station.codes: [16107, 32017]\n")
    r = validate(good)
    assert r.returncode == 0, "valid config refused: %s" % r.stderr
    r = validate(good + "    poll.intervall.ms: 100\n")
    assert r.returncode == 1, "misspelled key accepted (rc %d)" % r.returncode
    assert "poll.intervall.ms" in r.stderr, "error does not name the key: %r" % r.stderr


def test_bounds_checked():
    base = ("connectors:\n"
            "  - name: velib\n"
            "    connector.class: velib_source\n"
            "    topic: stations\n")
    for bad in ("poll.interval.ms: 10", "max.redirects: 50", "max.body.bytes: 10",
                "backoff.initial.ms: 0", "url: \"\""):
        r = validate(base + "    %s\n" % bad)
        assert r.returncode == 1 and bad.split(":")[0] in r.stderr, \
            "%s accepted: %r" % (bad, r.stderr)


def test_readme_config_table_is_the_plugin_doc():
    p = run_spoke("plugins", "-c", "/nonexistent.yaml", "--plugin-path", PLUGIN_DIR,
                  "--doc", "velib_source")
    assert p.returncode == 0, p.stderr
    with open(os.path.join(SOURCE_DIR, "plugins", "velib_source", "README.md")) as f:
        text = f.read()
    a, b = text.find("<!-- config:begin -->"), text.find("<!-- config:end -->")
    assert a >= 0 and b > a, "config markers missing in the README"
    assert text[a + len("<!-- config:begin -->"):b].strip() == p.stdout.strip(), \
        "README config table differs from `spoke plugins --doc velib_source`:\n" + p.stdout


def test_only_http_urls_accepted():
    """Only absolute http and https URLs with a host, and backoff bounds in
    order: the plugin's check refuses anything else before it runs, with
    the key's position (`spoke validate`, `spoke run`), every problem at
    once; the REST API refuses the same way (it-rest)."""
    cases = [("url", "ftp://example.com/station_status.json", "scheme 'ftp' is not allowed"),
             ("url", "file:///etc/passwd", "scheme 'file' is not allowed"),
             ("url", "station_status.json", "not a valid absolute URL"),
             ("information.url", "gopher://example.com/x", "scheme 'gopher' is not allowed"),
             ("backoff.initial.ms", 5000, "backoff.initial.ms (5000) is above backoff.max.ms "
              "(1000)")]
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp:
        for key, url, want in cases:
            extra = {key: url}
            if key == "backoff.initial.ms":
                extra["backoff.max.ms"] = 1000
            conf = pipeline("http://127.0.0.1:9/status.json", os.path.join(tmp, "out.ndjson"),
                            extra=extra).removeprefix("connectors:\n")
            spoketest.expect_check_refuses(tmp, conf, "velib", key, want)
        # All three at once: three errors, each at its key.
        extra = {k: v for k, v, _ in cases[2:]}
        extra["backoff.max.ms"] = 1000
        conf = pipeline("http://127.0.0.1:9/status.json", os.path.join(tmp, "out.ndjson"),
                        extra=extra).removeprefix("connectors:\n")
        spoketest.expect_checks_refuse(tmp, conf, [("velib", k, w) for k, _, w in cases[2:]])


# ---------------------------------------------------------------------------
# snapshots

def test_real_snapshot_all_stations_joined():
    need_data()
    status, info = load(STATUS_2024), load(INFO_2024)
    want = expected_rows(status, info)
    assert len(want) == 1485
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out, rec = os.path.join(tmp, "out.ndjson"), os.path.join(tmp, "rec.ndjson")
        srv.route("/status.json", Response.file(data_path(STATUS_2024)))
        srv.route("/info.json", Response.file(data_path(INFO_2024)))
        url = srv.url("/status.json")
        with start(pipeline(url, out, srv.url("/info.json"), rec=rec), tmp, rec=True) as s:
            wait_lines(out, 1485)
            wait_for(lambda: nlines(rec) >= 1485, TIMEOUT, "the recorder got 1485 records")
            got = lines(out)
            for g, w in zip(got, want):
                assert list(g.keys()) == list(w.keys()), "field order %r" % list(g.keys())
                assert g == w, "station %s:\n got  %r\n want %r" % (w["stationCode"], g, w)
            recs = lines(rec)
            assert len(recs) == 1485, len(recs)
            luo = status["lastUpdatedOther"]
            for i, (r, w) in enumerate(zip(recs, want)):
                assert r["topic"] == "stations", r["topic"]
                assert r["key"] == w["stationCode"], (r["key"], w["stationCode"])
                assert r["ts"] == w["last_reported"] * 1000, (r["key"], r["ts"])
                assert r["forms"] == 2, "value is not a typed row only (forms %r)" % r["forms"]
                assert r["part"] == url, r["part"]
                # Only the last record of a snapshot carries its lastUpdatedOther;
                # the others resume at the previous snapshot (none yet: 0).
                assert r["off"] == (luo if i == 1484 else 0), (i, r["off"])
                assert r["value"] == w
                types = {d[0]: d[1] for d in r["schema"]}
                assert types == SCHEMA_TYPES, types
                items = [d for d in r["schema"] if d[0] == "num_bikes_available_types"][0][2]
                assert [it[0] for it in items] == ["map", "map"], items
                assert [it[1] for it in items] == [[["mechanical", "int"]], [["ebike", "int"]]], items
            wait_for(lambda: s.offsets().get("velib", {}).get(url) == luo, TIMEOUT,
                     "offsets.json holding lastUpdatedOther %d" % luo)
            want_metrics = {"stations_emitted": 1485, "snapshots": 1, "last_snapshot_ts": luo,
                            "info_stations": 1485, "info_fetches": 1, "errors": 0}
            wait_for(lambda: all(plugin_metric(s, k) == v for k, v in want_metrics.items()),
                     TIMEOUT, "metrics %r (now %r)" % (
                         want_metrics, (s.connector("velib").get("metrics") or {}).get("plugin")))
            assert plugin_metric(s, "bytes_downloaded") >= len(read_bytes(STATUS_2024))
            # Polls of the same snapshot (no validators here) emit nothing.
            n = srv.count("/status.json")
            srv.wait_requests("/status.json", n + 3)
            wait_for(lambda: plugin_metric(s, "unchanged") >= 3, TIMEOUT, "unchanged polls counted")
            assert nlines(out) == 1485, "an identical snapshot was emitted again"
        assert nlines(out) == 1485
        ua = srv.requests("/status.json")[0]["headers"].get("user-agent")
        assert ua == "spoke-velib_source/0.1.0", ua


def test_station_codes_filter():
    need_data()
    status, info = load(STATUS_2024), load(INFO_2024)
    want = expected_rows(status, info, codes={"16107", "32017"})
    assert len(want) == 2
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response.file(data_path(STATUS_2024)))
        srv.route("/info.json", Response.file(data_path(INFO_2024)))
        yaml = pipeline(srv.url("/status.json"), out, srv.url("/info.json"),
                        extra={"station.codes": ["16107", "32017", "99999"]})
        with start(yaml, tmp) as s:
            wait_lines(out, 2)
            assert lines(out) == want, lines(out)
            wait_for(lambda: "station.codes: 99999 is not in the feed" in s.log(), TIMEOUT,
                     "a warning about the unknown code")
            srv.wait_requests("/status.json", 4)
            assert nlines(out) == 2


def test_switch_snapshots_and_identical_content():
    need_data()
    s24, s22 = load(STATUS_2024), load(STATUS_2022)
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(read_bytes(STATUS_2024)))
        url = srv.url("/status.json")
        with start(pipeline(url, out), tmp) as s:  # no information.url: no join
            wait_lines(out, 1485)
            assert lines(out) == expected_rows(s24), "2024 snapshot (no join) differs"
            # Same stations under a new lastUpdatedOther: nothing new to emit.
            srv.route("/status.json", Response(compact(variant(s24, s24["lastUpdatedOther"] + 60))))
            n = srv.count("/status.json")
            srv.wait_requests("/status.json", n + 3)
            wait_for(lambda: plugin_metric(s, "unchanged") >= 2, TIMEOUT, "unchanged counted")
            assert nlines(out) == 1485, "identical content was emitted again"
            # The 2022 snapshot: its 1,439 stations, then a tombstone (file_sink
            # writes null) for each of the 2024 stations it lacks.
            codes24 = [st["stationCode"] for st in s24["data"]["stations"]]
            codes22 = [st["stationCode"] for st in s22["data"]["stations"]]
            gone = len(set(codes24) - set(codes22))
            back = len(set(codes22) - set(codes24))
            assert gone == 99 and back == 53, (gone, back)
            srv.route("/status.json", Response(read_bytes(STATUS_2022)))
            wait_for(lambda: s.offsets().get("velib", {}).get(url) == s22["lastUpdatedOther"],
                     TIMEOUT, "offset at the 2022 snapshot")
            wait_lines(out, 1485 + 1439 + gone)
            assert lines(out)[1485:1485 + 1439] == expected_rows(s22), "2022 snapshot differs"
            assert lines(out)[1485 + 1439:] == [None] * gone, "tombstones expected"
            wait_for(lambda: plugin_metric(s, "snapshots") == 2, TIMEOUT, "snapshots == 2")
            # Back to 2024: a different snapshot again, emitted, with tombstones
            # for the 2022 stations it lacks.
            srv.route("/status.json", Response(read_bytes(STATUS_2024)))
            start24 = 1485 + 1439 + gone
            wait_lines(out, start24 + 1485 + back)
            assert lines(out)[start24:start24 + 1485] == expected_rows(s24)
            assert lines(out)[start24 + 1485:] == [None] * back
            wait_for(lambda: plugin_metric(s, "tombstones_emitted") == gone + back, TIMEOUT,
                     "tombstones_emitted == %d" % (gone + back))
            assert plugin_metric(s, "stations_emitted") == 2 * 1485 + 1439


def test_stage_times_per_snapshot():
    """snapshot_{fetch,parse,check,emit}_us: where each emitted snapshot's
    time went. A server that answers 0.3 s late shows in the fetch alone;
    polls that emit nothing (the same lastUpdatedOther) add nothing."""
    need_data()
    delay = 0.3
    stages = ("snapshot_fetch_us", "snapshot_parse_us", "snapshot_check_us", "snapshot_emit_us")
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(read_bytes(STATUS_2024), delay=delay))
        with start(pipeline(srv.url("/status.json"), out), tmp) as s:
            wait_lines(out, 1485)
            srv.route("/status.json", Response(read_bytes(STATUS_2022), delay=delay))
            wait_for(lambda: plugin_metric(s, "snapshots") == 2, TIMEOUT, "snapshots == 2")
            got = {k: plugin_metric(s, k) for k in stages}
            assert got["snapshot_fetch_us"] >= 2 * delay * 1e6, got
            for k in stages[1:]:
                assert 0 < got[k] < 2 * delay * 1e6, (k, got)
            # The 2022 snapshot again and again: "unchanged", nothing added.
            n = plugin_metric(s, "unchanged")
            wait_for(lambda: plugin_metric(s, "unchanged") >= n + 2, TIMEOUT, "unchanged polls")
            assert {k: plugin_metric(s, k) for k in stages} == got
            assert plugin_metric(s, "snapshots") == 2


def test_sink_latency_counts_a_slow_fetch_from_its_start():
    """A status body 700 ms late spans several of poll()'s 200 ms slices:
    the sink's latency of the snapshot's records counts from the GET's
    start (host API poll_started_at), so it holds those 700 ms, as
    snapshot_fetch_us does."""
    need_data()
    delay = 0.7
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(read_bytes(STATUS_2024), delay=delay))
        with start(pipeline(srv.url("/status.json"), out, extra={"station.codes": FEW}), tmp) as s:
            wait_lines(out, 3)

            def latency_us():
                return (s.connector("out").get("metrics") or {}).get("latency_max_us") or 0
            wait_for(lambda: latency_us() > 0, TIMEOUT, "the sink's latency in status.json")
            assert plugin_metric(s, "snapshot_fetch_us") >= delay * 1e6, \
                plugin_metric(s, "snapshot_fetch_us")
            assert latency_us() >= delay * 1e6, "latency %d us, the body came %.1f s late" % (
                latency_us(), delay)


def test_etag_and_last_modified_conditional_requests():
    need_data()
    body = read_bytes(STATUS_2024)
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(body, etag='"snap-1"'))
        with start(pipeline(srv.url("/status.json"), out, extra={"station.codes": FEW}), tmp) as s:
            wait_lines(out, 3)
            reqs = srv.wait_requests("/status.json", 4)
            assert "if-none-match" not in reqs[0]["headers"], reqs[0]["headers"]
            for r in reqs[1:]:
                assert r["headers"].get("if-none-match") == '"snap-1"', r["headers"]
                assert r["status"] == 304, r["status"]
            wait_for(lambda: plugin_metric(s, "not_modified") >= 3, TIMEOUT, "not_modified")
            assert nlines(out) == 3
            # A new version under a new ETag: fetched whole, emitted.
            v2 = compact(variant(load(STATUS_2024), 1732004600, bump=1))
            srv.route("/status.json", Response(v2, etag='"snap-2"'))
            wait_lines(out, 6)
            n = srv.count("/status.json")
            reqs = srv.wait_requests("/status.json", n + 2)
            assert reqs[-1]["headers"].get("if-none-match") == '"snap-2"', reqs[-1]["headers"]
            # Last-Modified only: If-Modified-Since carries it back verbatim.
            lm = http_date(1732004700)
            v3 = compact(variant(load(STATUS_2024), 1732004700, bump=2))
            srv.route("/status.json", Response(v3, last_modified=lm))
            wait_lines(out, 9)
            n = srv.count("/status.json")
            reqs = srv.wait_requests("/status.json", n + 2)
            assert reqs[-1]["headers"].get("if-modified-since") == lm, reqs[-1]["headers"]
            assert "if-none-match" not in reqs[-1]["headers"], reqs[-1]["headers"]
            assert reqs[-1]["status"] == 304
            assert nlines(out) == 9


def test_bad_body_is_not_answered_304_later():
    """The validators of a body that failed validation are not sent back:
    otherwise a 304 would hide that the feed is still broken."""
    need_data()
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(b'{"lastUpdatedOther": 5, "data": {}}', etag='"bad"'))
        with start(pipeline(srv.url("/status.json"), out), tmp) as s:
            wait_retrying(s, "no data.stations array")
            reqs = srv.wait_requests("/status.json", 3)
            assert all("if-none-match" not in r["headers"] for r in reqs), \
                [r["headers"].get("if-none-match") for r in reqs]
            assert s.connector("velib")["retrying"]


def test_restart_resumes_after_the_delivered_snapshot():
    need_data()
    s22 = load(STATUS_2022)
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(read_bytes(STATUS_2024)))
        url = srv.url("/status.json")
        with start(pipeline(url, out), tmp) as s:
            wait_lines(out, 1485)
            wait_for(lambda: s.offsets().get("velib", {}).get(url) == 1732004538, TIMEOUT,
                     "offset committed")
        with start(pipeline(url, out), tmp) as s:
            n = srv.count("/status.json")
            srv.wait_requests("/status.json", n + 3)
            wait_for(lambda: plugin_metric(s, "unchanged") >= 3, TIMEOUT, "unchanged polls")
            assert nlines(out) == 1485, "the delivered snapshot was emitted again after restart"
            assert "resuming: the snapshot with lastUpdatedOther 1732004538 was delivered" in s.log()
            srv.route("/status.json", Response(read_bytes(STATUS_2022)))
            # After a restart the source does not know what the previous
            # snapshot held: the first one emits no tombstones (documented).
            wait_for(lambda: s.offsets().get("velib", {}).get(url) == s22["lastUpdatedOther"],
                     TIMEOUT, "offset at the 2022 snapshot")
            wait_lines(out, 1485 + 1439)
            assert lines(out)[1485:] == expected_rows(s22)
            assert plugin_metric(s, "tombstones_emitted") == 0


def without(status, luo, codes):
    """A snapshot derived from a real one, under a new lastUpdatedOther,
    without the stations whose code is in codes."""
    v = variant(status, luo)
    v["data"]["stations"] = [st for st in v["data"]["stations"] if st["stationCode"] not in codes]
    return v


def check_tombstones(recs, codes, luo, url, prev_off):
    """recs: the recorder's lines for a snapshot's tombstones, which close it."""
    assert [r["key"] for r in recs] == codes, [r["key"] for r in recs]
    for i, r in enumerate(recs):
        assert r["value"] is None and r["forms"] == 0 and r["schema"] is None, r
        assert r["ts"] == luo * 1000, (r["key"], r["ts"])
        assert r["part"] == url, r["part"]
        assert r["off"] == (luo if i == len(recs) - 1 else prev_off), (i, r["off"])


def test_tombstones_for_stations_that_leave():
    """A station of the previous emitted snapshot that a new snapshot lacks
    gets a tombstone: key stationCode, null value, timestamp lastUpdatedOther,
    after the snapshot's stations; the last record (a tombstone) carries the
    new offset, the others the previous one."""
    need_data()
    s24 = load(STATUS_2024)
    codes = [st["stationCode"] for st in s24["data"]["stations"]]
    leave = [codes[0], codes[700], codes[1484]]   # first, middle, last of the feed
    luo0, luo1, luo2 = s24["lastUpdatedOther"], 1732005000, 1732006000
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out, rec = os.path.join(tmp, "out.ndjson"), os.path.join(tmp, "rec.ndjson")
        srv.route("/status.json", Response(read_bytes(STATUS_2024)))
        url = srv.url("/status.json")
        with start(pipeline(url, out, rec=rec), tmp, rec=True) as s:
            wait_for(lambda: nlines(rec) >= 1485, TIMEOUT, "the first snapshot recorded")
            srv.route("/status.json", Response(compact(without(s24, luo1, set(leave)))))
            wait_for(lambda: s.offsets().get("velib", {}).get(url) == luo1, TIMEOUT,
                     "offset at the snapshot without %r" % leave)
            wait_for(lambda: nlines(rec) >= 1485 + 1482 + 3, TIMEOUT, "tombstones recorded")
            recs = lines(rec)
            assert len(recs) == 1485 + 1482 + 3, len(recs)
            snap = recs[1485:1485 + 1482]
            assert [r["key"] for r in snap] == [c for c in codes if c not in leave]
            assert all(r["forms"] == 2 and r["off"] == luo0 for r in snap), "station records"
            # In the order of the previous snapshot's set (a hash set): compare as sets.
            tombs = recs[1485 + 1482:]
            assert sorted(r["key"] for r in tombs) == sorted(leave), [r["key"] for r in tombs]
            check_tombstones(tombs, [r["key"] for r in tombs], luo1, url, luo0)
            assert lines(out)[1485 + 1482:] == [None] * 3, "file_sink writes tombstones as null"
            wait_for(lambda: plugin_metric(s, "tombstones_emitted") == 3, TIMEOUT,
                     "tombstones_emitted == 3")
            # They come back: station records, no tombstone.
            srv.route("/status.json", Response(compact(variant(s24, luo2))))
            wait_for(lambda: s.offsets().get("velib", {}).get(url) == luo2, TIMEOUT,
                     "offset at the full snapshot again")
            wait_lines(rec, 1485 + 1482 + 3 + 1485)
            last = lines(rec)[-1485:]
            assert all(r["forms"] == 2 for r in last) and last[-1]["off"] == luo2
            assert plugin_metric(s, "tombstones_emitted") == 3


def test_buffers_released_between_distant_polls():
    """Polls at least 1 s apart release the snapshot buffers (body, parser,
    scratch lists) after each poll; the next poll allocates them again and
    behaves the same: identical content is still recognized, a new snapshot
    is emitted whole, stations that left get tombstones, a 304 emits
    nothing. Polls closer together keep them (no release line)."""
    need_data()
    s24 = load(STATUS_2024)
    codes = [st["stationCode"] for st in s24["data"]["stations"]]
    leave = [codes[3], codes[900]]
    luo0 = s24["lastUpdatedOther"]
    luo1, luo2, luo3 = luo0 + 60, luo0 + 120, luo0 + 180
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(read_bytes(STATUS_2024)))
        url = srv.url("/status.json")
        yaml = pipeline(url, out, extra={"poll.interval.ms": 1000})
        extra = {"plugin.path": [PLUGIN_DIR, TEST_PLUGIN_DIR], "log.level": "debug"}
        with Spoke(yaml, tmp=tmp, extra_worker=extra) as s:
            wait_lines(out, 1485)
            assert lines(out) == expected_rows(s24)
            wait_for(lambda: "snapshot buffers released until the next poll (in 1000 ms)" in s.log(),
                     TIMEOUT, "the buffers released after the poll")
            # Same content under a new lastUpdatedOther: still recognized.
            srv.route("/status.json", Response(compact(variant(s24, luo1))))
            n = srv.count("/status.json")
            srv.wait_requests("/status.json", n + 2)
            wait_for(lambda: plugin_metric(s, "unchanged") >= 1, TIMEOUT, "unchanged counted")
            assert nlines(out) == 1485, "identical content was emitted again"
            # Two stations leave: the others, then their tombstones.
            gone = without(s24, luo2, set(leave))
            srv.route("/status.json", Response(compact(gone)))
            wait_lines(out, 1485 + 1483 + 2)
            assert lines(out)[1485:1485 + 1483] == expected_rows(gone)
            assert lines(out)[1485 + 1483:] == [None, None]
            # New values everywhere: every station again, the two included.
            bumped = variant(s24, luo3, bump=1)
            srv.route("/status.json", Response(compact(bumped), etag='"b1"'))
            wait_lines(out, 1485 + 1485 + 1485)
            assert lines(out)[-1485:] == expected_rows(bumped)
            wait_for(lambda: s.offsets().get("velib", {}).get(url) == luo3, TIMEOUT,
                     "offset at the last snapshot")
            # The validator of that body: 304s from now on, nothing emitted.
            wait_for(lambda: plugin_metric(s, "not_modified") >= 1, TIMEOUT, "a 304 counted")
            assert nlines(out) == 3 * 1485
            assert srv.requests("/status.json")[-1]["headers"].get("if-none-match") == '"b1"'
            assert plugin_metric(s, "errors") == 0
    # Polls 999 ms apart keep the buffers.
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(read_bytes(STATUS_2024)))
        yaml = pipeline(srv.url("/status.json"), out, extra={"poll.interval.ms": 999})
        extra = {"plugin.path": [PLUGIN_DIR, TEST_PLUGIN_DIR], "log.level": "debug"}
        with Spoke(yaml, tmp=tmp, extra_worker=extra) as s:
            wait_lines(out, 1485)
            srv.wait_requests("/status.json", 2)
            wait_for(lambda: plugin_metric(s, "unchanged") >= 1, TIMEOUT, "a second poll handled")
            assert "snapshot buffers released" not in s.log()


def test_buffers_warmed_before_distant_polls():
    """Polls 1 s apart: after each good poll releases the buffers, a call
    50 ms before the next allocates and faults them in again, sized for the
    last snapshot (buffers_warmed). The polls still come 1 s apart, not
    earlier; a snapshot larger than the warmed buffers (the compact feed,
    then the 2.2x larger pretty-printed one) and a smaller one after it are
    emitted whole and right."""
    need_data()
    s24 = load(STATUS_2024)
    luo0 = s24["lastUpdatedOther"]
    small = compact(variant(s24, luo0 + 60))
    large = variant(s24, luo0 + 120, bump=1)
    large_body = json.dumps(large, indent=4).encode()
    assert len(large_body) > 2 * len(small)
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(small))
        url = srv.url("/status.json")
        yaml = pipeline(url, out, extra={"poll.interval.ms": 1000})
        extra = {"plugin.path": [PLUGIN_DIR, TEST_PLUGIN_DIR], "log.level": "debug"}
        with Spoke(yaml, tmp=tmp, extra_worker=extra) as s:
            wait_lines(out, 1485)
            assert lines(out) == expected_rows(variant(s24, luo0 + 60))
            wait_for(lambda: (plugin_metric(s, "buffers_warmed") or 0) >= 1, TIMEOUT,
                     "the buffers warmed before the second poll")
            assert "snapshot buffers warmed for the next poll (parser " in s.log()
            srv.route("/status.json", Response(large_body))
            wait_lines(out, 2 * 1485)
            assert lines(out)[1485:] == expected_rows(large)
            again = variant(s24, luo0 + 180)
            srv.route("/status.json", Response(compact(again)))
            wait_lines(out, 3 * 1485)
            assert lines(out)[2 * 1485:] == expected_rows(again)
            n = plugin_metric(s, "buffers_warmed")
            srv.wait_requests("/status.json", srv.count("/status.json") + 1)
            wait_for(lambda: plugin_metric(s, "buffers_warmed") > n, TIMEOUT, "warmed again")
            assert plugin_metric(s, "errors") == 0
            t = [r["t"] for r in srv.requests("/status.json")]
            # The warming call is not a poll: the GETs stay poll.interval.ms
            # apart. On average: one GET may reach the server later than the
            # next (a loaded host); polls 50 ms early averaged 0.95 s.
            assert (t[-1] - t[0]) / (len(t) - 1) > 0.98, t


def test_duplicate_stations_and_a_vanishing_feed_are_logged():
    """A stationCode listed twice, and a snapshot that loses most stations
    (an empty stations array from a glitching feed tombstones them all),
    are emitted as the feed says, with a warning in the log."""
    need_data()
    first = variant(load(STATUS_2024), 1732009999)
    st = first["data"]["stations"]
    st.append(copy.deepcopy([x for x in st if x["stationCode"] == "16107"][0]))
    empty = variant(load(STATUS_2024), 1732010999)
    empty["data"]["stations"] = []
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(compact(first)))
        with start(pipeline(srv.url("/status.json"), out,
                            extra={"station.codes": FEW, "poll.interval.ms": 100}), tmp) as s:
            wait_lines(out, 4)
            assert [r["stationCode"] for r in lines(out)].count("16107") == 2, lines(out)
            wait_for(lambda: "lists 1 stationCode(s) more than once" in s.log(), TIMEOUT,
                     "the duplicate logged")
            assert "stations of the previous one" not in s.log()
            srv.route("/status.json", Response(compact(empty)))
            wait_lines(out, 4 + 3)  # a tombstone per station
            wait_for(lambda: "lacks 3 of the 3 stations of the previous one" in s.log(),
                     TIMEOUT, "the vanishing stations logged")


def test_tombstones_within_station_codes_and_switched_off():
    """Only stations station.codes selects are tracked; a snapshot holding
    none of them is all tombstones (the last carries the offset);
    emit.tombstones: false emits none."""
    need_data()
    s24 = load(STATUS_2024)
    other = [st["stationCode"] for st in s24["data"]["stations"] if st["stationCode"] not in FEW]
    few = [st["stationCode"] for st in s24["data"]["stations"] if st["stationCode"] in FEW]
    luo0 = s24["lastUpdatedOther"]
    # (lastUpdatedOther, stations left out, tombstones expected): a station
    # station.codes does not select never gets one; a tombstone is for a
    # station of the PREVIOUS snapshot, so each goes once.
    steps = [(1732005000, {"16107", other[0]}, ["16107"]),
             (1732006000, set(FEW), ["32017", "9020"]),
             (1732007000, set(), [])]
    for enabled in (True, False):
        with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
            out, rec = os.path.join(tmp, "out.ndjson"), os.path.join(tmp, "rec.ndjson")
            srv.route("/status.json", Response(read_bytes(STATUS_2024)))
            url = srv.url("/status.json")
            extra = {"station.codes": FEW, "emit.tombstones": str(enabled).lower()}
            with start(pipeline(url, out, extra=extra, rec=rec), tmp, rec=True) as s:
                wait_lines(rec, 3)
                prev, seen = luo0, 3
                for k, (luo, gone, tomb) in enumerate(steps):
                    tomb = tomb if enabled else []
                    present = [c for c in few if c not in gone]  # in feed order
                    srv.route("/status.json", Response(compact(without(s24, luo, gone))))
                    wait_for(lambda: plugin_metric(s, "snapshots") == k + 2, TIMEOUT,
                             "snapshot %d emitted" % luo)
                    if present or tomb:  # else nothing at all is emitted
                        wait_for(lambda: s.offsets().get("velib", {}).get(url) == luo, TIMEOUT,
                                 "offset at %d" % luo)
                        prev_off = prev
                        prev = luo
                    wait_lines(rec, seen + len(present) + len(tomb))
                    new = lines(rec)[seen:]
                    assert [r["key"] for r in new[:len(present)]] == present, new
                    assert all(r["forms"] == 2 for r in new[:len(present)])
                    tombs = new[len(present):]
                    assert sorted(r["key"] for r in tombs) == tomb, (luo, enabled, tombs)
                    if tombs:
                        check_tombstones(tombs, [r["key"] for r in tombs], luo, url, prev_off)
                    elif new:
                        assert new[-1]["off"] == luo, new[-1]
                    seen += len(new)
                assert plugin_metric(s, "tombstones_emitted") == (3 if enabled else 0), \
                    plugin_metric(s, "tombstones_emitted")


def test_extra_fields_carried_when_scalar():
    need_data()
    v = variant(load(STATUS_2024), 1732009999)
    for i, st in enumerate(v["data"]["stations"]):
        if i % 2 == 0:
            st["is_virtual_station"] = i % 4 == 0
        st["nested_thing"] = {"a": i}
        if i == 5:
            st["rank"] = 1.5
        elif i == 7:
            st["rank"] = 3
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(compact(v)))
        with start(pipeline(srv.url("/status.json"), out), tmp) as s:
            wait_lines(out, 1485)
            got = lines(out)
            for i, (g, st) in enumerate(zip(got, v["data"]["stations"])):
                assert list(g.keys()) == STATUS_FIELDS + ["is_virtual_station", "rank"], list(g)
                assert g["is_virtual_station"] == (i % 4 == 0 if i % 2 == 0 else None), (i, g)
                assert g["rank"] == {5: 1.5, 7: 3.0}.get(i), (i, g["rank"])
                assert isinstance(g["rank"], (float, type(None))), g["rank"]
            assert "station field 'nested_thing' is not carried" in s.log(), s.log()[-2000:]


def test_information_failures_do_not_block_status():
    need_data()
    status, info = load(STATUS_2024), load(INFO_2024)
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(read_bytes(STATUS_2024)))
        srv.route("/info.json", Response(b"<html>oops</html>", status=500))
        yaml = pipeline(srv.url("/status.json"), out, srv.url("/info.json"),
                        extra={"station.codes": FEW, "information.interval.ms": 300})
        with start(yaml, tmp) as s:
            wait_lines(out, 3)
            no_info = [dict(r, name=None, lat=None, lon=None, capacity=None)
                       for r in expected_rows(status, info, codes=set(FEW))]
            assert lines(out) == no_info, lines(out)
            # status.json is rewritten every 100 ms: read it once it shows a
            # snapshot emitted and an information failure counted.
            wait_for(lambda: plugin_metric(s, "snapshots") >= 1 and
                     plugin_metric(s, "info_errors") >= 1, TIMEOUT,
                     "status.json with the snapshot and the information failure")
            assert s.connector("velib").get("retrying") is False, s.connector("velib")
            wait_for(lambda: "station_information failed: HTTP 500" in s.log(), TIMEOUT,
                     "the information failure logged")
            # The status says it too: RUNNING, degraded, the reason as trace.
            wait_degraded(s, "station_information failed: HTTP 500",
                          "stations have no name, lat, lon, capacity until it succeeds")
            wait_for(lambda: plugin_metric(s, "info_errors") >= 2, TIMEOUT, "info retried")
            # Information back: the same snapshot's stations again, joined
            # (their status did not change), then the next snapshot, joined.
            srv.route("/info.json", Response.file(data_path(INFO_2024)))
            wait_degraded(s, None)
            wait_lines(out, 6, "the stations emitted again with station_information")
            assert lines(out)[3:] == expected_rows(status, info, codes=set(FEW)), lines(out)[3:]
            srv.route("/status.json", Response(compact(variant(status, 1732005000, bump=1))))
            wait_lines(out, 9)
            want = expected_rows(variant(status, 1732005000, bump=1), info, codes=set(FEW))
            assert lines(out)[6:] == want, lines(out)[6:]
            # A slow information feed does not hold status polls up.
            srv.route("/info.json", Response.file(data_path(INFO_2024), delay=3.0))
            n_info = srv.count("/info.json")
            wait_for(lambda: srv.count("/info.json") > n_info, TIMEOUT, "a slow info request")
            n = srv.count("/status.json")
            t0 = time.monotonic()
            srv.wait_requests("/status.json", n + 5, timeout=2.5)
            assert time.monotonic() - t0 < 2.5
            srv.route("/info.json", Response.file(data_path(INFO_2024)))


def test_information_numbers_in_strings_read_other_types_left_out_and_said():
    """station_information values are never silently null: a string holding
    a number (capacity "35", a plain integer; lat "48.86") is read as that
    number, and said once per table; a value of another type (capacity
    "lots", a name that is a number) is left out with a warning naming the
    first such station."""
    need_data()
    status, info = load(STATUS_2024), load(INFO_2024)
    odd = copy.deepcopy(info)
    by_code = {e["stationCode"]: e for e in odd["data"]["stations"]}
    by_code["16107"]["capacity"] = str(by_code["16107"]["capacity"])
    by_code["16107"]["lat"] = repr(by_code["16107"]["lat"])
    by_code["32017"]["capacity"] = "lots"
    by_code["9020"]["name"] = 42
    # What the rows must hold: the strings read as numbers, the rest null.
    want_info = copy.deepcopy(info)
    by_code = {e["stationCode"]: e for e in want_info["data"]["stations"]}
    by_code["32017"]["capacity"] = None
    by_code["9020"]["name"] = None
    refused = [e for e in odd["data"]["stations"]
               if e["stationCode"] in ("32017", "9020")]  # in document order
    first = refused[0]
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(read_bytes(STATUS_2024)))
        srv.route("/info.json", Response(compact(odd)))
        yaml = pipeline(srv.url("/status.json"), out, srv.url("/info.json"),
                        extra={"station.codes": FEW})
        with start(yaml, tmp) as s:
            wait_lines(out, 3)
            got = lines(out)
            assert got == expected_rows(status, want_info, codes=set(FEW)), got
            assert isinstance(got[0]["capacity"], int) and isinstance(got[0]["lat"], float)
            log = s.log()
            assert "station_information: 2 value(s) given as strings holding numbers were " \
                   "read as those numbers (the first: station_id %d (stationCode 16107): lat " \
                   "\"%r\")" % (info["data"]["stations"][0]["station_id"],
                                info["data"]["stations"][0]["lat"]) in log, log[-3000:]
            what = ('capacity is a string "lots", expected an integer'
                    if first["stationCode"] == "32017" else
                    "name is an integer, expected a string")
            assert "station_information: 2 value(s) of another type were left out, null in " \
                   "the rows (the first: station_id %d (stationCode %s): %s)" % (
                       first["station_id"], first["stationCode"], what) in log, log[-3000:]


def test_information_lacking_most_stations_is_held_back():
    """A station_information table that lacks half or more of the previous
    table's stations (a glitching feed) does not replace it: the previous
    one stays, with a warning, until the feed has given no better for a
    whole information.interval.ms; then it is taken, and the stations
    whose joined values changed are emitted again."""
    need_data()
    status, info = load(STATUS_2024), load(INFO_2024)
    interval = 3000
    # Only the three stations the connector selects, under new names: the
    # rows show which table is in use.
    few = copy.deepcopy(info)
    few["data"]["stations"] = [dict(e, name=e["name"] + " (few)")
                               for e in few["data"]["stations"] if e["stationCode"] in FEW]
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(read_bytes(STATUS_2024)))
        srv.route("/info.json", Response.file(data_path(INFO_2024)))
        yaml = pipeline(srv.url("/status.json"), out, srv.url("/info.json"),
                        extra={"station.codes": FEW, "information.interval.ms": interval})
        with start(yaml, tmp) as s:
            wait_lines(out, 3)
            assert lines(out) == expected_rows(status, info, codes=set(FEW))
            srv.route("/info.json", Response(compact(few)))
            wait_for(lambda: "station_information lacks 1482 of the 1485 stations of the "
                     "previous table (a glitch of the feed?): keeping the previous one" in s.log(),
                     TIMEOUT, "the table lacking most stations held back")
            t_held = time.monotonic()
            wait_for(lambda: plugin_metric(s, "info_held_back") >= 1, TIMEOUT, "counted")
            wait_degraded(s, "station_information lacks 1482 of the 1485 stations of the "
                          "previous table: the stations keep the previous one")
            # A new snapshot meanwhile: joined with the previous table.
            bumped = variant(status, 1732005000, bump=1)
            srv.route("/status.json", Response(compact(bumped)))
            wait_lines(out, 6)
            assert time.monotonic() - t_held < interval / 1000.0, "too slow to tell"
            assert lines(out)[3:] == expected_rows(bumped, info, codes=set(FEW)), lines(out)[3:]
            # Still so a whole interval later: taken, and the rows follow.
            wait_lines(out, 9, "the stations emitted again with the table taken at last")
            assert "station_information has lacked half or more of the stations of the " \
                   "previous table for" in s.log()
            assert lines(out)[6:] == expected_rows(bumped, few, codes=set(FEW)), lines(out)[6:]
            assert time.monotonic() - t_held >= interval / 1000.0 - 0.3
            wait_for(lambda: plugin_metric(s, "info_stations") == 3, TIMEOUT, "3 stations")
            # An empty table is held back the same way.
            srv.route("/info.json", Response(compact({"lastUpdatedOther": 1, "data": {"stations": []}})))
            wait_for(lambda: "station_information lacks 3 of the 3 stations" in s.log(), TIMEOUT,
                     "the empty table held back")
            assert nlines(out) == 9


def test_information_change_emits_the_changed_stations_again():
    """When station_information changes (a name, a capacity), the stations
    whose joined values changed are emitted again at the next poll, even
    though the status feed did not change (here: a 304 to each poll); the
    others are not. The GET after the change is unconditional, so the
    snapshot comes back whole."""
    need_data()
    status, info = load(STATUS_2024), load(INFO_2024)
    changed = copy.deepcopy(info)
    by_code = {e["stationCode"]: e for e in changed["data"]["stations"]}
    by_code["16107"]["name"] = "Renamed"
    by_code["9020"]["capacity"] += 5
    # A station not selected changes too: it is never emitted.
    other = [e for e in changed["data"]["stations"] if e["stationCode"] not in FEW][0]
    other["capacity"] += 1
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out, rec = os.path.join(tmp, "out.ndjson"), os.path.join(tmp, "rec.ndjson")
        url = srv.url("/status.json")
        srv.route("/status.json", Response(read_bytes(STATUS_2024), etag='"s1"'))
        srv.route("/info.json", Response.file(data_path(INFO_2024), etag='"i1"'))
        yaml = pipeline(url, out, srv.url("/info.json"), rec=rec,
                        extra={"station.codes": FEW, "information.interval.ms": 200})
        with start(yaml, tmp, rec=True) as s:
            wait_lines(out, 3)
            wait_for(lambda: plugin_metric(s, "not_modified") >= 2, TIMEOUT, "304s")
            srv.route("/info.json", Response(compact(changed), etag='"i2"'))
            wait_lines(out, 5, "the two stations whose joined values changed")
            want = [r for r in expected_rows(status, changed, codes=set(FEW))
                    if r["stationCode"] in ("16107", "9020")]
            assert lines(out)[3:] == want, lines(out)[3:]
            wait_for(lambda: nlines(rec) >= 5, TIMEOUT, "recorded")
            luo = status["lastUpdatedOther"]
            assert [(r["key"], r["off"], r["ts"]) for r in lines(rec)[3:]] == \
                [(w["stationCode"], luo, w["last_reported"] * 1000) for w in want]
            reqs = srv.requests("/status.json")
            assert any(r["status"] == 200 and "if-none-match" not in r["headers"]
                       for r in reqs[2:]), "no unconditional GET after the change"
            # Nothing more: the next polls are 304s again, the table is the same.
            n = srv.count("/status.json")
            srv.wait_requests("/status.json", n + 3)
            wait_for(lambda: srv.requests("/status.json")[-1]["status"] == 304, TIMEOUT,
                     "304s again")
            assert nlines(out) == 5
            wait_for(lambda: plugin_metric(s, "info_reemitted") == 2, TIMEOUT, "counted")
            assert plugin_metric(s, "snapshots") == 1
            assert plugin_metric(s, "stations_emitted") == 3, "counted apart"


# ---------------------------------------------------------------------------
# failures

def failure_modes(srv, good):
    """(name, route to install, words expected in the trace) for each way the
    status feed can go wrong. good: a valid body."""
    bad_last = json.loads(good)
    del bad_last["data"]["stations"][-1]["stationCode"]
    bad_type = json.loads(good)
    bad_type["data"]["stations"][3]["num_bikes_available"] = "3"
    bad_item = json.loads(good)
    bad_item["data"]["stations"][9]["num_bikes_available_types"][1] = {"ebike": "two"}
    big = b'{"lastUpdatedOther":1,"data":{"stations":[' + b" " * (3 << 20) + b"]}}"
    return [
        ("HTTP 500", Response(b"boom", status=500), ["HTTP 500", "Internal Server Error"]),
        ("HTTP 503", Response(b"", status=503), ["HTTP 503", "Service Unavailable"]),
        ("HTTP 404", Response(b"", status=404), ["HTTP 404", srv.url("/status.json")]),
        ("HTTP 403", Response(b"", status=403), ["HTTP 403"]),
        ("non-JSON", Response(b"<html><body>maintenance</body></html>", content_type="text/html"),
         ["bad snapshot", "not valid JSON"]),
        ("empty body", Response(b""), ["not valid JSON", "empty"]),
        ("cut JSON", Response(good[:len(good) // 2]), ["not valid JSON"]),
        ("truncated transfer", Response(good, truncate_at=len(good) // 3),
         ["truncated body", "bytes remaining"]),
        ("top-level array", Response(b"[1, 2, 3]"), ["wrong shape", "an array, not an object"]),
        ("no stations", Response(b'{"lastUpdatedOther": 1, "ttl": 60, "data": {"bikes": []}}'),
         ["no data.stations array"]),
        ("no lastUpdatedOther", Response(b'{"data": {"stations": []}}'),
         ["no lastUpdatedOther"]),
        ("station without stationCode", Response(compact(bad_last)),
         ["station #1484", "has no stationCode"]),
        ("wrong field type", Response(compact(bad_type)),
         ["num_bikes_available is a string, expected an integer"]),
        ("wrong item type", Response(compact(bad_item)),
         ["num_bikes_available_types[1].ebike is a string, expected an integer"]),
        ("timeout", Response(good, delay=3.0), ["timeout", "timed out"]),
        ("redirect loop", Response.redirect("/loop-a"), ["too many redirects", "max.redirects is 2"]),
        ("redirect to ftp", Response.redirect("ftp://127.0.0.1/x.json"),
         ["redirect from", "only http and https"]),
        ("redirect to file", Response.redirect("file:///etc/passwd"),
         ["redirect from", "only http and https"]),
        ("oversized, announced", Response(stream=200 << 20, announce=True),
         ["over max.body.bytes (1048576)", "not downloaded"]),
        ("oversized, streamed", Response(stream=200 << 20),
         ["over max.body.bytes (1048576)", "transfer aborted"]),
        ("oversized once decoded", Response(big, gzip=True),
         ["over max.body.bytes (1048576)", "transfer aborted"]),
    ]


def test_every_failure_mode_retries_and_recovers():
    need_data()
    base = load(STATUS_2024)
    good0 = compact(base)
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(good0))
        srv.route("/loop-a", Response.redirect("/loop-b"))
        srv.route("/loop-b", Response.redirect("/loop-a"))
        yaml = pipeline(srv.url("/status.json"), out,
                        extra={"station.codes": FEW, "request.timeout.ms": 800,
                               "max.body.bytes": 1 << 20, "max.redirects": 2})
        with start(yaml, tmp) as s:
            wait_lines(out, 3)
            emitted = 3
            for k, (name, resp, words) in enumerate(failure_modes(srv, good0)):
                if name.startswith("redirect loop"):
                    srv.route("/status.json", Response.redirect("/loop-a"))
                else:
                    srv.route("/status.json", resp)
                n = srv.count("/status.json")
                trace = wait_retrying(s, *words)
                srv.wait_requests("/status.json", n + 2)  # failed at least twice over
                assert nlines(out) == emitted, "%s: records emitted from a failed poll" % name
                assert "poll failed" in s.log() and words[0] in s.log(), "%s: not logged" % name
                assert "next attempt in" in trace, trace
                if name.startswith("oversized") and "decoded" not in name:
                    sent = max(r["bytes_sent"] for r in srv.requests("/status.json")[n:])
                    assert sent < 64 << 20, "%s: %d bytes sent before the client gave up" % (
                        name, sent)
                # Recovery: a new snapshot is emitted and the status clears.
                srv.route("/status.json", Response(compact(variant(base, 1732010000 + k, bump=k + 1))))
                emitted += 3
                wait_lines(out, emitted, "%s: recovery emits the next snapshot" % name)
                wait_recovered(s)
                want = expected_rows(variant(base, 1732010000 + k, bump=k + 1), codes=set(FEW))
                assert lines(out)[-3:] == want, "%s: recovered snapshot differs" % name
            nmodes = len(failure_modes(srv, good0))
            wait_for(lambda: plugin_metric(s, "errors") >= 2 * nmodes, TIMEOUT, "errors counted")
            assert plugin_metric(s, "bytes_downloaded") < 200 << 20
        assert not s.alive()


def test_numbers_beyond_64_bits_are_out_of_range_with_their_place():
    """JSON allows numbers of any size; the parser holds integers in 64 bits
    and numbers as doubles. One beyond that where velib_source reads it (a
    station's field, a scalar extra, which is carried, the ttl) is reported
    as a value out of range at its place (the station, its stationCode even
    when it comes after the number, the field), like a value of a wrong
    type, not as a broken document; in station_information too."""
    need_data()
    base = load(STATUS_2024)
    codes = [st["stationCode"] for st in base["data"]["stations"]]
    assert list(base["data"]["stations"][3])[-1] == "stationCode"  # after the number

    def with_raw(path, raw, doc=None):
        """The snapshot with the value at path written as the raw text raw."""
        doc = copy.deepcopy(doc or base)
        o = doc
        for k in path[:-1]:
            o = o[k]
        o[path[-1]] = "@RAW@"
        return compact(doc).replace(b'"@RAW@"', raw.encode())

    st = ["data", "stations"]
    cases = [
        (with_raw(st + [3, "num_bikes_available"], "18446744073709551616"),
         "station #3 (stationCode %s): num_bikes_available is out of range (18446744073709551616 "
         "does not fit in 64 bits)" % codes[3]),
        (with_raw(st + [9, "num_bikes_available_types", 1, "ebike"], "-9223372036854775809"),
         "station #9 (stationCode %s): num_bikes_available_types[1].ebike is out of range "
         "(-9223372036854775809 does not fit in 64 bits)" % codes[9]),
        (with_raw(["ttl"], "1e400"), "ttl is out of range (1e400 is beyond the range of a double)"),
        (with_raw(st + [1484, "extra"], "1" * 40),
         "station #1484 (stationCode %s): extra is out of range (%s... does not fit in 64 bits)"
         % (codes[1484], "1" * 27)),
        # One that nothing reads before it (ignored) does not hide it.
        (with_raw(st + [3, "num_bikes_available"], "18446744073709551616")
         .replace(b"{", b'{"version":123456789012345678901234567890,', 1),
         "station #3 (stationCode %s): num_bikes_available is out of range (18446744073709551616 "
         "does not fit in 64 bits)" % codes[3]),
    ]
    info_doc = load(INFO_2024)
    info_code = info_doc["data"]["stations"][5]["stationCode"]
    bad_info = with_raw(st + [5, "capacity"], "1e999", info_doc)
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(compact(base)))
        srv.route("/info.json", Response(bad_info))
        yaml = pipeline(srv.url("/status.json"), out, srv.url("/info.json"),
                        extra={"station.codes": FEW, "information.interval.ms": 200})
        with start(yaml, tmp) as s:
            wait_lines(out, 3)
            want = ("station_information failed: wrong shape: station #5 (stationCode %s): "
                    "capacity is out of range (1e999 is beyond the range of a double)" % info_code)
            wait_for(lambda: want in s.log(), TIMEOUT, "the information failure logged")
            wait_degraded(s, want)
            for k, (body, words) in enumerate(cases):
                srv.route("/status.json", Response(body))
                trace = wait_retrying(s, "bad snapshot: wrong shape: " + words)
                assert "not valid JSON" not in trace, trace
                assert nlines(out) == 3 * (k + 1)
                srv.route("/status.json", Response(compact(variant(base, 1732010000 + k, bump=k + 1))))
                wait_lines(out, 3 * (k + 2))
                wait_recovered(s)


BIG = "123456789012345678901234567890"  # beyond 64 bits, as RFC 8259 allows


def test_numbers_beyond_64_bits_where_nothing_reads_are_ignored():
    """A number the parser cannot hold where velib_source reads nothing (a
    top-level member it ignores, a nested extra field, which is not carried,
    a station_information member that is not joined) costs nothing: the
    snapshot and the table are taken, the rows are those of the same feeds
    without it. Where it reads, the number is still out of range (the test
    above)."""
    need_data()
    status = variant(load(STATUS_2024), 1732009999)
    sts = status["data"]["stations"]
    status["version"] = "@V@"
    status["data"]["count"] = "@C@"
    sts[0]["rental_uris"] = {"android": "@A@", "ids": [1, "@I@"]}
    sts[1484]["nested"] = ["@N@"]
    info = load(INFO_2024)
    ists = info["data"]["stations"]
    info["ttl"] = "@T@"
    by_code = {st["stationCode"]: k for k, st in enumerate(ists)}
    ists[by_code[FEW[0]]]["big_extra"] = "@B@"
    ists[by_code[FEW[1]]]["rental_methods"] = ["@R@"]
    raws = {"V": BIG, "C": "-1e400", "A": "1e999", "I": "-" + BIG, "N": "18446744073709551616",
            "T": BIG, "B": "-" + BIG, "R": "1" * 40}

    def raw(doc):
        b = compact(doc)
        for k, v in raws.items():
            b = b.replace(b'"@%s@"' % k.encode(), v.encode())
        return b
    body, info_body = raw(status), raw(info)
    assert BIG.encode() in body and BIG.encode() in info_body
    want = expected_rows(status, info, codes=set(FEW))
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(body))
        srv.route("/info.json", Response(info_body))
        yaml = pipeline(srv.url("/status.json"), out, srv.url("/info.json"),
                        extra={"station.codes": FEW})
        with start(yaml, tmp) as s:
            wait_lines(out, 3)
            got = lines(out)
            assert got == want, "got  %r\nwant %r" % (got, want)
            assert all(g["name"] is not None for g in got), got  # joined
            # info_stations is set just after info_fetches, and status.json
            # may be written in between: both are waited for.
            wait_for(lambda: plugin_metric(s, "info_fetches") == 1 and
                     plugin_metric(s, "info_stations") == 1485 and
                     plugin_metric(s, "snapshots") == 1, TIMEOUT, "a table and a snapshot taken")
            assert plugin_metric(s, "errors") == 0
            assert plugin_metric(s, "info_errors") == 0
            log = s.log()
            assert "out of range" not in log and "not valid JSON" not in log, log[-2000:]
            assert "station field 'rental_uris' is not carried" in log, log[-2000:]


def test_short_waits_are_shown_in_ms():
    """A retry less than a second away is announced in ms ("next attempt in
    35 ms"), not as "0.0 s"; the status and station_information alike."""
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(b"", status=500))
        srv.route("/info.json", Response(b"", status=500))
        yaml = pipeline(srv.url("/status.json"), out, srv.url("/info.json"),
                        extra={"backoff.initial.ms": 20, "backoff.max.ms": 40})
        with start(yaml, tmp) as s:
            trace = wait_retrying(s, "HTTP 500", "next attempt in")
            m = re.search(r"next attempt in (\d+) ms$", trace)
            assert m and 10 <= int(m.group(1)) <= 40 + 25, trace
            wait_for(lambda: re.search(r"station_information failed: HTTP 500 .*next attempt in "
                                       r"\d+ ms\n", s.log()), TIMEOUT, "the info retry logged")
            assert "next attempt in 0.0 s" not in s.log()


def test_stopping_does_not_wait_for_a_stalled_server():
    """A server that holds a response (status, or the first
    station_information, which the first poll waits for) does not hold up
    stopping the connector (REST) or spoke (SIGTERM): both take well under
    request.timeout.ms."""
    need_data()
    timeout_ms = 20000
    bound = 3.0
    good = read_bytes(STATUS_2024)
    for stalled in ("/status.json", "/info.json"):
        for how in ("rest", "sigterm"):
            with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
                out = os.path.join(tmp, "out.ndjson")
                srv.route("/status.json", Response(good))
                srv.route("/info.json", Response.file(data_path(INFO_2024)))
                srv.route(stalled, Response(b"{}", delay=timeout_ms / 1000.0 + 10))
                yaml = pipeline(srv.url("/status.json"), out, srv.url("/info.json"),
                                extra={"request.timeout.ms": timeout_ms, "station.codes": FEW})
                with start(yaml, tmp) as s:
                    s.wait_state("velib", "RUNNING")
                    wait_for(lambda: srv.count(stalled) >= 1, TIMEOUT, "a request stalled")
                    t0 = time.monotonic()
                    if how == "rest":
                        r = Api(s).call("PUT", "/connectors/velib/stop")
                        assert r.status == 204, r
                        Api(s).wait_state("velib", "STOPPED", timeout=bound)
                    else:
                        assert s.stop(timeout=bound) == 0
                    took = time.monotonic() - t0
                    assert took < bound, "%s, %s stalled: stopped after %.1fs" % (how, stalled, took)
                    assert nlines(out) == 0


def test_errors_after_a_redirect_name_the_url_that_failed():
    """After a redirect, a failure names the URL that failed as well as the
    configured one: "... from <url> (redirected to <target>)"."""
    need_data()
    base = load(STATUS_2024)
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        url, target = srv.url("/status.json"), srv.url("/moved.json")
        srv.route("/status.json", Response(compact(base)))
        with start(pipeline(url, out, extra={"station.codes": FEW}), tmp) as s:
            wait_lines(out, 3)
            srv.route("/status.json", Response.redirect("/moved.json"))
            srv.route("/moved.json", Response(b"", status=503))
            wait_retrying(s, "HTTP 503 Service Unavailable from %s (redirected to %s)" % (url, target))
            gone = "http://127.0.0.1:%d/x.json" % spoketest.free_port()
            srv.route("/status.json", Response.redirect(gone))
            wait_retrying(s, "cannot connect to %s (redirected to %s)" % (url, gone))
            srv.route("/status.json", Response(compact(variant(base, 1732010000, bump=1))))
            wait_lines(out, 6)
            wait_recovered(s)
            # Without a redirect the message is as before.
            srv.route("/status.json", Response(b"", status=503))
            trace = wait_retrying(s, "HTTP 503 Service Unavailable from %s;" % url)
            assert "redirected" not in trace, trace


def test_body_exactly_at_max_body_bytes():
    """A body of exactly max.body.bytes is read and parsed in place (the
    parser's padding lies past the limit, in the client's slack), and its
    last byte is part of the document; one byte more is refused, announced
    or streamed."""
    need_data()
    base = load(STATUS_2024)
    limit = 1 << 20

    def exact(obj, size):
        body = compact(obj)
        assert len(body) < size
        return b"{" + b" " * (size - len(body)) + body[1:]  # ends with its closing brace

    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        first = exact(base, limit)
        assert len(first) == limit and first.endswith(b"}")
        srv.route("/status.json", Response(first))
        yaml = pipeline(srv.url("/status.json"), out,
                        extra={"station.codes": FEW, "max.body.bytes": limit})
        with start(yaml, tmp) as s:
            wait_lines(out, 3)
            assert lines(out) == expected_rows(base, codes=set(FEW))
            emitted = 3
            over = [("announced", Response(exact(variant(base, 1732010000, bump=1), limit + 1)),
                     "not downloaded"),
                    ("streamed", Response(stream=limit + 1), "transfer aborted")]
            for k, (name, resp, word) in enumerate(over):
                srv.route("/status.json", resp)
                wait_retrying(s, "over max.body.bytes (%d)" % limit, word)
                assert nlines(out) == emitted, "%s: records from a body over the limit" % name
                nxt = variant(base, 1732020000 + k, bump=k + 2)
                srv.route("/status.json", Response(exact(nxt, limit)))
                emitted += 3
                wait_lines(out, emitted, "%s: the next body at the limit is emitted" % name)
                assert lines(out)[-3:] == expected_rows(nxt, codes=set(FEW)), name
                wait_recovered(s)
        assert not s.alive()


def test_retry_timeout_bounds_the_plugins_own_backoff():
    """velib_source paces its retries itself (backoff, Retry-After); the
    host's errors.retry.timeout still ends them: FAILED with the reason,
    each retry counted."""
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(b"", status=503))
        yaml = pipeline(srv.url("/status.json"), out,
                        extra={"backoff.initial.ms": 100, "backoff.max.ms": 200,
                               "errors.retry.timeout": 1500})
        with start(yaml, tmp) as s:
            Api(s).wait_state("velib", "FAILED", timeout=TIMEOUT)
            task = rest_task(s)
            assert task["state"] == "FAILED" and "HTTP 503" in task.get("trace", ""), task
            assert "retrying" not in task, task
            # Several polls failed before the timeout, each one a retry.
            assert srv.count("/status.json") >= 3, srv.count("/status.json")
            wait_for(lambda: (s.connector("velib").get("metrics") or {}).get("retries", 0) >= 2,
                     TIMEOUT, lambda: "retries counted (%r)" % s.connector("velib"))
            assert s.alive()


def test_connection_refused_then_back():
    need_data()
    base = load(STATUS_2024)
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(compact(base)))
        with start(pipeline(srv.url("/status.json"), out, extra={"station.codes": FEW}), tmp) as s:
            wait_lines(out, 3)
            srv.stop_listening()
            wait_retrying(s, "cannot connect to", srv.url("/status.json"))
            srv.route("/status.json", Response(compact(variant(base, 1732004999, bump=1))))
            srv.start_listening()
            wait_lines(out, 6)
            wait_recovered(s)


def test_dns_failure_retries():
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp:
        out = os.path.join(tmp, "out.ndjson")
        yaml = pipeline("http://no-such-host.invalid/station_status.json", out,
                        extra={"connect.timeout.ms": 3000})
        with start(yaml, tmp) as s:
            trace = wait_retrying(s, "no-such-host.invalid")
            assert "DNS lookup failed" in trace or "Resolving timed out" in trace, trace
            wait_for(lambda: plugin_metric(s, "errors") >= 2, TIMEOUT, "retried")
            assert nlines(out) == 0


def test_retry_after_seconds_is_honoured():
    need_data()
    base = load(STATUS_2024)
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(compact(base)))
        with start(pipeline(srv.url("/status.json"), out, extra={"station.codes": FEW}), tmp) as s:
            wait_lines(out, 3)
            n = srv.count("/status.json")
            good = Response(compact(variant(base, 1732004999, bump=1)))
            srv.route("/status.json", [Response(b"slow down", status=429,
                                                headers={"Retry-After": "2"}), good])
            trace = wait_retrying(s, "HTTP 429", "Retry-After: 2")
            wait_lines(out, 6)
            wait_recovered(s)
            reqs = after_status(srv.requests("/status.json")[n:], 429)
            gap = reqs[1]["t"] - reqs[0]["t"]
            assert gap >= 2.0, "next request %.3fs after the 429, before its Retry-After: 2" % gap
            assert gap < 4.0, "waited %.3fs for a Retry-After of 2 s" % gap
            # The wait shown is the Retry-After (plus the time the poll took).
            assert re.search(r"next attempt in 2\.[0-4] s", trace), trace


def test_retry_after_http_date_is_honoured():
    need_data()
    base = load(STATUS_2024)
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(compact(base)))
        with start(pipeline(srv.url("/status.json"), out, extra={"station.codes": FEW}), tmp) as s:
            wait_lines(out, 3)
            n = srv.count("/status.json")
            not_before = int(time.time()) + 3
            good = Response(compact(variant(base, 1732004999, bump=1)))
            srv.route("/status.json", [Response(b"", status=503,
                                                headers={"Retry-After": http_date(not_before)}),
                                       good])
            wait_retrying(s, "HTTP 503", "Retry-After")
            wait_lines(out, 6)
            reqs = after_status(srv.requests("/status.json")[n:], 503)
            assert reqs[1]["wall"] >= not_before, \
                "retried at %.3f, before the Retry-After date %d" % (reqs[1]["wall"], not_before)


def test_backoff_grows_with_jitter_and_is_capped():
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(b"", status=500))
        yaml = pipeline(srv.url("/status.json"), out,
                        extra={"backoff.initial.ms": 200, "backoff.max.ms": 800})
        with start(yaml, tmp):
            reqs = srv.wait_requests("/status.json", 8)
        t = [r["t"] for r in reqs[:8]]
        gaps = [b - a for a, b in zip(t, t[1:])]
        caps = [0.2, 0.4, 0.8, 0.8, 0.8, 0.8, 0.8]
        for i, (g, d) in enumerate(zip(gaps, caps)):
            # Equal jitter: a wait in [d/2, d]; scheduling adds a little.
            assert d / 2 - 0.02 <= g <= d + 0.25, "retry %d after %.3fs, want %.2f..%.2f (gaps %r)" % (
                i + 1, g, d / 2, d, gaps)
        assert len(set(round(g, 3) for g in gaps[2:])) > 1, "no jitter: %r" % gaps


def test_ttl_delays_the_next_poll():
    need_data()
    base = load(STATUS_2024)
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        luo = int(time.time())
        v = variant(base, luo)
        v["ttl"] = 2
        srv.route("/status.json", Response(compact(v)))
        with start(pipeline(srv.url("/status.json"), out, extra={"station.codes": FEW}), tmp):
            reqs = srv.wait_requests("/status.json", 2, timeout=10)
        assert reqs[1]["wall"] >= luo + 2, "polled at %.3f, before lastUpdatedOther + ttl (%d)" % (
            reqs[1]["wall"], luo + 2)
        assert reqs[1]["wall"] < luo + 4, "waited too long: %.3f" % (reqs[1]["wall"] - luo)

    for ttl_max, lo, hi in ((0, 0.0, 0.9), (500, 0.45, 1.4)):
        with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
            out = os.path.join(tmp, "out.ndjson")
            v = variant(base, int(time.time()))
            v["ttl"] = 3600
            srv.route("/status.json", Response(compact(v)))
            yaml = pipeline(srv.url("/status.json"), out,
                            extra={"station.codes": FEW, "ttl.max.ms": ttl_max})
            with start(yaml, tmp):
                reqs = srv.wait_requests("/status.json", 2, timeout=10)
            gap = reqs[1]["t"] - reqs[0]["t"]
            assert lo <= gap <= hi, "ttl.max.ms %d: second poll after %.3fs, want %.2f..%.2f" % (
                ttl_max, gap, lo, hi)


def test_gzip_body_decoded():
    need_data()
    with tempfile.TemporaryDirectory(prefix="spoke-velib-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route("/status.json", Response(read_bytes(STATUS_2024), gzip=True))
        with start(pipeline(srv.url("/status.json"), out, extra={"station.codes": FEW}), tmp) as s:
            wait_lines(out, 3)
            assert "gzip" in srv.requests("/status.json")[0]["headers"].get("accept-encoding", "")
            assert lines(out) == expected_rows(load(STATUS_2024), codes=set(FEW))
            wait_for(lambda: plugin_metric(s, "bytes_downloaded") > 0, TIMEOUT, "bytes counted")
            assert plugin_metric(s, "bytes_downloaded") < len(read_bytes(STATUS_2024)) / 3, \
                "not compressed on the wire? %d bytes" % plugin_metric(s, "bytes_downloaded")


if __name__ == "__main__":
    spoketest.main(globals())
