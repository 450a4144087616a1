#!/usr/bin/env python3
"""plugin-http_source: http_source against a local HTTP server (httpfixture)
that answers like OpenWeatherMap's current-weather API, with responses built
from the real recorded rows of the seed weather pipeline
(../shared/data/weather), and misbehaves on demand.

mode stream against StreamServer (below): an endless chunked response like
stream.meetup.com/2/rsvps, carrying the real recorded Meetup RSVP lines
(../shared/data/meetup), which pauses, cuts, falls silent or answers 503 on
the test's command.

Output is checked through file_sink (the value bytes) and through the
recording sink of plugin_velib_source.py (keys, timestamps, source
positions), against the responses the test served.
"""
import datetime
import json
import os
import re
import socket
import tempfile
import threading
import time
import urllib.parse

import spoketest
from httpfixture import HttpFixture, Response
from plugin_velib_source import lines, nlines, start, wait_lines
from resttest import Api, expect, rest_spoke
from spoketest import SOURCE_DIR, Skip, Spoke, metric, q, validate, wait_for

TIMEOUT = 60
DATA = os.path.join(spoketest.SHARED_DATA, "weather",
                    "brenoha_arch-big-data_local_batch_data.ndjson")
PATH = "/data/2.5/weather"
KEY = "t3st-0wm-k3y-5f1e2d3c4b5a69788796a5b4"
CITIES = ["Paris", "Marseille", "Lyon", "Toulouse", "Nice", "Nantes", "Montpellier",
          "Strasbourg", "Bordeaux", "Lille", "Brest", "Rennes"]
UNAUTHORIZED = Response(b'{"cod":401, "message": "Invalid API key. Please see '
                        b'https://openweathermap.org/faq#error401 for more info."}', status=401)


# ---------------------------------------------------------------------------
# the recorded rows, as OpenWeatherMap would have answered them

def need_data():
    if not os.path.exists(DATA):
        raise Skip("the recorded weather rows are not in %s: these tests serve them over HTTP"
                   % DATA)


def load_rows():
    need_data()
    with open(DATA) as f:
        return [json.loads(x) for x in f if x.strip()]


def epoch(date):
    """The producer's local wall clock (Europe/Paris, UTC+1 in March 2024)."""
    d = datetime.datetime.strptime(date, "%Y-%m-%d %H:%M:%S")
    return int(d.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=1))).timestamp())


def owm(row):
    """A current-weather response carrying what the seed kept of it."""
    return {"coord": {"lon": row["lon"], "lat": row["lat"]},
            "main": {"temp": row["temperature"], "feels_like": row["feels_like"]},
            "dt": epoch(row["date"]), "name": row["city"]}


def bodies_by_city(rows):
    """{city: [response bytes of each poll, in order]} (json.dumps spacing:
    the source must pass these exact bytes on)."""
    out = {}
    for r in rows:
        out.setdefault(r["city"], []).append(json.dumps(owm(r)).encode())
    return out


def city_path(city, key=KEY):
    return "%s?q=%s,FR&appid=%s&units=metric" % (PATH, urllib.parse.quote(city, safe=""), key)


def template(srv):
    return srv.url(PATH) + "?q={item},FR&appid={api.key}&units=metric"


def shown(srv, city):
    """The URL as the source shows it: the key masked."""
    return srv.url(city_path(city, key="***"))


# ---------------------------------------------------------------------------
# pipelines

def yaml_keys(keys):
    y = ""
    for k, v in keys.items():
        if isinstance(v, (list, tuple)):
            y += "    %s: [%s]\n" % (k, ", ".join(q(str(x)) for x in v))
        else:
            y += "    %s: %s\n" % (k, q(str(v)))
    return y


def source_and_sinks(name, topic, keys, extra, sinks, rec):
    """connectors: http_source `name` (keys, updated by extra; None drops
    a key) -> topic, a file_sink per (name, topic, path) of sinks whose
    path is set, and the recorder on topic when rec is set."""
    keys = dict(keys, **(extra or {}))
    keys = {k: v for k, v in keys.items() if v is not None}
    y = ("connectors:\n"
         "  - name: %s\n"
         "    connector.class: http_source\n"
         "    topic: %s\n" % (name, topic)) + yaml_keys(keys)
    for sname, stopic, path in sinks:
        if path:
            y += ("  - name: %s\n"
                  "    connector.class: file_sink\n"
                  "    topics: %s\n"
                  "    fsync: false\n"
                  "    file: %s\n" % (sname, stopic, q(path)))
    if rec:
        y += ("  - name: rec\n"
              "    connector.class: velibtest_sink\n"
              "    topics: %s\n"
              "    file: %s\n" % (topic, q(rec)))
    return y


def pipeline(url, out, items=CITIES, extra=None, rec=None, mapped=None):
    """http_source -> weather -> file_sink(out) [+ recorder(rec)]
    [+ schema_mapper(openweathermap_current) -> file_sink(mapped)]."""
    keys = {"url": url, "items": items, "api.key": KEY, "poll.interval.ms": 100,
            "max.parallel.requests": 12,
            "backoff.initial.ms": 50, "backoff.max.ms": 200, "request.timeout.ms": 5000,
            "timestamp.path": "dt"}
    y = source_and_sinks("weather", "weather.raw", keys, extra,
                         [("out", "weather.raw", out)], rec)
    if mapped:
        y += ("  - name: mapper\n"
              "    connector.class: schema_mapper\n"
              "    topics: weather.raw\n"
              "    topic: weather.rows\n"
              "    schema.file: %s\n"
              "  - name: rows\n"
              "    connector.class: file_sink\n"
              "    topics: weather.rows\n"
              "    fsync: false\n"
              "    file: %s\n" % (q(os.path.join(SOURCE_DIR, "schemas",
                                                   "openweathermap_current.yaml")), q(mapped)))
    return y


def raw_lines(path):
    """The lines a file_sink wrote, as bytes (the record values)."""
    return spoketest.complete_lines(path)


def plugin_metric(s, name):
    return metric(s, "weather", name) or 0


def retrying_trace(s, conn="weather"):
    """The source's status trace while it is retrying, else None."""
    c = s.connector(conn)
    return c.get("trace") if c.get("retrying") else None


def wait_retrying(s, *words, conn="weather"):
    """Until the source is retrying with every word in its trace, the
    connector still RUNNING; returns the trace."""
    def has_words():
        t = retrying_trace(s, conn)
        return t if t and all(w in t for w in words) else None
    trace = wait_for(has_words, TIMEOUT, lambda: "the trace to show %r (now %r)" % (
        words, retrying_trace(s, conn)))
    c = s.connector(conn)
    assert s.alive() and c.get("state") == "RUNNING", c
    return trace


def wait_recovered(s, conn="weather"):
    c = lambda: s.connector(conn)  # noqa: E731
    wait_for(lambda: c().get("retrying") is False and not c().get("trace"), TIMEOUT,
             "%s recovered (not retrying)" % conn)


def assert_no_key(s, *paths):
    """The api key appears nowhere: log, status.json, offsets, the given files."""
    for name, text in [("log", s.log()), ("status.json", json.dumps(s.status())),
                       ("offsets.json", json.dumps(s.offsets()))] + \
                      [(p, spoketest.read_bytes(p).decode(errors="replace")) for p in paths]:
        assert KEY not in text, "the api key leaked into %s" % name
        assert urllib.parse.quote(KEY, safe="") not in text, "the api key leaked into %s" % name


def query(req):
    return urllib.parse.parse_qs(urllib.parse.urlsplit(req["path"]).query)


# ---------------------------------------------------------------------------
# configuration

BASE = ("connectors:\n"
        "  - name: weather\n"
        "    connector.class: http_source\n"
        "    topic: weather.raw\n"
        "    url: \"https://api.openweathermap.org/data/2.5/weather?q={item},FR&appid={api.key}\"\n"
        "    items: [Paris, Lyon]\n"
        "    api.key: %s\n" % q(KEY))


def test_unknown_property_rejected():
    r = validate(BASE)
    assert r.returncode == 0, "valid config refused: %s" % r.stderr
    r = validate(BASE + "    poll.intervall.ms: 100\n")
    assert r.returncode == 1, "misspelled key accepted (rc %d)" % r.returncode
    assert "poll.intervall.ms" in r.stderr, "error does not name the key: %r" % r.stderr
    for bad in ("format: xml", "timestamp.unit: h", "max.parallel.requests: 0",
                "poll.interval.ms: 10", "max.body.bytes: 10"):
        r = validate(BASE + "    %s\n" % bad)
        assert r.returncode == 1 and bad.split(":")[0] in r.stderr, "%s accepted: %r" % (
            bad, r.stderr)
    assert KEY not in r.stdout + r.stderr


