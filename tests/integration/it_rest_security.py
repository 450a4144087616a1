"""it-rest_security: hostile input over real HTTP. Every body field swapped
for every other JSON type, missing and unknown fields, broken and deep JSON,
huge bodies, bad names in paths, wrong Host and Origin, wrong Content-Type,
the bearer token, and slow clients. Each gets the right 4xx, nothing
reaches the runtime, and the host stays healthy."""
import http.client
import json
import os
import socket
import subprocess
import time

from resttest import Api, expect, idle_socket, rest_spoke
from spoketest import BIN, Spoke, env, free_port, wait_for, write_seq

TYPES = {"string": "s", "number": 1, "float": 1.5, "boolean": True, "null": None,
         "object": {}, "array": []}

SINK = {"connector.class": "null_sink", "topics": "t"}


def swapped(value_type_ok):
    """Every JSON value whose type name is not in value_type_ok."""
    return [(t, v) for t, v in TYPES.items() if t not in value_type_ok]


def assert_healthy(sp, api):
    assert sp.alive(), sp.log()[-3000:]
    assert api.healthy()


def connectors(api):
    return expect(api.get("/connectors"), 200).json


def test_every_body_field_swapped_for_every_type():
    sp, api = rest_spoke("""
connectors:
  - name: h
    connector.class: null_sink
    topics: t
""")
    with sp:
        # POST /connectors: name, config, config values, initial_state.
        for t, v in swapped({"string"}):
            r = expect(api.call("POST", "/connectors", body={"name": v, "config": SINK}), 400,
                       "name as " + t)
            assert "name" in r.json["message"], r
        for t, v in swapped({"object"}):
            r = expect(api.call("POST", "/connectors", body={"name": "x", "config": v}), 400,
                       "config as " + t)
            assert "config" in r.json["message"], r
        for t, v in swapped({"string"}):
            cfg = dict(SINK, topics=v)
            r = expect(api.call("POST", "/connectors", body={"name": "x", "config": cfg}), 400,
                       "config.topics as " + t)
            assert "config.topics must be a string" in r.json["message"], r
        for t, v in swapped({"string", "null"}):
            r = expect(api.call("POST", "/connectors", body={
                "name": "x", "config": SINK, "initial_state": v}), 400, "initial_state as " + t)
            assert "initial_state" in r.json["message"], r
        for t, v in TYPES.items():
            if t != "object":
                expect(api.call("POST", "/connectors", body=v), 400, "body as " + t)
        r = expect(api.call("POST", "/connectors", body={"config": SINK}), 400, "no name")
        assert "missing field 'name'" in r.json["message"], r
        r = expect(api.call("POST", "/connectors", body={"name": "x"}), 400, "no config")
        assert "missing field 'config'" in r.json["message"], r
        r = expect(api.call("POST", "/connectors", body={"name": "x", "config": SINK,
                                                         "tasks": []}), 400, "unknown field")
        assert "unknown field 'tasks'" in r.json["message"], r

        # PUT /connectors/{c}/config and validate: objects of strings.
        for path, method in (("/connectors/h/config", "PUT"), ("/connectors/new/config", "PUT"),
                             ("/connector-plugins/null_sink/config/validate", "PUT")):
            for t, v in swapped({"string"}):
                r = expect(api.call(method, path, body=dict(SINK, topics=v)), 400,
                           "%s topics as %s" % (path, t))
                assert "config.topics" in r.json["message"], r
            for t, v in swapped({"object"}):
                expect(api.call(method, path, body=v), 400, "%s body as %s" % (path, t))
        # PATCH: strings, or null to delete a key.
        for t, v in swapped({"string", "null"}):
            r = expect(api.call("PATCH", "/connectors/h/config", body={"batch.max": v}), 400,
                       "patch value as " + t)
            assert "config.batch.max must be a string or null" in r.json["message"], r
        for t, v in swapped({"object"}):
            expect(api.call("PATCH", "/connectors/h/config", body=v), 400, "patch body as " + t)

        # PATCH offsets: {"offsets": [{"partition": {}, "offset": {} | null}]}.
        expect(api.call("PUT", "/connectors/h/stop"), 204)
        path = "/connectors/h/offsets"
        for t, v in swapped({"array"}):
            r = expect(api.call("PATCH", path, body={"offsets": v}), 400, "offsets as " + t)
            assert "offsets must be an array" in r.json["message"], r
        for t, v in swapped({"object"}):
            expect(api.call("PATCH", path, body={"offsets": [v]}), 400, "element as " + t)
            expect(api.call("PATCH", path, body={"offsets": [
                {"partition": v, "offset": {"offset": 1}}]}), 400, "partition as " + t)
        for t, v in swapped({"object", "null"}):
            r = expect(api.call("PATCH", path, body={"offsets": [
                {"partition": {"partition": "p"}, "offset": v}]}), 400, "offset as " + t)
            assert "offsets[0].offset" in r.json["message"], r
        for body in ({}, {"offsets": [], "x": 1}, {"offsets": [{"partition": {}}]},
                     {"offsets": [{"offset": None}]},
                     {"offsets": [{"partition": {}, "offset": None, "x": 1}]}):
            expect(api.call("PATCH", path, body=body), 400, repr(body))

        # PUT /admin/loggers/{name}: {"level": string}.
        for t, v in swapped({"string"}):
            r = expect(api.call("PUT", "/admin/loggers/h", body={"level": v}), 400,
                       "level as " + t)
            assert "level must be a string" in r.json["message"], r

        assert connectors(api) == ["h"]
        assert api.get("/connectors/h/config").json == dict(SINK, name="h")
        assert_healthy(sp, api)


