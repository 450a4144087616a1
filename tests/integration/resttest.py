"""resttest - real HTTP against a running spoke for the it_rest* tests.

Api(sp) talks to the REST listener of a spoketest.Spoke with Python's
http.client; every answer is a Resp with status, headers, raw bytes and the
parsed JSON (None when the body is empty or not JSON). Nothing here sleeps:
waits go through spoketest.wait_for.
"""
import http.client
import json
import socket

from spoketest import Spoke, wait_for


class Resp:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.json = json.loads(raw) if raw else None
        except ValueError:
            self.json = None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return "<%d %s>" % (self.status, self.raw[:300])


class Api:
    """HTTP calls to one spoke. token: sent as a bearer token when set."""

    def __init__(self, sp, token=None):
        addr = sp.worker["listeners"].split("://", 1)[1].rstrip("/")
        host, port = addr.rsplit(":", 1)
        self.host = host.strip("[]")
        self.port = int(port)
        self.hostport = addr
        self.token = token

    def call(self, method, path, body=None, raw=None, headers=None, ctype="application/json",
             token=None, timeout=30):
        """body: a Python value sent as JSON; raw: bytes sent as they are.
        headers: extra headers (a value of None removes a default one)."""
        data = None
        h = {}
        if body is not None:
            data = json.dumps(body).encode()
        elif raw is not None:
            data = raw if isinstance(raw, bytes) else raw.encode()
        if data is not None and ctype:
            h["Content-Type"] = ctype
        tok = token if token is not None else self.token
        if tok:
            h["Authorization"] = "Bearer " + tok
        for k, v in (headers or {}).items():
            h[k] = v
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            skip_host = "Host" in h
            conn.putrequest(method, path, skip_host=skip_host, skip_accept_encoding=True)
            for k, v in h.items():
                if v is not None:
                    conn.putheader(k, v)
            if data is not None:
                conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data)
            r = conn.getresponse()
            return Resp(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def healthy(self):
        try:
            return self.get("/health").status == 200
        except OSError:
            return False

    def wait_healthy(self, timeout=30):
        wait_for(self.healthy, timeout, "GET /health to answer 200")

    def state(self, name):
        """The connector's state from GET /connectors/{name}/status, or the HTTP status."""
        r = self.get("/connectors/%s/status" % name)
        return r.json["connector"]["state"] if r.status == 200 else r.status

    def wait_state(self, name, state, timeout=30):
        wait_for(lambda: self.state(name) == state, timeout,
                 "connector %s to be %s over REST (now %s)" % (name, state, self.state(name)))
        return self.get("/connectors/%s/status" % name).json

    def metrics(self, strict=False):
        """GET /metrics parsed; strict also checks the format's grouping rules."""
        r = self.get("/metrics")
        assert r.status == 200, r
        return parse_prometheus(r.raw.decode(), strict)


def expect(resp, status, what=""):
    """Asserts the status; for errors, also Connect's error shape."""
    assert resp.status == status, "%s: expected %d, got %r" % (what, status, resp)
    if status >= 400:
        j = resp.json
        assert isinstance(j, dict) and j.get("error_code") == status and \
            isinstance(j.get("message"), str), "%s: not an error object: %r" % (what, resp)
    return resp


def rest_spoke(yaml_text="", extra_worker=None, **kw):
    """A started Spoke whose REST API answers; returns (sp, api)."""
    sp = Spoke(yaml_text, extra_worker=extra_worker, **kw)
    api = Api(sp)
    try:
        api.wait_healthy()
    except Exception:
        sp.kill()
        raise
    return sp, api


def expect_refused(api, plugin, name, config, key, want):
    """A config the plugin's check refuses: POST /connectors and PUT
    /connectors/{name}/config answer 400 with want in the message and create
    nothing; config/validate counts one error, on key."""
    expect_refused_all(api, plugin, name, config, [(key, want)])


def expect_refused_all(api, plugin, name, config, problems):
    """A config the plugin's check refuses with problems, [(key, want)]:
    POST /connectors and PUT /connectors/{name}/config answer 400 with every
    want in the message and create nothing; config/validate counts exactly
    these errors, each want on its key."""
    keys = sorted({k for k, _ in problems})
    for method, path, body in (("POST", "/connectors", {"name": name, "config": config}),
                               ("PUT", "/connectors/%s/config" % name, config)):
        r = expect(api.call(method, path, body=body), 400, keys)
        assert all(w in r.json["message"] for _, w in problems), (keys, r.json)
    assert api.get("/connectors").json == [], "a refused connector was created"
    r = expect(api.call("PUT", "/connector-plugins/%s/config/validate" % plugin, body=config),
               200, keys).json
    errs = {c["value"]["name"]: c["value"]["errors"] for c in r["configs"] if c["value"]["errors"]}
    assert r["error_count"] == len(problems) and sorted(errs) == keys and \
        sum(len(e) for e in errs.values()) == len(problems) and \
        all(any(w in e for e in errs[k]) for k, w in problems), (keys, r["error_count"], errs)


def expect_each_refused(plugin, name, base, cases):
    """On a fresh spoke: each (key, extra, want) of cases, the config base +
    extra, is refused as expect_refused says."""
    sp, api = rest_spoke("connectors: []\n")
    with sp:
        for key, extra, want in cases:
            expect_refused(api, plugin, name, dict(base, **extra), key, want)


def write_lines(path, n, start=0):
    with open(path, "w") as f:
        for i in range(start, start + n):
            f.write('{"seq":%d}\n' % i)


# ---- Prometheus text format 0.0.4 ----

def _parse_labels(s, i, line):
    labels = {}
    assert s[i] == "{"
    i += 1
    while True:
        while s[i] == " ":
            i += 1
        if s[i] == "}":
            return labels, i + 1
        j = i
        while s[j].isalnum() or s[j] == "_":
            j += 1
        name = s[i:j]
        assert name and not name[0].isdigit(), "bad label name in %r" % line
        assert s[j] == "=" and s[j + 1] == '"', "bad label in %r" % line
        j += 2
        val = []
        while s[j] != '"':
            if s[j] == "\\":
                esc = s[j + 1]
                assert esc in '\\"n', "bad escape in %r" % line
                val.append("\n" if esc == "n" else esc)
                j += 2
            else:
                val.append(s[j])
                j += 1
        assert name not in labels, "duplicate label %s in %r" % (name, line)
        labels[name] = "".join(val)
        j += 1
        while s[j] == " ":
            j += 1
        if s[j] == ",":
            j += 1
        else:
            assert s[j] == "}", "bad label list in %r" % line
        i = j


def parse_prometheus(text, strict=True):
    """Parses the text exposition format: names and labels well-formed,
    values floats, no duplicate series, one TYPE per name, before its
    samples. strict adds the grouping rule: a family's lines (HELP, TYPE,
    samples) form one group. Returns {name: [(labels dict, value)]}."""
    assert text.endswith("\n"), "exposition must end with a newline"
    families = {}
    types = {}
    done = set()
    current = None
    series = set()

    def family_of(sample):
        for suffix in ("_bucket", "_sum", "_count"):
            base = sample[:-len(suffix)] if sample.endswith(suffix) else None
            if base and types.get(base) in ("histogram", "summary"):
                return base
        return sample

    def enter(name):
        nonlocal current
        if current != name:
            assert not strict or name not in done, "metric %s is not in one group" % name
            if current is not None:
                done.add(current)
            current = name

    for line in text.split("\n")[:-1]:
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                enter(name)
                if parts[1] == "TYPE":
                    assert name not in types, "second TYPE line for %s" % name
                    assert name not in families, "TYPE for %s after its samples" % name
                    assert len(parts) == 4 and parts[3] in (
                        "counter", "gauge", "histogram", "summary", "untyped"), line
                    types[name] = parts[3]
            continue
        i = 0
        while i < len(line) and (line[i].isalnum() or line[i] in "_:"):
            i += 1
        name = line[:i]
        assert name and not name[0].isdigit(), "bad metric name in %r" % line
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = _parse_labels(line, i, line)
        rest = line[i:].split()
        assert 1 <= len(rest) <= 2, "bad sample line %r" % line
        value = float(rest[0])
        if len(rest) == 2:
            int(rest[1])
        enter(family_of(name))
        key = (name, tuple(sorted(labels.items())))
        assert key not in series, "duplicate series %r" % (key,)
        series.add(key)
        families.setdefault(name, []).append((labels, value))
    for name, t in types.items():
        if t == "counter":
            assert name.endswith("_total"), "counter %s should end in _total" % name
    return families


def sample(fams, name, **labels):
    """The value of the one series of name whose labels include labels."""
    hits = [v for (l, v) in fams.get(name, []) if all(l.get(k) == w for k, w in labels.items())]
    assert len(hits) == 1, "%s%r: %d series" % (name, labels, len(hits))
    return hits[0]


def idle_socket(port, host="127.0.0.1"):
    """A connection that sends nothing (a slow client)."""
    return socket.create_connection((host, port), timeout=10)