# Each rule the plugin's check enforces: (the key it names, the keys that
# break it, what the message says). Every config holds the api key unless it
# drops it; none of the messages may show it.
CHECKED = [
    ("url", {"url": "ftp://example.com/x?k={api.key}", "items": None},
     "url 'ftp://example.com/x?k=***': scheme 'ftp' is not allowed"),
    ("url", {"url": "weather.json", "items": None, "api.key": None},
     "url 'weather.json' is not a valid absolute URL"),
    ("url", {"url": "http://example.com/w?q={city}"},
     "url: unknown placeholder at '{city}'"),
    ("url", {"url": "http://example.com/w?q={item}", "items": None},
     "url uses {item} but items is empty"),
    ("items", {"url": "http://example.com/w?appid={api.key}"},
     "items has 2 entries but url has no {item}"),
    ("url", {"url": "http://example.com/w?q={item}&k={api.key}", "api.key": None},
     "url uses {api.key} but api.key is not set"),
    ("items", {"items": ["Paris", "Lyon", "Paris"]}, "items: 'Paris' appears twice"),
    ("api.key", {"api.key": KEY + "\n"}, "api.key holds a control character"),
    ("headers", {"headers": ["X-Api-Key " + KEY]},
     "headers: 'X-Api-Key ***' is not 'Name: value'"),
    ("headers", {"headers": ["X-A: b\r\nX-Evil: 1"]},
     "headers: 'X-A: b  X-Evil: 1' holds a control character (0x0d at byte 6)"),
    ("headers", {"url": "http://127.0.0.1:9/w?q={item}", "headers": ["X-Api-Key: {api.key}"],
                 "api.key": None},
     "headers use {api.key} but api.key is not set"),
    ("records.path", {"records.path": "list..x"}, "records.path 'list..x' is not a path"),
    ("timestamp.path", {"timestamp.path": "dt["}, "timestamp.path 'dt[' is not a path"),
    ("key", {"key": "a[x]"}, "key 'a[x]' is not a path"),
    ("backoff.initial.ms", {"backoff.initial.ms": 5000, "backoff.max.ms": 1000},
     "backoff.initial.ms (5000) is above backoff.max.ms (1000)"),
    ("format", {"mode": "stream", "format": "json"},
     "format json reads a response as one document; mode stream reads a feed of NDJSON lines"),
    ("max.parallel.requests", {"mode": "stream", "items": ["Paris", "Lyon", "Nice"],
                               "max.parallel.requests": 2},
     "mode stream keeps one connection per URL open: 3 URLs need max.parallel.requests of at "
     "least 3 (it is 2)"),
    ("ssl.ca.pem", {"ssl.ca.pem": "not a certificate"},
     "ssl.ca.pem: no PEM certificate (-----BEGIN CERTIFICATE-----) in it"),
    ("ssl.key.password", {"ssl.key.password": KEY},
     "ssl.key.password is set but ssl.key.pem is not"),
]


def assert_no_key_in(text, what):
    assert KEY not in text and urllib.parse.quote(KEY, safe="") not in text, \
        "the api key leaked into %s: %r" % (what, text)


def test_config_errors_refused_before_running():
    """Every rule between keys is the plugin's check: `spoke validate`
    points at the key's line with the reason, `spoke run` refuses to start
    (exit 1), and no message shows the api key. The same config with the
    rule kept is valid. Several mistakes are reported together."""
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp:
        out = os.path.join(tmp, "out.ndjson")

        def conf(extra):
            keys = {"items": ["Paris", "Lyon"],
                    "url": "http://127.0.0.1:9/w?q={item}&appid={api.key}"}
            keys.update(extra)
            return pipeline(keys.pop("url"), out, items=keys.pop("items"),
                            extra=keys).removeprefix("connectors:\n")

        p = spoketest.validate_config(tmp, conf({"headers": ["X-Api-Key: {api.key}"],
                                                 "records.path": "list", "key": "sys.id"}))[2]
        assert p.returncode == 0, "valid config refused: %s" % p.stderr
        for ok in ({"mode": "stream"}, {"mode": "stream", "format": "ndjson",
                                        "max.parallel.requests": 2}):
            p = spoketest.validate_config(tmp, conf(ok))[2]
            assert p.returncode == 0, "%r refused: %s" % (ok, p.stderr)
        for key, extra, want in CHECKED:
            _, p, r = spoketest.expect_check_refuses(tmp, conf(extra), "weather", key, want,
                                                     reason_first=True)
            assert_no_key_in(p.stdout + p.stderr, "spoke validate")
            assert_no_key_in(r.stdout + r.stderr, "spoke run")
            assert not os.path.exists(out), "%r: the pipeline ran" % extra
        # Several at once: every one reported at its key, none showing the
        # key; a url template refused is not also a URL refused.
        picked = [CHECKED[i] for i in (2, 6, 8, 11, 12, 14, len(CHECKED) - 2,
                                       len(CHECKED) - 1)]
        assert picked[-3][0] == "backoff.initial.ms", picked  # lib/httpc's three together
        extra = {}
        for _, keys, _ in picked:
            extra.update(keys)
        _, p, r = spoketest.expect_checks_refuse(
            tmp, conf(extra), [("weather", key, want) for key, _, want in picked],
            reason_first=True)
        assert_no_key_in(p.stdout + p.stderr, "spoke validate")
        assert_no_key_in(r.stdout + r.stderr, "spoke run")


def test_config_errors_refused_over_rest():
    """POST /connectors and PUT /connectors/{c}/config answer 400 with the
    reason (the key masked) and create nothing; config/validate counts the
    error on the key."""
    sp, api = rest_spoke()
    with sp:
        cfg = {"connector.class": "http_source", "topic": "weather.raw",
               "url": "http://127.0.0.1:9/w?q={item}&appid={api.key}", "items": "Paris,Lyon",
               "api.key": KEY, "headers": "X-Api-Key " + KEY}
        want = "headers: 'X-Api-Key ***' is not 'Name: value'"
        r = expect(api.call("POST", "/connectors", body={"name": "weather", "config": cfg}), 400)
        assert want in r.json["message"], r.json
        assert_no_key_in(r.raw.decode(), "the POST answer")
        r = expect(api.call("PUT", "/connectors/weather/config", body=cfg), 400)
        assert want in r.json["message"], r.json
        assert_no_key_in(r.raw.decode(), "the PUT answer")
        assert api.get("/connectors").json == []
        r = expect(api.call("PUT", "/connector-plugins/http_source/config/validate", body=cfg),
                   200)
        # (The answer echoes each key's value as given: api.key masked, the
        # key written into headers as it is.)
        errs = {c["value"]["name"]: c["value"]["errors"] for c in r.json["configs"]
                if c["value"]["errors"]}
        assert_no_key_in(json.dumps(errs), "the config/validate errors")
        assert r.json["error_count"] == 1 and list(errs) == ["headers"] and \
            want in errs["headers"][0], r.json
        assert_no_key_in(sp.log(), "the log")


def test_https_with_a_private_ca():
    """An https server whose certificate a private CA signed: with
    ssl.ca.pem (PEM text) every poll goes through and the record is the
    body served; without it (the system's CAs) or with another CA, the
    handshake is refused, the source retries with libcurl's reason in its
    status, and nothing is emitted. A ssl.ca.pem that holds no certificate
    is refused by the check, at its key."""
    with tempfile.TemporaryDirectory(prefix="spoke-http-tls-") as tmp:
        certs = spoketest.make_certs(tmp)
        body = json.dumps({"name": "Paris", "dt": 1732001704, "main": {"temp": 8.5}}).encode()
        with HttpFixture(tls=certs["server"]) as srv:
            srv.route("/w", Response(body))
            out = os.path.join(tmp, "out.ndjson")
            conf = pipeline(srv.url("/w"), out, items=[], extra={
                "ssl.ca.pem": spoketest.pem(certs["ca"][0])})
            with Spoke(conf, tmp=tmp) as s:
                s.wait_for(lambda: len(raw_lines(out)) >= 1, TIMEOUT, "a record over https")
                assert raw_lines(out)[0] == body, raw_lines(out)[0]
                assert not s.connector("weather").get("retrying")
            for what, extra in (("the system's CAs", {}),
                                ("another CA", {"ssl.ca.pem": spoketest.pem(certs["other"][0])})):
                with tempfile.TemporaryDirectory(prefix="spoke-http-tls-") as t2:
                    out2 = os.path.join(t2, "out.ndjson")
                    with Spoke(pipeline(srv.url("/w"), out2, items=[], extra=extra),
                               tmp=t2) as s:
                        st = s.wait_for(
                            lambda: (s.connector("weather").get("retrying") and
                                     s.connector("weather")), TIMEOUT, what + ": retrying")
                        trace = st.get("trace") or ""
                        assert "server certificate verification failed" in trace, (what, trace)
                        assert not os.path.exists(out2) or not raw_lines(out2), what
        spoketest.expect_check_refuses(
            tmp, pipeline("https://127.0.0.1:9/w", os.path.join(tmp, "o.ndjson"), items=[],
                          extra={"ssl.ca.pem": "not a certificate"}).removeprefix("connectors:\n"),
            "weather", "ssl.ca.pem", "ssl.ca.pem: ")