def test_broken_json_deep_nesting_and_huge_bodies():
    sp, api = rest_spoke()
    with sp:
        for raw in (b"{", b"{'name': 'x'}", b'{"name":"x","config":{}} trailing', b"NaN",
                    b'{"name":"x","name":"y","config":{}}', b'{"name":"\xff\xfe","config":{}}',
                    b'{"name":"a\x00b","config":{}}', b'{"name":"a\\u0000b","config":{}}',
                    b"\xef\xbb\xbf{}", b" ", b'{"config":{"a":"b","a":"c"},"name":"x"}'):
            r = expect(api.call("POST", "/connectors", raw=raw), 400, repr(raw))
        r = expect(api.call("POST", "/connectors", raw=b""), 400, "empty body")
        assert "required" in r.json["message"], r
        # Depth: 32 levels parse (and fail on types), 33 do not.
        ok = '{"name":"x","config":{"a":%s}}' % ("[" * 30 + "]" * 30)
        r = expect(api.call("POST", "/connectors", raw=ok), 400, "depth 32")
        assert "config.a must be a string" in r.json["message"], r
        deep = '{"name":"x","config":{"a":%s}}' % ("[" * 31 + "]" * 31)
        r = expect(api.call("POST", "/connectors", raw=deep), 400, "depth 33")
        assert "deeper than 32" in r.json["message"], r
        r = expect(api.call("POST", "/connectors", raw="[" * 500000), 400, "500k brackets")
        assert "deeper than 32" in r.json["message"], r
        r = expect(api.call("PUT", "/admin/loggers/root", raw='{"level":' + "{" * 100000), 400)

        # Bodies over 1 MiB: 413, answered from Content-Length before the body is read.
        limit = 1 << 20
        for length in (limit + 1, 100 << 20, 1 << 62, 10 ** 30):
            conn = http.client.HTTPConnection(api.host, api.port, timeout=10)
            conn.putrequest("POST", "/connectors")
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(length))
            conn.endheaders()
            r = conn.getresponse()
            assert r.status == 413, (length, r.status)
            if length < 1 << 63:
                j = json.loads(r.read())
                assert j["error_code"] == 413 and str(limit) in j["message"], j
            # (a length past 64 bits is refused by libmicrohttpd itself, in HTML)
            conn.close()
        # Chunked: no length up front, refused once past the limit.
        conn = http.client.HTTPConnection(api.host, api.port, timeout=30)
        chunks = (b"x" * 65536 for _ in range(2 * limit // 65536))
        try:
            conn.request("PUT", "/connectors/x/config", body=chunks, encode_chunked=True,
                         headers={"Content-Type": "application/json"})
            assert conn.getresponse().status == 413
        except (ConnectionError, BrokenPipeError):
            pass  # refused and disconnected once it kept sending past twice the limit
        conn.close()
        # Just under the limit is read and validated.
        under = json.dumps({"name": "x", "config": {"k": "a" * (limit - 100)}})
        r = expect(api.call("POST", "/connectors", raw=under), 400, "just under 1 MiB")
        assert connectors(api) == []
        assert_healthy(sp, api)


def test_bad_names_never_reach_the_runtime():
    sp, api = rest_spoke("""
connectors:
  - name: ok
    connector.class: null_sink
    topics: t
""")
    with sp:
        long_name = "a" * 10240
        for path in ("/connectors/../ok", "/connectors/%2e%2e%2fok/status",
                     "/connectors/%2e%2e%2f%2e%2e%2fetc%2fpasswd/config",
                     "/connectors/..%2F..%2Ftmp", "/connectors/.ok", "/connectors/-ok",
                     "/connectors/ok%20x", "/connectors/caf%C3%A9", "/connectors/" + long_name,
                     "/connectors/a%2Fb/status", "/connector-plugins/..%2fnull_sink/config",
                     "/admin/loggers/..%2froot"):
            expect(api.get(path), 404, "GET " + path[:80])
            if path.count("/") == 2:
                expect(api.call("DELETE", path), 404, "DELETE " + path[:80])
        for path in ("/connectors/a%0d%0aSet-Cookie:%20x/status", "/connectors/a%0ab",
                     "/connectors/a%00b", "/connectors/%zz", "/connectors/a%", "/connectors/a%4",
                     "/connectors/ok?expand=%zz", "/connectors?expand=%0d"):
            r = expect(api.get(path), 400, path)
        for name in ("%2e%2e%2fx", "..", "a%2fb", "-a", ".a", "a%20b", "a%0db", long_name,
                     "a" * 129):
            r = expect(api.call("PUT", "/connectors/%s/config" % name, body=SINK), 400,
                       "create " + name[:40])
        for name in ("../x", "..", "a/b", "-a", "a b", "a\r\nb", "", long_name, "a" * 129,
                     "caf\u00e9"):
            r = expect(api.call("POST", "/connectors", body={"name": name, "config": SINK}), 400,
                       "POST name %r" % name[:40])
        # A name of 128 characters is fine.
        expect(api.call("PUT", "/connectors/%s/config" % ("b" * 128), body=SINK), 201)
        assert connectors(api) == ["b" * 128, "ok"]
        with open(os.path.join(sp.state_dir, "connectors.json")) as f:
            assert set(json.load(f)["connectors"]) <= {"ok", "b" * 128}
        assert_healthy(sp, api)


def test_host_and_origin_allow_lists():
    sp, api = rest_spoke(extra_worker={"rest.hosts.allowed": ["spoke.internal", "proxy:8443"]})
    with sp:
        port = api.port
        for host in ("localhost:%d" % port, "127.0.0.1:%d" % port, "[::1]:%d" % port,
                     "LOCALHOST:%d" % port, "127.0.0.1", "localhost", "spoke.internal",
                     "spoke.internal:9999", "proxy:8443"):
            expect(api.get("/connectors", headers={"Host": host}), 200, host)
        for host in ("evil.example", "evil.example:%d" % port, "127.0.0.1:%d" % (port + 1),
                     "localhost.evil.example:%d" % port, "proxy:9999", "proxy", "127.0.0.2",
                     "[::2]:%d" % port, "localhost:%d:%d" % (port, port), "[::1", ""):
            r = expect(api.get("/connectors", headers={"Host": host}), 421, repr(host))
            expect(api.call("DELETE", "/connectors/x", headers={"Host": host}), 421, host)
        # Browsers: a cross-site Origin is refused, even on bodyless POSTs.
        for origin in ("http://evil.example", "null", "http://localhost",
                       "http://127.0.0.1:%d.evil.example" % port, "file://",
                       "http://localhost:%d" % (port + 1)):
            r = expect(api.call("POST", "/connectors/x/restart", headers={"Origin": origin}),
                       403, origin)
            assert "cross-origin" in r.json["message"], r
        for origin in ("http://localhost:%d" % port, "http://127.0.0.1:%d" % port,
                       "https://spoke.internal"):
            expect(api.call("POST", "/connectors/x/restart", headers={"Origin": origin}), 404,
                   origin)
        assert_healthy(sp, api)


def test_content_type_required_for_bodies_only():
    sp, api = rest_spoke("""
connectors:
  - name: c
    connector.class: null_sink
    topics: t
""")
    with sp:
        body = json.dumps({"name": "x", "config": SINK})
        for ct in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                   "application/jsonp", "application/json-patch+json", "json", None):
            r = expect(api.call("POST", "/connectors", raw=body, ctype=ct), 415, repr(ct))
            assert "application/json" in r.json["message"], r
            expect(api.call("PUT", "/connectors/c/config", raw=json.dumps(SINK), ctype=ct), 415)
        assert connectors(api) == ["c"]
        expect(api.call("POST", "/connectors", raw=body, ctype="application/json; charset=utf-8"),
               201)
        expect(api.call("PUT", "/connectors/c/config", raw=json.dumps(SINK),
                        ctype="Application/JSON;charset=UTF-8"), 200)
        # Bodyless calls need no Content-Type (curl -X PUT, kcctl).
        expect(api.call("PUT", "/connectors/c/pause"), 202)
        expect(api.call("PUT", "/connectors/c/resume"), 202)
        expect(api.call("POST", "/connectors/c/restart"), 204)
        expect(api.call("POST", "/connectors/c/tasks/0/restart"), 204)
        expect(api.call("POST", "/connectors/c/restart", raw=b"", ctype="text/plain"), 204)
        assert_healthy(sp, api)


def write_token(path, token, mode=0o600):
    with open(path, "w") as f:
        f.write(token + "\n")
    os.chmod(path, mode)


def test_bearer_token_required_for_changes():
    tmp_sp = Spoke("", start=False)
    token = "s3cr3t-token-for-tests"
    tok = os.path.join(tmp_sp.tmp, "token")
    write_token(tok, token)
    sp = Spoke("""
connectors:
  - name: c
    connector.class: null_sink
    topics: t
""", tmp=tmp_sp.tmp, extra_worker={"rest.token.file": tok})
    api = Api(sp)
    with sp:
        api.wait_healthy()
        # Reads stay open.
        expect(api.get("/connectors"), 200)
        expect(api.get("/connectors/c/status"), 200)
        calls = (("PUT", "/connectors/c/pause", None), ("POST", "/connectors/c/restart", None),
                 ("DELETE", "/connectors/c", None), ("PATCH", "/connectors/c/config", {}),
                 ("POST", "/connectors", {"name": "x", "config": SINK}),
                 ("PUT", "/admin/loggers/root", {"level": "DEBUG"}),
                 ("DELETE", "/no/such/path", None))
        for auth in (None, "Bearer", "Bearer ", "Bearer wrong", "Bearer " + token[:-1],
                     "Bearer " + token + "x", "Basic " + token, token, "Bearer  " + token + " x"):
            for method, path, body in calls:
                h = {"Authorization": auth} if auth is not None else {}
                r = expect(api.call(method, path, body=body, headers=h), 401,
                           "%s %s with %r" % (method, path, auth))
                assert r.header("WWW-Authenticate") == "Bearer", r.headers
        assert connectors(api) == ["c"] and api.state("c") == "RUNNING"
        authed = Api(sp, token=token)
        expect(authed.call("PUT", "/connectors/c/pause"), 202)
        api.wait_state("c", "PAUSED")
        expect(api.call("PUT", "/connectors/c/resume",
                        headers={"Authorization": "bearer " + token}), 202)
        api.wait_state("c", "RUNNING")
        expect(authed.call("POST", "/connectors", body={"name": "x", "config": SINK}), 201)
        expect(authed.call("DELETE", "/connectors/x"), 204)
        # The client takes the token from -c FILE's rest.token.file, or --token-file.
        cli = [BIN, "connectors"]
        p = subprocess.run(cli + ["-c", sp.config, "pause", "c"], capture_output=True, text=True,
                           env=env(), timeout=60)
        assert p.returncode == 0 and "c: pause requested" in p.stdout, (p.stdout, p.stderr)
        api.wait_state("c", "PAUSED")
        url = "http://" + api.hostport
        p = subprocess.run(cli + ["--url", url, "resume", "c"], capture_output=True, text=True,
                           env=env(), timeout=60)
        assert p.returncode == 1 and "(HTTP 401)" in p.stderr, (p.stdout, p.stderr)
        p = subprocess.run(cli + ["--url", url, "--token-file", tok, "resume", "c"],
                           capture_output=True, text=True, env=env(), timeout=60)
        assert p.returncode == 0, (p.stdout, p.stderr)
        api.wait_state("c", "RUNNING")
        assert token not in sp.log()
        assert_healthy(sp, api)


def test_token_file_and_bind_rules_refuse_to_start():
    sp = Spoke("", start=False)
    tok = os.path.join(sp.tmp, "token")
    cases = []
    write_token(tok, "t", 0o644)
    cases.append(({"rest.token.file": tok}, "has mode 0644; it must be 0600 or stricter"))
    cases.append(({"rest.token.file": os.path.join(sp.tmp, "missing")}, "cannot open"))
    cases.append(({"listeners": "http://0.0.0.0:%d" % free_port()},
                  "is not a loopback address; set rest.token.file"))
    cases.append(({"listeners": "https://127.0.0.1:%d" % free_port()}, "https is not supported"))
    for extra, message in cases:
        s = Spoke("", tmp=sp.tmp, extra_worker=extra, start=False)
        s.start()
        rc = s.proc.wait(60)
        s._close()
        assert rc != 0 and message in s.log(), (extra, rc, s.log()[-2000:])
    # The same non-loopback bind with a token starts, and loopback Hosts still work.
    write_token(tok, "tok")
    s = Spoke("", tmp=sp.tmp, extra_worker={"listeners": "http://0.0.0.0:%d" % free_port(),
                                            "rest.token.file": tok})
    with s:
        api = Api(s)
        api.host = "127.0.0.1"
        api.wait_healthy()
        expect(api.get("/connectors", headers={"Host": "127.0.0.1:%d" % api.port}), 200)
        expect(api.call("PUT", "/connectors/x/pause", token="tok"), 404)


def test_ipv6_loopback_listener():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
    except OSError as e:
        from spoketest import Skip
        raise Skip("no IPv6 loopback here: %s" % e)
    sp, api = rest_spoke(extra_worker={"listeners": "http://[::1]:%d" % port})
    with sp:
        assert api.host == "::1"
        expect(api.get("/connectors"), 200)
        expect(api.get("/connectors", headers={"Host": "[::1]:%d" % port}), 200)
        expect(api.get("/connectors", headers={"Host": "evil.example:%d" % port}), 421)


def test_a_request_waiting_behind_a_long_call_is_answered():
    """A REST call the host works on for long (stopping a source whose
    records a sink holds unconfirmed waits up to shutdown.timeout.ms, here
    3 s, three times rest.connection.timeout.ms) holds only its own
    connection: a request sent meanwhile on a connection opened before it
    is answered at once, and so is the long call. (Served by a pool of
    threads, the request waited behind the call and its connection was
    then closed as idle, without an answer.)"""
    # rest.threads 1: a pool of one thread was the surest way to lose the
    # request before; the key is ignored now.
    sp = Spoke("", start=False, extra_worker={"rest.connection.timeout.ms": 1000,
                                              "shutdown.timeout.ms": 3000,
                                              "rest.threads": 1})
    api = Api(sp)
    with sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_seq(inp, 200)
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: raw
    file: %s
  - name: asink
    connector.class: async_sink
    topics: raw
    out.file: %s
    pipeline.window: 2000
    hold: true
""" % (inp, os.path.join(sp.tmp, "out.ndjson")))
        sp.start()
        api.wait_healthy()
        sp.wait_for(lambda: "rest.threads is ignored" in sp.log(), 20, "the rest.threads warning")
        wait_for(lambda: "holding" in ((sp.connector("asink") or {}).get("trace") or ""), 60,
                 "the sink holding its deliveries")

        def send(sock, method, path):
            sock.sendall(("%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n"
                          "Connection: close\r\n\r\n" % (method, path)).encode())

        def answer(sock):
            sock.settimeout(60)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return data
                data += chunk

        early = socket.create_connection((api.host, api.port))
        long_call = socket.create_connection((api.host, api.port))
        t0 = time.monotonic()
        send(long_call, "PUT", "/connectors/src/stop")
        sp.wait_for(lambda: "[src] target state STOPPED (REST)" in sp.log(), 20,
                    "the stop under way")
        send(early, "GET", "/connectors")
        got = answer(early)
        waited = time.monotonic() - t0
        assert got.startswith(b"HTTP/1.1 200"), "the GET got %r" % got[:80]
        assert waited < 2.0, "the GET was answered %.2f s after the stop began" % waited
        got = answer(long_call)
        took = time.monotonic() - t0
        assert got.startswith(b"HTTP/1.1 204"), "the stop got %r" % got[:80]
        assert took >= 2.0, "the stop took %.2f s: no longer than the idle timeout" % took
        early.close()
        long_call.close()


def test_slow_clients_cannot_starve_the_api():
    sp, api = rest_spoke(extra_worker={"rest.max.connections": 4,
                                       "rest.connection.timeout.ms": 1000})
    with sp:
        # Clients that connect and send nothing, or half a request, hold
        # connections only until the idle timeout.
        idle = [idle_socket(api.port) for _ in range(3)]
        half = idle_socket(api.port)
        try:
            half.sendall(b"GET /connectors HTTP/1.1\r\nHost: localhost\r\n")
        except OSError:
            pass
        wait_for(api.healthy, 15, "the API to answer again after the idle timeout")

        def closed(s):
            try:
                s.settimeout(0.05)
                return s.recv(1) == b""
            except socket.timeout:
                return False
            except OSError:
                return True
        wait_for(lambda: all(closed(s) for s in idle + [half]), 15,
                 "idle connections to be closed by the server")
        for s in idle + [half]:
            s.close()
        # Many quick requests in a row still work. With 4 connections (3 per
        # address) a connection the client just closed can still count on the
        # server for a moment, so a request may be reset: a client retries.
        def served():
            try:
                return api.get("/connectors").status == 200
            except OSError:
                return False
        for _ in range(50):
            wait_for(served, 5, "a quick request to be served")
        assert_healthy(sp, api)


if __name__ == "__main__":
    from spoketest import main
    main(globals())