def test_https_client_certificate():
    """A server that requires a client certificate: without one the
    handshake is refused and the source retries with the reason; with
    ssl.certificate.pem and ssl.key.pem (PEM text, the key a secret) the
    records come, and the key shows in no answer or log. A certificate
    without its key, or a key that is not its, is refused by the check."""
    with tempfile.TemporaryDirectory(prefix="spoke-http-tls-") as tmp:
        certs = spoketest.make_certs(tmp)
        ca, cert, key = (spoketest.pem(certs["ca"][0]), spoketest.pem(certs["client"][0]),
                         spoketest.pem(certs["client"][1]))
        body = json.dumps({"name": "Lyon", "dt": 1732001704, "main": {"temp": 7.0}}).encode()
        with HttpFixture(tls=certs["server"], client_ca=certs["ca"][0]) as srv:
            srv.route("/w", Response(body))
            with tempfile.TemporaryDirectory(prefix="spoke-http-tls-") as t2:
                out = os.path.join(t2, "out.ndjson")
                with Spoke(pipeline(srv.url("/w"), out, items=[], extra={"ssl.ca.pem": ca}),
                           tmp=t2) as s:
                    s.wait_for(lambda: s.connector("weather").get("retrying"), TIMEOUT,
                               "retrying without a client certificate")
                    assert not os.path.exists(out) or not raw_lines(out)
            out = os.path.join(tmp, "out.ndjson")
            conf = pipeline(srv.url("/w"), out, items=[], extra={
                "ssl.ca.pem": ca, "ssl.certificate.pem": cert, "ssl.key.pem": key})
            with Spoke(conf, tmp=tmp) as s:
                s.wait_for(lambda: len(raw_lines(out)) >= 1, TIMEOUT,
                           "a record with a client certificate")
                assert raw_lines(out)[0] == body
                r = expect(Api(s).call("GET", "/connectors/weather/config"), 200)
                assert "PRIVATE KEY" not in r.raw.decode(), r.json.get("ssl.key.pem")
                status = open(os.path.join(s.state_dir, "status.json")).read()
                assert "PRIVATE KEY" not in s.log() and "PRIVATE KEY" not in status
        for extra, key_at, want in (
                ({"ssl.certificate.pem": cert}, "ssl.certificate.pem",
                 "ssl.certificate.pem is set but ssl.key.pem is not"),
                ({"ssl.certificate.pem": cert, "ssl.key.pem": spoketest.pem(certs["server"][1])},
                 "ssl.key.pem", "ssl.key.pem: the key does not belong to ssl.certificate.pem")):
            conf = pipeline("https://127.0.0.1:9/w", os.path.join(tmp, "o.ndjson"), items=[],
                            extra=extra).removeprefix("connectors:\n")
            _, p, r = spoketest.expect_check_refuses(tmp, conf, "weather", key_at, want)
            assert "PRIVATE KEY" not in p.stderr + r.stderr


def test_https_encrypted_client_key():
    """ssl.key.pem encrypted (PKCS#8, and OpenSSL's traditional form) with
    ssl.key.password: the server that requires a client certificate
    answers, and the password shows in no answer, status or log. A wrong
    password, or none for an encrypted key, is refused by the check at
    ssl.key.password."""
    with tempfile.TemporaryDirectory(prefix="spoke-http-tls-") as tmp:
        certs = spoketest.make_certs(tmp)
        ca = spoketest.pem(certs["ca"][0])
        body = json.dumps({"name": "Nantes", "dt": 1732001704, "main": {"temp": 9.0}}).encode()
        with HttpFixture(tls=certs["server"], client_ca=certs["ca"][0]) as srv:
            srv.route("/w", Response(body))
            for form in ("client_pkcs8", "client_trad"):
                with tempfile.TemporaryDirectory(prefix="spoke-http-tls-") as t2:
                    out = os.path.join(t2, "out.ndjson")
                    conf = pipeline(srv.url("/w"), out, items=[], extra={
                        "ssl.ca.pem": ca, "ssl.certificate.pem": spoketest.pem(certs[form][0]),
                        "ssl.key.pem": spoketest.pem(certs[form][1]),
                        "ssl.key.password": spoketest.CERT_PASSWORD})
                    with Spoke(conf, tmp=t2) as s:
                        s.wait_for(lambda: len(raw_lines(out)) >= 1, TIMEOUT,
                                   "a record with an encrypted key (%s)" % form)
                        assert raw_lines(out)[0] == body, form
                        r = expect(Api(s).call("GET", "/connectors/weather/config"), 200)
                        status = open(os.path.join(s.state_dir, "status.json")).read()
                        for text in (r.raw.decode(), status, s.log()):
                            assert spoketest.CERT_PASSWORD not in text, form
        cert, enc = spoketest.pem(certs["client"][0]), spoketest.pem(certs["client_pkcs8"][1])
        for extra, want in (
                ({"ssl.key.password": "not the password"},
                 "ssl.key.password does not decrypt ssl.key.pem"),
                ({}, "ssl.key.password is required: ssl.key.pem is encrypted")):
            conf = pipeline("https://127.0.0.1:9/w", os.path.join(tmp, "o.ndjson"), items=[],
                            extra=dict({"ssl.certificate.pem": cert, "ssl.key.pem": enc},
                                       **extra)).removeprefix("connectors:\n")
            _, p, r = spoketest.expect_check_refuses(tmp, conf, "weather", "ssl.key.password",
                                                     want)
            assert "not the password" not in p.stderr + r.stderr


def test_https_revocation_list():
    """ssl.crl.pem: with the CA's list revoking the server's certificate
    every poll is refused, the source retrying with the reason and emitting
    nothing; with a list of that CA revoking nothing the records come. A
    list from another CA, or one without ssl.ca.pem, is refused by the
    check at ssl.crl.pem."""
    with tempfile.TemporaryDirectory(prefix="spoke-http-tls-") as tmp:
        certs = spoketest.make_certs(tmp)
        ca = spoketest.pem(certs["ca"][0])
        body = json.dumps({"name": "Lille", "dt": 1732001704, "main": {"temp": 6.0}}).encode()
        with HttpFixture(tls=certs["server"]) as srv:
            srv.route("/w", Response(body))
            with tempfile.TemporaryDirectory(prefix="spoke-http-tls-") as t2:
                out = os.path.join(t2, "out.ndjson")
                conf = pipeline(srv.url("/w"), out, items=[], extra={
                    "ssl.ca.pem": ca, "ssl.crl.pem": spoketest.pem(certs["crl_server"][0])})
                with Spoke(conf, tmp=t2) as s:
                    st = s.wait_for(lambda: (s.connector("weather").get("retrying") and
                                             s.connector("weather")), TIMEOUT,
                                    "retrying on a revoked certificate")
                    trace = st.get("trace") or ""
                    assert "revoked" in trace.lower(), trace
                    assert not os.path.exists(out) or not raw_lines(out)
            out = os.path.join(tmp, "out.ndjson")
            conf = pipeline(srv.url("/w"), out, items=[], extra={
                "ssl.ca.pem": ca, "ssl.crl.pem": spoketest.pem(certs["crl_none"][0])})
            with Spoke(conf, tmp=tmp) as s:
                s.wait_for(lambda: len(raw_lines(out)) >= 1, TIMEOUT,
                           "a record with a list that revokes nothing")
                assert raw_lines(out)[0] == body
        for extra, want in (
                ({"ssl.ca.pem": ca, "ssl.crl.pem": spoketest.pem(certs["crl_other"][0])},
                 "ssl.crl.pem: list 1 (issuer CN=spoke test other) is not signed by a CA of "
                 "ssl.ca.pem"),
                ({"ssl.crl.pem": spoketest.pem(certs["crl_none"][0])},
                 "ssl.crl.pem needs ssl.ca.pem"),
                ({"ssl.ca.pem": ca, "ssl.crl.pem": spoketest.pem(certs["crl_expired"][0])},
                 "(its next update): give the CA's current list")):
            conf = pipeline("https://127.0.0.1:9/w", os.path.join(tmp, "o.ndjson"), items=[],
                            extra=extra).removeprefix("connectors:\n")
            spoketest.expect_check_refuses(tmp, conf, "weather", "ssl.crl.pem", want)


# ---------------------------------------------------------------------------
# the weather of twelve cities

def test_weather_cities_every_record():
    """Every recorded row of the twelve cities, served as 31 successive
    current-weather answers per city: each one becomes exactly one record
    (value = the bytes served, key = the city, timestamp = dt, position =
    the city's URL with the key masked), in order; repeated answers emit
    nothing. The server only answers the right appid."""
    by_city = bodies_by_city(load_rows())
    assert sorted(by_city) == sorted(CITIES) and all(len(v) == 31 for v in by_city.values())
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, HttpFixture() as srv:
        out, rec = os.path.join(tmp, "out.ndjson"), os.path.join(tmp, "rec.ndjson")
        for c in CITIES:
            srv.route(city_path(c), [Response(b) for b in by_city[c]])
        srv.route(PATH, UNAUTHORIZED)  # any other query: a wrong key
        with start(pipeline(template(srv), out, rec=rec), tmp, rec=True) as s:
            wait_lines(out, 372)
            wait_for(lambda: nlines(rec) >= 372, TIMEOUT, "the recorder got 372 records")
            # Polls of the last answer, repeated, emit nothing.
            for c in CITIES:
                srv.wait_requests(city_path(c), 34)
            wait_for(lambda: plugin_metric(s, "unchanged") >= 24, TIMEOUT, "unchanged counted")
            assert nlines(out) == 372, "a repeated answer was emitted again"

            got = raw_lines(out)
            recs = lines(rec)
            assert len(recs) == 372
            for c in CITIES:
                mine = [r for r in recs if r["key"] == c]
                want = [json.loads(b) for b in by_city[c]]
                assert [r["value"] for r in mine] == want, "%s: values differ" % c
                assert [g for g in got if json.loads(g)["name"] == c] == by_city[c], \
                    "%s: the value bytes are not those served" % c
                for r, w in zip(mine, want):
                    assert r["topic"] == "weather.raw", r["topic"]
                    assert r["ts"] == w["dt"] * 1000, (c, r["ts"], w["dt"])
                    assert r["part"] == shown(srv, c), r["part"]
                    assert r["off"] == w["dt"] * 1000, (c, r["off"])
            for c in CITIES:
                last = json.loads(by_city[c][-1])["dt"] * 1000
                wait_for(lambda: s.offsets().get("weather", {}).get(shown(srv, c)) == last,
                         TIMEOUT, "%s's offset at its last answer" % c)
            offs = s.offsets()["weather"]
            assert sorted(offs) == sorted(shown(srv, c) for c in CITIES), offs

            # The key went to the server, in the query, and nowhere else.
            reqs = srv.requests()
            assert reqs and all(query(r).get("appid") == [KEY] for r in reqs), \
                [r["path"] for r in reqs if query(r).get("appid") != [KEY]][:3]
            assert all(r["status"] in (200, 304) for r in reqs)
            assert reqs[0]["headers"].get("user-agent") == "spoke-http_source/0.1.0"
            api = Api(s)
            st = api.call("GET", "/connectors/weather/status")
            assert st.status == 200 and st.json["connector"]["state"] == "RUNNING", st
            cfg = api.call("GET", "/connectors/weather/config")
            assert cfg.status == 200 and cfg.json["api.key"] != KEY, cfg
            for resp in (st, cfg, api.call("GET", "/connectors?expand=status&expand=info"),
                         api.call("GET", "/metrics")):
                assert KEY.encode() not in resp.raw, "the api key leaked into %r" % resp
            want_metrics = {"records_emitted": 372, "responses": 372, "errors": 0, "urls": 12,
                            "urls_failing": 0}
            wait_for(lambda: all(plugin_metric(s, k) == v for k, v in want_metrics.items()),
                     TIMEOUT, "metrics %r (now %r)" % (
                         want_metrics, (s.connector("weather").get("metrics") or {}).get("plugin")))
        assert_no_key(s, out, rec)


def test_seed_pipeline_through_schema_mapper():
    """http_source -> schema_mapper(openweathermap_current) as in
    examples/weather-cassandra.yaml: every row carries the city, its time,
    the temperatures and the seed's indicator temperature - feels_like."""
    rows = load_rows()
    by_city = bodies_by_city(rows)
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, HttpFixture() as srv:
        out, mapped = os.path.join(tmp, "out.ndjson"), os.path.join(tmp, "rows.ndjson")
        for c in CITIES:
            srv.route(city_path(c), [Response(b) for b in by_city[c]])
        with start(pipeline(template(srv), out, mapped=mapped), tmp) as s:
            wait_lines(mapped, 372)
            got = lines(mapped)
            for c in CITIES:
                want = [r for r in rows if r["city"] == c]
                mine = [g for g in got if g["city"] == c]
                assert len(mine) == 31, (c, len(mine))
                for g, w in zip(mine, want):
                    assert g["temperature"] == w["temperature"] and \
                        g["feels_like"] == w["feels_like"], (g, w)
                    assert abs(g["feels_like_delta"] - (w["temperature"] - w["feels_like"])) \
                        < 1e-9, (g, w)
                    assert (g["lon"], g["lat"]) == (w["lon"], w["lat"]), (g, w)
                    t = datetime.datetime.fromtimestamp(epoch(w["date"]), datetime.timezone.utc)
                    assert g["dt"].startswith(t.strftime("%Y-%m-%dT%H:%M:%S")), (g["dt"], t)
            assert s.connector("mapper").get("state") == "RUNNING"


# ---------------------------------------------------------------------------
# failures

def failure_modes(good):
    """(name, response for Paris, words expected in the trace)."""
    big = b'{"name":"Paris","dt":1,"pad":"' + b" " * (3 << 20) + b'"}'
    return [
        ("HTTP 500", Response(b"boom", status=500), ["HTTP 500", "Internal Server Error"]),
        ("HTTP 404", Response(b'{"cod":"404","message":"city not found"}', status=404),
         ["HTTP 404", "q=Paris,FR&appid=***"]),
        ("wrong api key", None, ["HTTP 401", "appid=***"]),
        ("non-JSON", Response(b"<html><body>maintenance</body></html>",
                              content_type="text/html"), ["bad response from", "not valid JSON"]),
        ("empty body", Response(b""), ["not valid JSON", "empty"]),
        ("cut JSON", Response(good[:len(good) // 2]), ["not valid JSON"]),
        ("invalid UTF-8", Response(b'{"name":"Par\xffis","dt":1}'), ["invalid UTF-8"]),
        ("truncated transfer", Response(good, truncate_at=len(good) // 3),
         ["truncated body", "bytes received"]),
        ("no key field", Response(b'{"cod":200,"main":{"temp":3}}'),
         ["wrong shape", "record #0 has no 'name' (the key)"]),
        ("key of the wrong type", Response(b'{"name":{"fr":"Paris"},"dt":1}'),
         ["'name' (the key) is an object, expected a string"]),
        ("no timestamp", Response(b'{"name":"Paris"}'),
         ["record #0 has no 'dt' (timestamp.path)"]),
        ("timestamp of the wrong type", Response(b'{"name":"Paris","dt":"yesterday"}'),
         ["'dt' (timestamp.path) is a string, expected epoch seconds"]),
        ("timeout", Response(good, delay=3.0), ["timeout", "timed out"]),
        ("redirect loop", Response.redirect("/loop-a"), ["too many redirects", "max.redirects is 2"]),
        ("redirect to ftp", Response.redirect("ftp://127.0.0.1/x.json"),
         ["redirect from", "only http and https"]),
        ("oversized, announced", Response(stream=200 << 20, announce=True),
         ["over max.body.bytes (1048576)", "not downloaded"]),
        ("oversized, streamed", Response(stream=200 << 20),
         ["over max.body.bytes (1048576)", "transfer aborted"]),
        ("oversized once decoded", Response(big, gzip=True),
         ["over max.body.bytes (1048576)", "transfer aborted"]),
    ]


def variant(body, k):
    """A new answer for the same city: another dt."""
    v = json.loads(body)
    v["dt"] += 600 * (k + 1)
    return json.dumps(v).encode()


def test_every_failure_mode_retries_recovers_and_others_flow():
    """Paris misbehaves in every way while Lyon and Marseille keep
    answering: the host survives, the trace says why (URL shown with the key
    masked), nothing of a bad answer is emitted, Lyon and Marseille keep
    flowing, and the next good answer for Paris is emitted."""
    rows = load_rows()
    by_city = bodies_by_city(rows)
    cities = ["Paris", "Lyon", "Marseille"]
    good = by_city["Paris"][0]
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        for c in cities:
            srv.route(city_path(c), Response(by_city[c][0]))
        srv.route(PATH, UNAUTHORIZED)
        srv.route("/loop-a", Response.redirect("/loop-b"))
        srv.route("/loop-b", Response.redirect("/loop-a"))
        yaml = pipeline(template(srv), out, items=cities,
                        extra={"key": "name", "emit.unchanged": True, "request.timeout.ms": 800,
                               "max.body.bytes": 1 << 20, "max.redirects": 2})

        def count(city):
            return sum(1 for x in lines(out) if x.get("name") == city)

        with start(yaml, tmp) as s:
            wait_for(lambda: all(count(c) >= 2 for c in cities), TIMEOUT, "every city flowing")
            served = {by_city[c][0] for c in cities}
            for k, (name, resp, words) in enumerate(failure_modes(good)):
                if resp is None:
                    srv.remove(city_path("Paris"))  # falls through to the 401 route
                else:
                    srv.route(city_path("Paris"), resp)
                n = srv.count(city_path("Paris"))
                # Paris alone failing: on a stalled VM a healthy city's 800 ms
                # request can time out for a poll too, so wait for the state
                # rather than take the first trace.
                trace = wait_retrying(s, *words, "(1 of 3 URLs failing)")
                # Backoff 50..200 ms: a wait under a second is said in ms
                # (it read "next attempt in 0.1 s").
                assert re.search(r"next attempt in \d+ ms \(1 of 3 URLs failing\)", trace), trace
                assert KEY not in trace
                srv.wait_requests(city_path("Paris"), n + 2)  # failed at least twice over
                # The others keep flowing while Paris fails.
                others = {c: count(c) for c in ("Lyon", "Marseille")}
                wait_for(lambda: all(count(c) >= others[c] + 3 for c in others), TIMEOUT,
                         "%s: Lyon and Marseille flowing while Paris fails" % name)
                assert s.connector("weather")["retrying"], "%s: recovered by itself?" % name
                assert "poll failed" in s.log() and words[0] in s.log(), "%s: not logged" % name
                assert re.search(r"poll failed \(\d+ in a row\): .*; next attempt in \d+ ms",
                                 s.log()), "%s: the wait not in ms" % name
                if name.startswith("oversized") and "decoded" not in name:
                    sent = max(r["bytes_sent"] for r in srv.requests(city_path("Paris"))[n:])
                    assert sent < 64 << 20, "%s: %d bytes sent before the client gave up" % (
                        name, sent)
                # Recovery: a new answer for Paris is emitted and the status clears.
                fresh = variant(good, k)
                served.add(fresh)
                srv.route(city_path("Paris"), Response(fresh))
                wait_for(lambda: fresh in raw_lines(out), TIMEOUT,
                         "%s: the next good answer emitted" % name)
                wait_recovered(s)
                # Nothing but whole good answers was ever emitted.
                bad = [x for x in raw_lines(out) if x not in served]
                assert not bad, "%s: emitted %r" % (name, bad[:2])
            nmodes = len(failure_modes(good))
            wait_for(lambda: plugin_metric(s, "errors") >= 2 * nmodes, TIMEOUT, "errors counted")
            assert plugin_metric(s, "bytes_downloaded") < 200 << 20
        assert not s.alive()
        assert_no_key(s, out)


def test_retry_after_and_backoff_per_url():
    """A 429 with Retry-After: 2 delays Paris's next request by 2 s, while
    Lyon is polled every 100 ms meanwhile; then a failing Paris backs off
    exponentially with jitter, capped, and Lyon is not slowed down."""
    by_city = bodies_by_city(load_rows())
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        for c in ("Paris", "Lyon"):
            srv.route(city_path(c), Response(by_city[c][0]))
        yaml = pipeline(template(srv), out, items=["Paris", "Lyon"],
                        extra={"backoff.initial.ms": 200, "backoff.max.ms": 800})
        with start(yaml, tmp) as s:
            wait_lines(out, 2)
            n = srv.count(city_path("Paris"))
            srv.route(city_path("Paris"), [Response(b"slow down", status=429,
                                                    headers={"Retry-After": "2"}),
                                           Response(by_city["Paris"][1])])
            trace = wait_retrying(s, "HTTP 429", "Retry-After: 2", "appid=***")
            assert re.search(r"next attempt in 2\.[0-2] s", trace), trace
            wait_lines(out, 3)
            wait_recovered(s)
            reqs = srv.requests(city_path("Paris"))[n:]
            i = [r["status"] for r in reqs].index(429)
            gap = reqs[i + 1]["t"] - reqs[i]["t"]
            assert 2.0 <= gap < 3.0, "next request %.3fs after the 429 (Retry-After: 2)" % gap
            lyon = [r for r in srv.requests(city_path("Lyon"))
                    if reqs[i]["t"] < r["t"] < reqs[i + 1]["t"]]
            assert len(lyon) >= 10, "Lyon polled %d times during Paris's Retry-After" % len(lyon)

            srv.route(city_path("Paris"), Response(b"", status=503))
            m = srv.count(city_path("Paris"))
            reqs = srv.wait_requests(city_path("Paris"), m + 8)[m:m + 8]
            gaps = [b["t"] - a["t"] for a, b in zip(reqs, reqs[1:])]
            caps = [0.2, 0.4, 0.8, 0.8, 0.8, 0.8, 0.8]
            for j, (g, d) in enumerate(zip(gaps, caps)):
                assert d / 2 - 0.02 <= g <= d + 0.25, \
                    "retry %d after %.3fs, want %.2f..%.2f (gaps %r)" % (j + 1, g, d / 2, d, gaps)
            assert len(set(round(g, 3) for g in gaps[2:])) > 1, "no jitter: %r" % gaps
            lyon = [r for r in srv.requests(city_path("Lyon"))
                    if reqs[0]["t"] < r["t"] < reqs[-1]["t"]]
            span = reqs[-1]["t"] - reqs[0]["t"]
            assert len(lyon) >= span / 0.1 * 0.6, "Lyon slowed down: %d polls in %.1fs" % (
                len(lyon), span)


def test_dns_failure_retries():
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp:
        out = os.path.join(tmp, "out.ndjson")
        yaml = pipeline("http://no-such-host.invalid/w?q={item}&appid={api.key}", out,
                        items=["Paris"], extra={"connect.timeout.ms": 3000})
        with start(yaml, tmp) as s:
            trace = wait_retrying(s, "no-such-host.invalid", "appid=***")
            assert "DNS lookup failed" in trace or "Resolving timed out" in trace, trace
            wait_for(lambda: plugin_metric(s, "errors") >= 2, TIMEOUT, "retried")
            assert nlines(out) == 0
        assert_no_key(s)


# ---------------------------------------------------------------------------
# formats, paths, keys

def test_ndjson_lines_and_a_bad_line():
    """format ndjson: every line of an answer is a record (its exact bytes),
    blank lines skipped; one bad line refuses the whole answer."""
    rows = load_rows()
    polls = [rows[i:i + 12] for i in range(0, 36, 12)]
    text = [b"\n".join(json.dumps(r).encode() for r in p) for p in polls]
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, HttpFixture() as srv:
        out, rec = os.path.join(tmp, "out.ndjson"), os.path.join(tmp, "rec.ndjson")
        srv.route("/batch.ndjson", Response(text[0] + b"\n\n", content_type="application/x-ndjson"))
        yaml = pipeline(srv.url("/batch.ndjson"), out, items=[], rec=rec,
                        extra={"format": "ndjson", "key": "city", "timestamp.path": None,
                               "api.key": None, "headers": ["Accept: application/x-ndjson"]})
        with start(yaml, tmp, rec=True) as s:
            wait_lines(out, 12)
            assert raw_lines(out) == text[0].split(b"\n")
            wait_for(lambda: nlines(rec) >= 12, TIMEOUT, "recorded")
            assert [r["key"] for r in lines(rec)] == CITIES
            assert srv.requests()[0]["headers"].get("accept") == "application/x-ndjson"
            # One bad line in the middle: nothing of that answer.
            lines2 = text[1].split(b"\n")
            lines2[5] = lines2[5][:-7]
            srv.route("/batch.ndjson", Response(b"\n".join(lines2)))
            wait_retrying(s, "line 6: not valid JSON")
            srv.wait_requests("/batch.ndjson", srv.count("/batch.ndjson") + 2)
            assert nlines(out) == 12
            srv.route("/batch.ndjson", Response(b"\r\n".join(text[2].split(b"\n")) + b"\r\n"))
            wait_lines(out, 24)
            assert raw_lines(out)[12:] == text[2].split(b"\n")
            wait_recovered(s)


def test_records_path_elements_become_records():
    """records.path: the elements of an array inside the answer (like
    OpenWeatherMap's group endpoint) are the records, with their key and
    timestamp paths; a missing array or another type is a wrong shape."""
    rows = load_rows()
    group = {"cnt": 12, "list": [owm(r) for r in rows[:12]]}
    group2 = {"cnt": 12, "list": [owm(r) for r in rows[12:24]]}
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, HttpFixture() as srv:
        out, rec = os.path.join(tmp, "out.ndjson"), os.path.join(tmp, "rec.ndjson")
        srv.route("/group", Response(json.dumps(group)))
        yaml = pipeline(srv.url("/group?id=all&appid={api.key}"), out, items=[], rec=rec,
                        extra={"records.path": "list", "key": "name",
                               "timestamp.path": ".dt"})
        with start(yaml, tmp, rec=True) as s:
            wait_lines(out, 12)
            assert lines(out) == group["list"]
            wait_for(lambda: nlines(rec) >= 12, TIMEOUT, "recorded")
            recs = lines(rec)
            assert [r["key"] for r in recs] == CITIES
            assert [r["ts"] for r in recs] == [g["dt"] * 1000 for g in group["list"]]
            # The last record of an answer carries its offset (the largest dt).
            part = srv.url("/group?id=all&appid=***")
            assert all(r["part"] == part for r in recs)
            assert [r["off"] for r in recs] == [0] * 11 + [max(g["dt"] for g in group["list"]) * 1000]
            for body, words in [({"cnt": 0}, ["no 'list' (records.path)"]),
                                ({"list": {"a": 1}}, ["'list' (records.path) is an object, "
                                                      "expected an array"]),
                                ({"list": [owm(rows[0]), {"dt": 5}]},
                                 ["record #1 has no 'name' (the key)"])]:
                srv.route("/group", Response(json.dumps(body)))
                wait_retrying(s, *words)
            assert nlines(out) == 12, "part of a refused answer was emitted"
            srv.route("/group", Response(json.dumps(group2)))
            wait_lines(out, 24)
            assert lines(out)[12:] == group2["list"]
            wait_recovered(s)


def test_headers_carry_the_key_and_url_as_is():
    """No items: the url is polled as it is, with no key; headers carry the
    api key instead of the query."""
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, HttpFixture() as srv:
        out, rec = os.path.join(tmp, "out.ndjson"), os.path.join(tmp, "rec.ndjson")
        srv.route("/current.json", Response(b'{"temp": 9.91}'))
        yaml = pipeline(srv.url("/current.json"), out, items=[], rec=rec,
                        extra={"headers": ["X-Api-Key: {api.key}", "X-Other: a {b} c"],
                               "timestamp.path": None})
        with start(yaml, tmp, rec=True) as s:
            wait_lines(out, 1)
            wait_for(lambda: nlines(rec) >= 1, TIMEOUT, "recorded")
            r = lines(rec)[0]
            assert r["key"] is None and r["part"] == srv.url("/current.json"), r
            h = srv.requests("/current.json")[0]["headers"]
            assert h.get("x-api-key") == KEY and h.get("x-other") == "a {b} c", h
        assert_no_key(s, out, rec)


# ---------------------------------------------------------------------------
# unchanged answers, conditional requests, restarts

def test_emit_unchanged_and_conditional_requests():
    by_city = bodies_by_city(load_rows())
    b0, b1 = by_city["Nice"][0], by_city["Nice"][1]
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route(city_path("Nice"), Response(b0, etag='"v0"'))
        with start(pipeline(template(srv), out, items=["Nice"]), tmp) as s:
            wait_lines(out, 1)
            reqs = srv.wait_requests(city_path("Nice"), 4)
            assert "if-none-match" not in reqs[0]["headers"]
            assert all(r["headers"].get("if-none-match") == '"v0"' and r["status"] == 304
                       for r in reqs[1:]), [(r["headers"], r["status"]) for r in reqs]
            wait_for(lambda: plugin_metric(s, "not_modified") >= 3, TIMEOUT, "304s counted")
            # Same bytes without validators: compared, not emitted.
            srv.route(city_path("Nice"), Response(b0))
            srv.wait_requests(city_path("Nice"), srv.count(city_path("Nice")) + 3)
            wait_for(lambda: plugin_metric(s, "unchanged") >= 2, TIMEOUT, "unchanged counted")
            assert nlines(out) == 1
            srv.route(city_path("Nice"), Response(b1))
            wait_lines(out, 2)
            assert raw_lines(out) == [b0, b1]

    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route(city_path("Nice"), Response(b0, etag='"v0"'))
        yaml = pipeline(template(srv), out, items=["Nice"], extra={"emit.unchanged": True})
        with start(yaml, tmp) as s:
            wait_for(lambda: nlines(out) >= 5, TIMEOUT, "every answer emitted")
            reqs = srv.requests(city_path("Nice"))
            assert all("if-none-match" not in r["headers"] for r in reqs), \
                "emit.unchanged: true sent validators"
            assert set(raw_lines(out)) == {b0}


def test_restart_does_not_emit_the_delivered_answer_again():
    by_city = bodies_by_city(load_rows())
    b0, b1 = by_city["Brest"][0], by_city["Brest"][1]
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, HttpFixture() as srv:
        out = os.path.join(tmp, "out.ndjson")
        srv.route(city_path("Brest"), Response(b0))
        yaml = pipeline(template(srv), out, items=["Brest"])
        dt0 = json.loads(b0)["dt"] * 1000
        with start(yaml, tmp) as s:
            wait_lines(out, 1)
            wait_for(lambda: s.offsets().get("weather", {}).get(shown(srv, "Brest")) == dt0,
                     TIMEOUT, "offset committed")
        with start(yaml, tmp) as s:
            n = srv.count(city_path("Brest"))
            srv.wait_requests(city_path("Brest"), n + 3)
            wait_for(lambda: plugin_metric(s, "unchanged") >= 3, TIMEOUT, "unchanged polls")
            assert nlines(out) == 1, "the delivered answer was emitted again after a restart"
            assert "resuming: %s" % shown(srv, "Brest") in s.log()
            srv.route(city_path("Brest"), Response(b1))
            wait_lines(out, 2)
            assert raw_lines(out) == [b0, b1]


# ---------------------------------------------------------------------------
# mode stream: an endless response, like stream.meetup.com/2/rsvps

MEETUP = os.path.join(spoketest.SHARED_DATA, "meetup", "meetup_rsvps.ndjson")
STREAM_PATH = "/2/rsvps"


def meetup_lines():
    """The 1,000 recorded RSVP messages, as the stream sent them (bytes,
    without their newlines)."""
    if not os.path.exists(MEETUP):
        raise Skip("the recorded Meetup RSVP stream is not in %s: these tests stream it over "
                   "HTTP" % MEETUP)
    with open(MEETUP, "rb") as f:
        data = f.read()
    assert data.endswith(b"\n")
    lines = data[:-1].split(b"\n")
    assert len(lines) == 1000 and all(x.strip() for x in lines)
    return lines


def feed(lines, keepalive_every=0):
    """lines as one stream body, each ending with a newline; with
    keepalive_every, a keep-alive (an empty line, "\\r\\n" or "\\n") after
    every that many lines. Returns (bytes, how many keep-alives)."""
    out, k = [], 0
    for i, x in enumerate(lines):
        out.append(x + b"\n")
        if keepalive_every and (i + 1) % keepalive_every == 0:
            out.append(b"\r\n" if k % 2 else b"\n")
            k += 1
    return b"".join(out), k


def pieces(data, sizes=(1, 7, 300, 1500, 4096, 13, 2000, 64)):
    """data cut at irregular places, so lines straddle chunks (a one-byte
    chunk, a chunk ending on a '\\r' of a keep-alive...)."""
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out.append(data[i:i + n])
        i += n
        k += 1
    return out


class StreamServer:
    """A local HTTP/1.1 server for mode stream: connection i (0, 1, ...)
    follows plans[i] (the last plan for every later one), step by step:

    ("head",)            200, Transfer-Encoding: chunked, no Content-Length
    ("chunks", [bytes])  one chunk each
    ("wait", event)      nothing sent until the test sets event
    ("keepalive", n, s)  n keep-alive newlines, one every s seconds (the
                         pace of a server that has nothing to say)
    ("end",)             the last chunk: the response ends properly
    ("cut",)             the connection closed in the middle of the body
    ("hold",)            silent until the client goes away
    ("status", code, headers)  an error answer instead of the stream

    Every connection is recorded: when it came (monotonic), its request
    headers, when its last byte was sent, when the client went away, and
    whether its plan ran to the end."""

    REASONS = {429: "Too Many Requests", 503: "Service Unavailable"}

    def __init__(self, plans):
        self.plans = plans
        self.conns = []
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._socks = []
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", 0))
        self._lsock.listen(16)
        self._lsock.settimeout(0.05)
        self.port = self._lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="streamserver").start()

    def url(self, path=STREAM_PATH):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        self._closing.set()
        self._lsock.close()
        with self._cond:
            socks = list(self._socks)
        for c in socks:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def connections(self):
        with self._cond:
            return [dict(c) for c in self.conns]

    def wait_connections(self, n, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.conns) < n:
                left = deadline - time.monotonic()
                assert left > 0, "timed out waiting for connection #%d (got %d)" % (
                    n, len(self.conns))
                self._cond.wait(min(left, 0.1))
            return [dict(c) for c in self.conns]

    def wait_gone(self, i, timeout=TIMEOUT):
        """Until the client closed connection i; returns its record."""
        return wait_for(lambda: self.connections()[i]["client_gone"] is not None and
                        self.connections()[i], timeout, "the client to leave connection %d" % i)

    def _accept(self):
        while not self._closing.is_set():
            try:
                c, _ = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._cond:
                rec = {"i": len(self.conns), "t": time.monotonic(), "headers": {}, "path": None,
                       "last_sent": None, "client_gone": None, "finished": False, "sent": 0}
                plan = self.plans[min(rec["i"], len(self.plans) - 1)]
                self.conns.append(rec)
                self._socks.append(c)
                self._cond.notify_all()
            threading.Thread(target=self._serve, args=(c, rec, plan), daemon=True).start()

    def _send(self, c, rec, data):
        c.sendall(data)
        with self._cond:
            rec["last_sent"] = time.monotonic()
            rec["sent"] += len(data)

    def _serve(self, c, rec, plan):
        try:
            data = b""
            c.settimeout(30)
            while b"\r\n\r\n" not in data:
                got = c.recv(65536)
                if not got:
                    return
                data += got
            head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            with self._cond:
                rec["path"] = head[0].split(" ")[1]
                rec["headers"] = {k.strip().lower(): v.strip() for k, v in
                                  (x.split(":", 1) for x in head[1:] if ":" in x)}
            for step in plan:
                if self._closing.is_set():
                    return
                kind = step[0]
                if kind == "head":
                    self._send(c, rec, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                elif kind == "chunks":
                    for part in step[1]:
                        self._send(c, rec, b"%x\r\n%s\r\n" % (len(part), part))
                elif kind == "paced":  # each part after step[2] seconds
                    for part in step[1]:
                        if self._closing.wait(step[2]):
                            return
                        self._send(c, rec, b"%x\r\n%s\r\n" % (len(part), part))
                elif kind == "wait":
                    while not step[1].wait(0.05):
                        if self._closing.is_set():
                            return
                elif kind == "keepalive":
                    for _ in range(step[1]):
                        if self._closing.wait(step[2]):
                            return
                        self._send(c, rec, b"1\r\n\n\r\n")
                elif kind == "end":
                    self._send(c, rec, b"0\r\n\r\n")
                elif kind == "cut":
                    break
                elif kind == "hold":
                    c.settimeout(0.05)
                    while not self._closing.is_set():
                        try:
                            if not c.recv(4096):
                                break
                        except socket.timeout:
                            continue
                elif kind == "status":
                    body = b'{"error":"try later"}'
                    extra = "".join("%s: %s\r\n" % kv for kv in step[2].items())
                    self._send(c, rec, ("HTTP/1.1 %d %s\r\n%sContent-Type: application/json\r\n"
                                        "Content-Length: %d\r\nConnection: close\r\n\r\n" % (
                                            step[1], self.REASONS.get(step[1], "Error"), extra,
                                            len(body))).encode() + body)
                else:
                    raise AssertionError("unknown step %r" % (step,))
            with self._cond:
                rec["finished"] = True
        except OSError:
            pass
        finally:
            with self._cond:
                if rec["client_gone"] is None:
                    rec["client_gone"] = time.monotonic()
                self._cond.notify_all()
            try:
                c.close()
            except OSError:
                pass


def stream_pipeline(url, out, extra=None, rec=None, dlq=None):
    """http_source (mode stream) -> meetup.raw -> file_sink(out)
    [+ recorder(rec)] [+ file_sink(dlq) reading the dead-letter topic
    meetup.dlq, with errors.tolerance all]."""
    keys = {"url": url, "mode": "stream", "key": "rsvp_id", "timestamp.path": "mtime",
            "timestamp.unit": "ms", "backoff.initial.ms": 100, "backoff.max.ms": 400,
            "stream.idle.timeout.ms": 30000}
    if dlq:
        keys.update({"errors.tolerance": "all",
                     "errors.deadletterqueue.topic.name": "meetup.dlq"})
    return source_and_sinks("rsvps", "meetup.raw", keys, extra,
                            [("out", "meetup.raw", out), ("dlq", "meetup.dlq", dlq)], rec)


def stream_metric(s, name):
    return metric(s, "rsvps", name) or 0


def wait_out(path, want, what):
    """Until the file_sink at path holds exactly the lines want (bytes), in
    order; fails at once on a line that is not the next one expected."""
    def check():
        got = raw_lines(path)
        assert got == want[:len(got)], "%s: line %d differs (or is extra)" % (
            what, next(i for i, (g, w) in enumerate(zip(got + [None], want + [None]))
                       if g != w))
        return len(got) == len(want)
    wait_for(check, TIMEOUT, lambda: "%s: %d of %d lines out" % (what, len(raw_lines(path)),
                                                                  len(want)))


def test_stream_meetup_lines_go_out_as_they_arrive():
    """The recorded Meetup stream, served as one endless chunked response
    cut at irregular places (lines straddling chunks, keep-alive newlines
    between them) that pauses after 400 lines: those 400 are out while the
    response is still open and paused; once it goes on, all 1,000 arrive
    exactly once, byte-identical and in order, keyed by rsvp_id, at their
    mtime, on one connection. A restart cannot replay the stream: it says
    when the last delivered line arrived, reconnects and emits what the
    server sends from then on, at offsets that keep growing."""
    lines = meetup_lines()
    first, k1 = feed(lines[:400], keepalive_every=37)
    rest, k2 = feed(lines[400:], keepalive_every=41)
    go = threading.Event()
    plans = [[("head",), ("chunks", pieces(first)), ("wait", go), ("chunks", pieces(rest)),
              ("hold",)],
             [("head",), ("chunks", [lines[7] + b"\n"]), ("hold",)]]
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, StreamServer(plans) as srv:
        out, rec = os.path.join(tmp, "out.ndjson"), os.path.join(tmp, "rec.ndjson")
        wall0 = time.time()
        with start(stream_pipeline(srv.url(), out, rec=rec), tmp, rec=True) as s:
            wait_out(out, lines[:400], "before the pause")
            # Out while the response is open and the server waits: streamed,
            # not read at the end of the response.
            c = srv.connections()
            assert len(c) == 1 and c[0]["client_gone"] is None and not c[0]["finished"], c
            assert not go.is_set()
            go.set()
            wait_out(out, lines, "the whole recording")
            want = {"lines": 1000, "records_emitted": 1000, "blank_lines": k1 + k2,
                    "invalid_lines": 0, "partial_lines": 0, "reconnects": 0, "errors": 0,
                    "urls_failing": 0}
            wait_for(lambda: all(stream_metric(s, k) == v for k, v in want.items()), TIMEOUT,
                     lambda: "metrics %r (now %r)" % (want, s.connector("rsvps").get("metrics")))
            assert stream_metric(s, "bytes_downloaded") >= len(first) + len(rest)
            wait_for(lambda: nlines(rec) >= 1000, TIMEOUT, "recorded")
            recs = lines_of(rec)
            vals = [json.loads(x) for x in lines]
            assert [r["key"] for r in recs] == [str(v["rsvp_id"]) for v in vals]
            assert [r["ts"] for r in recs] == [v["mtime"] for v in vals]
            assert all(r["part"] == srv.url() for r in recs), recs[0]["part"]
            offs = [r["off"] for r in recs]
            assert offs == sorted(offs) and wall0 * 1000 - 5 <= offs[0] <= time.time() * 1000, \
                "offsets are arrival times, never decreasing: %r" % offs[:3]
            wait_for(lambda: s.offsets().get("rsvps", {}).get(srv.url()) == offs[-1], TIMEOUT,
                     "the offset of the last line committed")
            assert s.connector("rsvps").get("state") == "RUNNING"
            assert len(srv.connections()) == 1, "reconnected: %r" % srv.connections()
        assert raw_lines(out) == lines, "lines went out after the last one"
        # A restart: what the server sends now, nothing of the past.
        when = datetime.datetime.fromtimestamp(offs[-1] / 1000, datetime.timezone.utc)
        with start(stream_pipeline(srv.url(), out, rec=rec), tmp, rec=True) as s:
            wait_out(out, lines + [lines[7]], "after a restart")
            assert "%s: the last line delivered before this start arrived at %s.%03dZ; a live "\
                "stream cannot be replayed" % (srv.url(), when.strftime("%Y-%m-%dT%H:%M:%S"),
                                               offs[-1] % 1000) in s.log(), s.log()[-2000:]
            wait_for(lambda: nlines(rec) >= 1001, TIMEOUT, "recorded")
            assert lines_of(rec)[-1]["off"] >= offs[-1]
            assert len(srv.connections()) == 2


def test_stream_latency_counts_from_arrival():
    """Lines 300 ms apart: each one's latency (the sink's latency_*_us)
    counts from when it arrived (host API poll_data_at), not from the start
    of the poll() that waited for it in a slice of up to 200 ms, where it
    would hold that wait (about 100 ms a line at this pace)."""
    lines = meetup_lines()[:9]
    plans = [[("head",), ("paced", [x + b"\n" for x in lines], 0.3), ("hold",)]]
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, StreamServer(plans) as srv:
        out = os.path.join(tmp, "out.ndjson")
        with start(stream_pipeline(srv.url(), out), tmp) as s:
            wait_out(out, lines, "paced lines")

            def latency(q):
                return (s.connector("out").get("metrics") or {}).get("latency_%s_us" % q) or 0
            wait_for(lambda: latency("max") > 0, TIMEOUT, "the sink's latency in status.json")
            assert latency("p50") < 40000, "p50 %d us, max %d us" % (latency("p50"),
                                                                  latency("max"))


def lines_of(path):
    return [json.loads(x) for x in spoketest.complete_lines(path)]


def test_stream_cut_mid_line_reconnects_and_drops_the_partial_line():
    """The server closes the connection in the middle of line 51, then
    accepts the reconnection and sends from that line on, then ends the
    response properly: the partial line is reported (not emitted), the
    stream resumes, every line goes out once; the status says why it is
    reconnecting each time."""
    lines = meetup_lines()[:100]
    body1 = b"".join(x + b"\n" for x in lines[:50]) + lines[50][:len(lines[50]) // 2]
    body2 = b"".join(x + b"\n" for x in lines[50:])
    plans = [[("head",), ("chunks", pieces(body1)), ("cut",)],
             [("head",), ("chunks", pieces(body2)), ("end",)],
             [("head",), ("hold",)]]
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, StreamServer(plans) as srv:
        out = os.path.join(tmp, "out.ndjson")
        # Reconnect waits of 0.5 to 1 s, for the status to be seen saying so.
        yaml = stream_pipeline(srv.url(), out, extra={"backoff.initial.ms": 1000,
                                                      "backoff.max.ms": 1000})
        with start(yaml, tmp) as s:
            trace = wait_retrying(s, "the stream dropped after 50 lines", "reconnecting in",
                                  conn="rsvps")
            assert "transfer closed" in trace or "truncated" in trace, trace
            wait_out(out, lines, "both connections")
            trace = wait_retrying(s, "the server ended the stream of %s after 50 lines"
                                  % srv.url(), "reconnecting in", conn="rsvps")
            srv.wait_connections(3)
            wait_recovered(s, conn="rsvps")
            log = s.log()
            assert re.search(r"%s: the response ended in the middle of line 51 \(%d bytes of it "
                             r"received\): dropped" % (re.escape(srv.url()),
                                                       len(lines[50]) // 2), log), log[-3000:]
            want = {"lines": 100, "records_emitted": 100, "partial_lines": 1, "reconnects": 2,
                    "invalid_lines": 0, "errors": 0}
            wait_for(lambda: all(stream_metric(s, k) == v for k, v in want.items()), TIMEOUT,
                     lambda: "metrics %r (now %r)" % (want, s.connector("rsvps").get("metrics")))
            assert s.connector("rsvps").get("state") == "RUNNING"
        assert raw_lines(out) == lines


def test_stream_silent_server_idle_timeout_reconnects():
    """A server that stops sending anything (not even keep-alives) is given
    up after stream.idle.timeout.ms and reconnected; keep-alive newlines
    alone keep a connection that sends no data open past that time."""
    lines = meetup_lines()[:10]
    idle = 1.0
    plans = [[("head",), ("chunks", [b"".join(x + b"\n" for x in lines[:5])]), ("hold",)],
             # Keep-alives for 2.4 s (2.4 idle timeouts), then data.
             [("head",), ("keepalive", 12, idle / 5),
              ("chunks", [b"".join(x + b"\n" for x in lines[5:])]), ("hold",)],
             [("head",), ("hold",)]]
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, StreamServer(plans) as srv:
        out = os.path.join(tmp, "out.ndjson")
        yaml = stream_pipeline(srv.url(), out, extra={"stream.idle.timeout.ms": int(idle * 1000),
                                                      "backoff.initial.ms": 50,
                                                      "backoff.max.ms": 200})
        with start(yaml, tmp) as s:
            wait_out(out, lines[:5], "the first connection")
            trace = wait_retrying(s, "no data from %s for 1.0 s (stream.idle.timeout.ms)"
                                  % srv.url(), conn="rsvps")
            c = srv.wait_gone(0)
            silent = c["client_gone"] - c["last_sent"]
            assert idle - 0.05 <= silent < idle + 2.0, "gave up after %.2f s of silence" % silent
            wait_out(out, lines, "after the keep-alives")
            c1 = srv.connections()[1]
            assert c1["client_gone"] is None or c1["client_gone"] >= c1["last_sent"], c1
            # The second connection sent its lines after 2.4 s of keep-alives
            # only: it was not given up meanwhile.
            assert c1["last_sent"] - c1["t"] >= 2.4 * idle - 0.1, c1
            wait_for(lambda: stream_metric(s, "idle_timeouts") >= 2 and
                     stream_metric(s, "blank_lines") == 12, TIMEOUT,
                     lambda: "two idle timeouts, 12 keep-alives (%r)" % (
                         s.connector("rsvps").get("metrics")))
            assert "no data from" in s.log() and "reconnecting in" in s.log()
            assert stream_metric(s, "errors") == 0 and stream_metric(s, "partial_lines") == 0
        assert raw_lines(out) == lines


def bad_stream(lines, limit):
    """lines[0..40) with three bad lines among them: not JSON (line 11), a
    line over limit bytes (line 22, valid JSON), invalid UTF-8 (line 33).
    Returns (body, the bad lines)."""
    broken = b'{"rsvp_id": 1, "response": "yes", "mem'
    long = b'{"rsvp_id": 2, "pad": "' + b"x" * (limit + 500) + b'"}'
    bad_utf8 = b'{"rsvp_id": 3, "response": "y\xffs"}'
    seq = lines[:10] + [broken] + lines[10:20] + [long] + lines[20:30] + [bad_utf8] + lines[30:40]
    return b"".join(x + b"\r\n" for x in seq), [broken, long, bad_utf8]


def test_stream_bad_lines_take_the_error_path_and_the_stream_goes_on():
    """A line that is not JSON, one over max.line.bytes and one with
    invalid UTF-8 go to the dead-letter topic (errors.tolerance all) with
    their line numbers in the log, while every good line around them goes
    out, in order, on the same connection. With errors.tolerance none the
    first bad line fails the connector, the lines before it delivered."""
    lines = meetup_lines()[:40]
    limit = 4096
    body, bad = bad_stream(lines, limit)
    plans = [[("head",), ("chunks", pieces(body)), ("hold",)]]
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, StreamServer(plans) as srv:
        out, dlq = os.path.join(tmp, "out.ndjson"), os.path.join(tmp, "dlq.ndjson")
        yaml = stream_pipeline(srv.url(), out, dlq=dlq, extra={"max.line.bytes": limit})
        with start(yaml, tmp) as s:
            wait_out(out, lines, "the good lines")
            wait_for(lambda: len(spoketest.read_bytes(dlq).split(b"\n")) > 3, TIMEOUT,
                     "three dead letters")
            assert spoketest.read_bytes(dlq) == b"".join(
                x + b"\n" for x in (bad[0], bad[1][:limit], bad[2])), spoketest.read_bytes(dlq)
            want = {"lines": 43, "invalid_lines": 3, "records_emitted": 40, "partial_lines": 0,
                    "reconnects": 0}
            wait_for(lambda: all(stream_metric(s, k) == v for k, v in want.items()), TIMEOUT,
                     lambda: "metrics %r (now %r)" % (want, s.connector("rsvps").get("metrics")))
            log = s.log()
            url = re.escape(srv.url())
            for words in (url + r", line 11: not valid JSON",
                          url + r", line 22: longer than max.line.bytes \(4096\)",
                          url + r", line 33: not valid JSON: .*UTF-8"):
                assert re.search(words, log), "%r not in the log:\n%s" % (words, log[-3000:])
            c = s.connector("rsvps")
            assert c.get("state") == "RUNNING" and len(srv.connections()) == 1, c

    plans = [[("head",), ("chunks", pieces(body)), ("hold",)]]
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, StreamServer(plans) as srv:
        out = os.path.join(tmp, "out.ndjson")
        with start(stream_pipeline(srv.url(), out), tmp) as s:
            s.wait_state("rsvps", "FAILED")
            trace = s.connector("rsvps").get("trace") or ""
            assert "line 11: not valid JSON" in trace and srv.url() in trace, trace
            wait_out(out, lines[:10], "the lines before the bad one")


def test_stream_503_retry_after_on_connect():
    """A 503 with Retry-After: 1 when connecting: the status says so, the
    next attempt comes 1 s later (the backoff is 50..200 ms), then the
    stream flows and the status clears."""
    lines = meetup_lines()[:10]
    plans = [[("status", 503, {"Retry-After": "1"})],
             [("head",), ("chunks", [b"".join(x + b"\n" for x in lines)]), ("hold",)]]
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, StreamServer(plans) as srv:
        out = os.path.join(tmp, "out.ndjson")
        yaml = stream_pipeline(srv.url(), out, extra={"backoff.initial.ms": 50,
                                                      "backoff.max.ms": 200})
        with start(yaml, tmp) as s:
            trace = wait_retrying(s, "HTTP 503 Service Unavailable from %s (Retry-After: 1)"
                                  % srv.url(), conn="rsvps")
            assert re.search(r"reconnecting( in 1\.0 s)?$", trace), trace
            c = srv.wait_connections(2)
            gap = c[1]["t"] - c[0]["t"]
            assert 1.0 <= gap < 2.0, "reconnected %.3f s after the 503 (Retry-After: 1)" % gap
            wait_out(out, lines, "after the 503")
            wait_recovered(s, conn="rsvps")
            assert stream_metric(s, "errors") == 1 and stream_metric(s, "reconnects") == 1


def test_stream_stops_promptly_while_the_server_is_silent():
    """A connector whose server sends nothing at all stops (REST stop, then
    a SIGTERM of the host after a resume) well within its idle timeout: the
    source waits in short slices, never for the server."""
    idle_ms = 30000
    bound = idle_ms / 1000 / 6  # 5 s: generous, a sixth of the idle timeout
    plans = [[("head",), ("hold",)]]
    with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, StreamServer(plans) as srv:
        out = os.path.join(tmp, "out.ndjson")
        yaml = stream_pipeline(srv.url(), out, extra={"stream.idle.timeout.ms": idle_ms,
                                                      "connect.timeout.ms": idle_ms,
                                                      "request.timeout.ms": idle_ms})
        with start(yaml, tmp) as s:
            srv.wait_connections(1)
            wait_for(lambda: "%s: streaming" % srv.url() in s.log(), TIMEOUT, "connected")
            api = Api(s)
            t0 = time.monotonic()
            r = api.call("PUT", "/connectors/rsvps/stop")
            assert r.status == 204, r
            s.wait_state("rsvps", "STOPPED", timeout=bound)
            took = time.monotonic() - t0
            assert took < bound, "stopping took %.2f s" % took
            srv.wait_gone(0, timeout=bound)
            r = api.call("PUT", "/connectors/rsvps/resume")
            assert r.status == 202, r
            srv.wait_connections(2)
            wait_for(lambda: s.log().count("%s: streaming" % srv.url()) >= 2, TIMEOUT,
                     "connected again")
            t0 = time.monotonic()
            assert s.stop(timeout=60) == 0
            took = time.monotonic() - t0
            assert took < bound, "the host took %.2f s to stop" % took
        assert nlines(out) == 0


def test_stream_block_of_the_meetup_example_runs_its_pipeline():
    """examples/meetup-rsvps.yaml's commented-out live block, put in place
    of the recording's replay (its url pointed at the local stream), runs
    the example's pipeline: all 1,000 streamed RSVPs reach the aggregator."""
    lines = meetup_lines()
    text = open(os.path.join(SOURCE_DIR, "examples", "meetup-rsvps.yaml")).read()
    body = text[text.index("\nconnectors:") + 1:].split("\n")
    first = body.index("  - name: rsvps")
    alt = body.index("  # - name: rsvps")
    block = []
    for x in body[alt:]:
        if not x.startswith("  # "):
            break
        block.append("  " + x[4:])
    end = next(i for i in range(first + 1, len(body)) if body[i].startswith("  #") or
               body[i].startswith("  - "))
    with StreamServer([[("head",), ("chunks", pieces(feed(lines, 50)[0])), ("hold",)]]) as srv:
        yaml = "\n".join(body[:first] + block + body[end:])
        assert "url: https://stream.meetup.com/2/rsvps" in yaml and "mode: stream" in yaml, yaml
        yaml = yaml.replace("url: https://stream.meetup.com/2/rsvps", "url: " + srv.url())
        yaml = yaml.replace("schema.file: schemas/", "schema.file: %s/schemas/" % SOURCE_DIR)
        with tempfile.TemporaryDirectory(prefix="spoke-http-") as tmp, start(yaml, tmp) as s:
            s.wait_for(lambda: (s.connector("per-country").get("metrics") or {}).get(
                "records_in") == 1000, TIMEOUT, "1,000 RSVPs at the aggregator")
            assert stream_metric(s, "lines") == 1000 and stream_metric(s, "invalid_lines") == 0
            for name in ("rsvps", "typed", "per-country", "console"):
                assert s.connector(name).get("state") == "RUNNING", (name, s.connector(name))


if __name__ == "__main__":
    spoketest.main(globals())
