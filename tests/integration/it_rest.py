"""it-rest: the Kafka Connect REST API over real HTTP, one test per endpoint
and status code: connector lifecycle, config PUT/PATCH, restarts on a
failing plugin, offsets, plugins and validation, loggers, Prometheus
metrics matching the pipeline, persistence across kill -9, and the
`spoke connectors` client."""
import json
import os
import subprocess
import tempfile

from resttest import Api, expect, rest_spoke, sample, write_lines
from spoketest import BIN, Spoke, env, main, run_spoke, wait_for

N = 500


def src_config(path, **extra):
    c = {"connector.class": "file_source", "topic": "t", "file": path}
    c.update(extra)
    return c


def sink_config(**extra):
    c = {"connector.class": "null_sink", "topics": "t"}
    c.update(extra)
    return c


def records_in(sp, name):
    return sp.connector(name).get("metrics", {}).get("records_in")


def test_root_and_health():
    sp, api = rest_spoke()
    with sp:
        r = expect(api.get("/"), 200)
        assert set(r.json) >= {"version", "commit", "kafka_cluster_id"}, r
        ver = run_spoke("version").stdout.split()[1]
        assert r.json["version"] == ver, (r.json, ver)
        r = expect(api.get("/health"), 200)
        assert r.json["status"] == "healthy" and r.json["message"], r
        assert r.header("Content-Type") == "application/json"
        # HEAD answers like GET, without a body.
        r = api.call("HEAD", "/health")
        assert r.status == 200 and r.raw == b"", r


def test_a_port_taken_before_spoke_binds_it_is_picked_again():
    """The test harness picks a free port for each spoke; when another
    process takes it first, the harness starts spoke again on a new one
    (ctest runs tests in parallel, and clients take ephemeral ports)."""
    import socket
    sp = Spoke("", start=False)
    taken = int(sp.worker["listeners"].rsplit(":", 1)[1])
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", taken))
        other.listen(1)
        with sp:
            sp.start()
            assert sp.alive(), sp.log()[-2000:]
            assert sp.runs == 2, "spoke started %d times" % sp.runs
            assert "Address already in use" not in sp.log()  # the log of the run that holds
            port = int(sp.worker["listeners"].rsplit(":", 1)[1])
            assert port != taken
            r = Api(sp).get("/health")
            assert r.status == 200, r


def test_unknown_path_404_wrong_method_405():
    sp, api = rest_spoke()
    with sp:
        for path in ("/nope", "/connectors/a/b/c/d/e/f/g", "/connectors/a/nope",
                     "/admin", "/connector-plugins/x", "//connectors"):
            expect(api.get(path), 404, path)
        r = expect(api.call("DELETE", "/health"), 405, "DELETE /health")
        assert r.header("Allow") == "GET", r.headers
        r = expect(api.call("GET", "/connectors/x/pause"), 405)
        assert r.header("Allow") == "PUT", r.headers
        r = expect(api.call("POST", "/connectors/x/config", body={}), 405)
        assert r.header("Allow") == "GET, PUT, PATCH", r.headers
        expect(api.call("OPTIONS", "/connectors"), 405)
        expect(api.call("PUT", "/metrics"), 405)
        assert api.healthy()


def test_connector_lifecycle_and_offsets():
    sp, api = rest_spoke()
    with sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_lines(inp, N)
        size = os.path.getsize(inp)

        # The sink first, so it subscribes before the source publishes.
        expect(api.call("POST", "/connectors", body={"name": "sink", "config": sink_config()}), 201)
        r = expect(api.call("POST", "/connectors", body={"name": "src", "config": src_config(inp)}),
                   201, "create src")
        assert r.header("Location") == "http://%s/connectors/src" % api.hostport, r.headers
        assert r.json["name"] == "src" and r.json["type"] == "source", r
        assert r.json["config"]["file"] == inp and r.json["config"]["connector.class"] == "file_source"
        assert r.json["tasks"] == [{"connector": "src", "task": 0}], r
        r = expect(api.call("POST", "/connectors", body={"name": "src", "config": src_config(inp)}),
                   409, "create again")
        assert "already exists" in r.json["message"], r

        assert expect(api.get("/connectors"), 200).json == ["sink", "src"]
        api.wait_state("src", "RUNNING")
        st = api.wait_state("sink", "RUNNING")
        assert st["type"] == "sink" and st["tasks"][0]["state"] == "RUNNING", st
        assert st["connector"]["worker_id"] == api.hostport, st
        r = expect(api.get("/connectors?expand=status"), 200).json
        assert set(r) == {"src", "sink"} and set(r["src"]) == {"status"}, r
        assert r["src"]["status"]["connector"]["state"] == "RUNNING", r
        r = expect(api.get("/connectors?expand=info"), 200).json
        assert set(r["sink"]) == {"info"} and r["sink"]["info"]["type"] == "sink", r
        r = expect(api.get("/connectors?expand=status&expand=info"), 200).json
        assert set(r["src"]) == {"status", "info"}, r
        r = expect(api.get("/connectors/src"), 200).json
        assert r["name"] == "src" and r["config"]["topic"] == "t", r
        r = expect(api.get("/connectors/src/config"), 200).json
        assert r["file"] == inp and r["connector.class"] == "file_source", r

        wait_for(lambda: records_in(sp, "sink") == N, 30, "the sink to receive N records")

        r = expect(api.call("PUT", "/connectors/src/pause"), 202, "pause")
        assert r.raw == b""
        st = api.wait_state("src", "PAUSED")
        assert st["tasks"][0]["state"] == "PAUSED", st
        expect(api.call("PUT", "/connectors/src/resume"), 202, "resume")
        api.wait_state("src", "RUNNING")

        r = expect(api.get("/connectors/src/tasks"), 200).json
        assert r[0]["id"] == {"connector": "src", "task": 0} and r[0]["config"]["file"] == inp, r
        r = expect(api.get("/connectors/src/tasks/0/status"), 200).json
        assert r["id"] == 0 and r["state"] == "RUNNING" and r["worker_id"] == api.hostport, r
        expect(api.get("/connectors/src/tasks/1/status"), 404)
        expect(api.get("/connectors/src/tasks/x/status"), 404)
        expect(api.get("/connectors/src/tasks/-1/status"), 404)
        expect(api.get("/connectors/nope/tasks/0/status"), 404)

        r = expect(api.get("/connectors/src/topics"), 200).json
        assert r == {"src": {"topics": ["t"]}}, r
        r = expect(api.get("/connectors/sink/topics"), 200).json
        assert r == {"sink": {"topics": ["t"]}}, r
        r = expect(api.call("PUT", "/connectors/sink/topics/reset"), 200)
        assert expect(api.get("/connectors/sink/topics"), 200).json == {"sink": {"topics": []}}

        # Offsets change only while STOPPED, with Connect's message.
        wait_for(lambda: api.get("/connectors/src/offsets").json["offsets"] ==
                 [{"partition": {"partition": inp}, "offset": {"offset": size}}], 30,
                 "the committed offset to reach the end of the file")
        body = {"offsets": [{"partition": {"partition": inp}, "offset": {"offset": 0}}]}
        for method, b in (("PATCH", body), ("DELETE", None)):
            r = expect(api.call(method, "/connectors/src/offsets", body=b), 400, method)
            assert "Connectors must be in the STOPPED state before their offsets can be " \
                   "modified" in r.json["message"], r
        r = expect(api.call("PUT", "/connectors/src/stop"), 204, "stop")
        assert r.raw == b""
        api.wait_state("src", "STOPPED")
        r = expect(api.call("PATCH", "/connectors/src/offsets", body=body), 200).json
        assert r == {"message": "The offsets for this connector have been altered successfully"}, r
        assert api.get("/connectors/src/offsets").json["offsets"][0]["offset"] == {"offset": 0}
        r = expect(api.call("DELETE", "/connectors/src/offsets"), 200).json
        assert r == {"message": "The offsets for this connector have been reset successfully"}, r
        assert api.get("/connectors/src/offsets").json == {"offsets": []}
        # Reset offsets: the source starts over, so the sink sees the file twice.
        expect(api.call("PUT", "/connectors/src/resume"), 202)
        api.wait_state("src", "RUNNING")
        wait_for(lambda: records_in(sp, "sink") == 2 * N, 30, "the file replayed from 0")

        # Only sources have offsets.
        expect(api.call("PUT", "/connectors/sink/stop"), 204)
        api.wait_state("sink", "STOPPED")
        r = expect(api.call("DELETE", "/connectors/sink/offsets"), 400)
        assert "only source connectors have offsets" in r.json["message"], r
        expect(api.call("PUT", "/connectors/sink/resume"), 202)
        api.wait_state("sink", "RUNNING")

        r = expect(api.call("DELETE", "/connectors/src"), 204, "delete")
        assert r.raw == b""
        expect(api.get("/connectors/src"), 404)
        expect(api.get("/connectors/src/status"), 404)
        expect(api.call("DELETE", "/connectors/src"), 404)
        assert api.get("/connectors").json == ["sink"]
        for path in ("/connectors/nope", "/connectors/nope/config", "/connectors/nope/status",
                     "/connectors/nope/tasks", "/connectors/nope/topics",
                     "/connectors/nope/offsets"):
            r = expect(api.get(path), 404, path)
            assert r.json["message"] == "Connector nope not found", r
        for method, path in (("PUT", "/connectors/nope/pause"), ("PUT", "/connectors/nope/resume"),
                             ("PUT", "/connectors/nope/stop"), ("POST", "/connectors/nope/restart"),
                             ("PUT", "/connectors/nope/topics/reset")):
            expect(api.call(method, path), 404, method + " " + path)
        assert api.healthy()


def test_put_config_creates_then_updates_patch_deletes_keys():
    sp, api = rest_spoke()
    with sp:
        r = expect(api.call("PUT", "/connectors/x/config", body=sink_config()), 201, "PUT creates")
        assert r.header("Location") == "http://%s/connectors/x" % api.hostport, r.headers
        assert r.json["name"] == "x", r
        api.wait_state("x", "RUNNING")
        r = expect(api.call("PUT", "/connectors/x/config", body=sink_config(**{"batch.max": "10"})),
                   200, "PUT updates")
        assert r.header("Location") is None
        assert r.json["config"]["batch.max"] == "10", r
        r = expect(api.call("PATCH", "/connectors/x/config",
                            body={"batch.max": None, "queue.capacity": "16"}), 200, "PATCH")
        cfg = expect(api.get("/connectors/x/config"), 200).json
        assert "batch.max" not in cfg and cfg["queue.capacity"] == "16", cfg
        api.wait_state("x", "RUNNING")
        # A paused connector stays paused across a config change.
        expect(api.call("PUT", "/connectors/x/pause"), 202)
        api.wait_state("x", "PAUSED")
        expect(api.call("PUT", "/connectors/x/config", body=sink_config(**{"batch.max": "5"})), 200)
        api.wait_state("x", "PAUSED")
        # The config's name must be the path's.
        expect(api.call("PUT", "/connectors/x/config", body=sink_config(name="y")), 400)
        expect(api.call("PATCH", "/connectors/nope/config", body={"a": "b"}), 404)
        r = expect(api.call("PUT", "/connectors/x/config",
                            body=sink_config(**{"queue.capacity": "0"})), 400, "bad bound")
        assert "queue.capacity" in r.json["message"], r
        assert api.get("/connectors/x/config").json["batch.max"] == "5"


def test_create_refuses_invalid_configs_with_every_error():
    sp, api = rest_spoke()
    with sp:
        r = expect(api.call("POST", "/connectors", body={"name": "bad", "config": {
            "connector.class": "file_source", "topic": "t", "bogus.key": "1",
            "max.line.bytes": "-5"}}), 400)
        msg = r.json["message"]
        assert "Connector configuration is invalid and contains the following 3 error(s)" in msg, msg
        for word in ("bogus.key", "max.line.bytes", "file"):
            assert word in msg, (word, msg)
        # REST never loads code: only plugins found in plugin.path at start.
        for cls in ("nope_sink", "../../tmp/evil", "/lib/x86_64-linux-gnu/libc.so.6"):
            expect(api.call("POST", "/connectors", body={"name": "c", "config": {
                "connector.class": cls, "topics": "t"}}), 400, cls)
        expect(api.call("POST", "/connectors", body={"name": "c", "config": {}}), 400)
        # A list with an empty item is a mistake, not a shorter list.
        r = expect(api.call("POST", "/connectors", body={"name": "c", "config": sink_config(
            topics="t,,u")}), 400, "empty list item")
        assert "topics" in r.json["message"] and "list item 2 is empty" in r.json["message"], r.json
        assert api.get("/connectors").json == []
        # initial_state.
        for state in ("PAUSED", "STOPPED", "running"):
            name = "s-" + state.lower()
            expect(api.call("POST", "/connectors", body={
                "name": name, "config": sink_config(), "initial_state": state}), 201, state)
            api.wait_state(name, state.upper())
        expect(api.call("POST", "/connectors", body={
            "name": "z", "config": sink_config(), "initial_state": "SLEEPING"}), 400)


def test_restart_semantics_on_a_failing_plugin():
    sp, api = rest_spoke()
    with sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_lines(inp, N)

        def restarts(name):
            return sample(api.metrics(), "spoke_connector_restarts_total", connector=name)

        expect(api.call("POST", "/connectors", body={"name": "good", "config": sink_config()}), 201)
        expect(api.call("POST", "/connectors", body={"name": "bad", "config": {
            "connector.class": "failing_sink", "topics": "t", "fail.after": "10"}}), 201)
        expect(api.call("POST", "/connectors", body={"name": "src", "config": src_config(inp)}), 201)
        st = api.wait_state("bad", "FAILED")
        assert "configured to fail after 10 records" in st["connector"]["trace"], st
        assert st["tasks"][0]["state"] == "FAILED" and "trace" in st["tasks"][0], st
        r = expect(api.get("/connectors/bad/tasks/0/status"), 200).json
        assert r["state"] == "FAILED" and "configured to fail" in r["trace"], r
        api.wait_state("good", "RUNNING")

        # onlyFailed on a healthy connector: 202, nothing restarts.
        r = expect(api.call("POST", "/connectors/good/restart?includeTasks=true&onlyFailed=true"),
                   202).json
        assert r["name"] == "good" and r["connector"]["state"] == "RUNNING", r
        assert restarts("good") == 0

        # includeTasks + onlyFailed on the failed one: 202 showing RESTARTING.
        r = expect(api.call("POST", "/connectors/bad/restart?includeTasks=true&onlyFailed=true"),
                   202).json
        assert r["connector"]["state"] == "RESTARTING", r
        wait_for(lambda: restarts("bad") == 1, 30, "one restart of bad")
        api.wait_state("bad", "FAILED")

        # includeTasks alone restarts whatever the state.
        r = expect(api.call("POST", "/connectors/good/restart?includeTasks=true"), 202).json
        assert r["connector"]["state"] == "RESTARTING", r
        wait_for(lambda: restarts("good") == 1, 30, "one restart of good")
        api.wait_state("good", "RUNNING")

        # The plain form: 204, done.
        r = expect(api.call("POST", "/connectors/bad/restart"), 204)
        assert r.raw == b""
        assert restarts("bad") == 2
        expect(api.call("POST", "/connectors/bad/restart?includeTasks=false&onlyFailed=false"), 204)
        assert restarts("bad") == 3

        # Task restart.
        expect(api.call("POST", "/connectors/bad/tasks/0/restart"), 204)
        assert restarts("bad") == 4
        expect(api.call("POST", "/connectors/bad/tasks/1/restart"), 404)
        expect(api.call("POST", "/connectors/nope/tasks/0/restart"), 404)
        expect(api.call("POST", "/connectors/nope/restart"), 404)
        for q in ("includeTasks=yes", "onlyFailed=1", "includeTasks="):
            r = expect(api.call("POST", "/connectors/bad/restart?" + q), 400, q)
            assert "true or false" in r.json["message"], r
        assert restarts("bad") == 4
        assert sp.alive() and api.healthy()


def test_plugins_and_validate():
    sp, api = rest_spoke()
    with sp:
        r = expect(api.get("/connector-plugins"), 200).json
        classes = {p["class"]: p for p in r}
        assert classes["file_source"]["type"] == "source", r
        assert classes["null_sink"]["type"] == "sink", r
        assert all(p["version"] for p in r), r
        assert "echo_transform" not in classes, r
        r = expect(api.get("/connector-plugins?connectorsOnly=false"), 200).json
        assert {p["class"]: p["type"] for p in r}["echo_transform"] == "transformation", r
        assert len(expect(api.get("/connector-plugins?connectorsOnly=true"), 200).json) == \
            len(classes)
        expect(api.get("/connector-plugins?connectorsOnly=maybe"), 400)

        r = expect(api.get("/connector-plugins/file_source/config"), 200).json
        names = {d["name"]: d for d in r}
        assert names["file"]["required"] is True and names["file"]["type"] == "STRING", names["file"]
        assert "connector.class" in names and "poll.interval.ms" in names, sorted(names)
        r = expect(api.get("/connector-plugins/nope/config"), 404)
        assert "nope" in r.json["message"], r

        good = {"connector.class": "file_source", "topic": "t", "file": "/tmp/x"}
        r = expect(api.call("PUT", "/connector-plugins/file_source/config/validate", body=good),
                   200).json
        assert r["name"] == "file_source" and r["error_count"] == 0, r
        assert any(c["value"]["name"] == "file" and c["value"]["value"] == "/tmp/x"
                   for c in r["configs"]), r
        bad = {"topic": "t", "bogus": "1", "poll.interval.ms": "abc"}
        r = expect(api.call("PUT", "/connector-plugins/file_source/config/validate", body=bad),
                   200).json
        assert r["error_count"] == 3, r
        errors = {c["value"]["name"]: c["value"]["errors"] for c in r["configs"]}
        for key in ("file", "bogus", "poll.interval.ms"):
            assert errors.get(key), (key, errors)
        assert errors["topic"] == [], errors
        # connector.class must name the plugin of the path.
        expect(api.call("PUT", "/connector-plugins/file_source/config/validate",
                        body={"connector.class": "null_sink"}), 400)
        expect(api.call("PUT", "/connector-plugins/nope/config/validate", body={}), 404)
        r = expect(api.call("PUT", "/connector-plugins/file_source/config/validate",
                            body={"file": 5}), 400)
        assert "config.file" in r.json["message"], r


def test_plugin_checks_between_keys_refuse_before_running():
    """A plugin's config check (keys that go together) refuses a bad config
    at the API, with the reason: POST and PUT config answer 400 and create
    nothing, config/validate counts the error on the key the plugin names
    (connector.class when it names none). A plugin built before the check
    entry existed is never asked."""
    sp, api = rest_spoke()
    with sp:
        base = {"connector.class": "checked_transform", "topics": "a", "topic": "b"}
        r = expect(api.call("POST", "/connectors", body={"name": "ck", "config": dict(
            base, low="7", high="3")}), 400)
        assert "low (7) is above high (3)" in r.json["message"], r.json
        assert api.get("/connectors").json == []
        r = expect(api.call("PUT", "/connectors/ck/config", body=dict(base, mode="whole")), 400)
        assert "mode whole refuses the configuration as a whole" in r.json["message"], r.json
        assert api.get("/connectors").json == []
        # A good config runs; a bad update is refused and the connector keeps its config.
        expect(api.call("POST", "/connectors", body={"name": "ck", "config": dict(
            base, low="1", high="2")}), 201)
        api.wait_state("ck", "RUNNING")
        expect(api.call("PUT", "/connectors/ck/config", body=dict(base, low="5", high="2")), 400)
        assert api.get("/connectors/ck/config").json["low"] == "1"
        assert api.get("/connectors/ck/status").json["connector"]["state"] == "RUNNING"

        def errors(body):
            r = expect(api.call("PUT", "/connector-plugins/checked_transform/config/validate",
                                body=body), 200).json
            return r["error_count"], {c["value"]["name"]: c["value"]["errors"]
                                      for c in r["configs"] if c["value"]["errors"]}
        assert errors(dict(base, low="1", high="2")) == (0, {})
        n, errs = errors(dict(base, low="9", high="2"))
        assert n == 1 and list(errs) == ["low"] and "above high" in errs["low"][0], errs
        n, errs = errors(dict(base, mode="whole"))
        assert n == 1 and list(errs) == ["connector.class"], errs
        # Errors of the table come first; the check runs only on a valid table.
        n, errs = errors(dict(base, low="-1", high="2"))
        assert n == 1 and list(errs) == ["low"] and "above high" not in errs["low"][0], errs
        # A descriptor from before `check` (its struct_size ends at destroy).
        expect(api.call("POST", "/connectors", body={"name": "pre", "config": {
            "connector.class": "precheck_transform", "topics": "a", "topic": "c"}}), 201)
        api.wait_state("pre", "RUNNING")
        # The shipped plugins: aggregator and velib_source.
        agg = {"connector.class": "aggregator", "topics": "a", "topic": "d",
               "group.by": "postcode", "semantics": "table", "aggregates": "n=count()"}
        r = expect(api.call("POST", "/connectors", body={"name": "agg", "config": agg}), 400)
        assert "semantics table needs entity.key" in r.json["message"], r.json
        vel = {"connector.class": "velib_source", "topic": "v",
               "url": "ftp://example.org/station_status.json"}
        r = expect(api.call("POST", "/connectors", body={"name": "vel", "config": vel}), 400)
        assert "scheme 'ftp' is not allowed" in r.json["message"], r.json
        r = expect(api.call("PUT", "/connector-plugins/velib_source/config/validate", body=vel),
                   200).json
        assert r["error_count"] == 1, r
        assert [c["value"]["name"] for c in r["configs"] if c["value"]["errors"]] == ["url"], r


def test_loggers():
    sp, api = rest_spoke("""
connectors:
  - name: quiet
    connector.class: null_sink
    topics: t
""")
    with sp:
        r = expect(api.get("/admin/loggers"), 200).json
        assert r["root"]["level"] == "INFO" and "quiet" in r, r
        assert r["root"]["last_modified"] is None, r
        r = expect(api.call("PUT", "/admin/loggers/quiet", body={"level": "ERROR"}), 200).json
        assert r == ["quiet"], r
        r = expect(api.get("/admin/loggers/quiet"), 200).json
        assert r["level"] == "ERROR" and isinstance(r["last_modified"], int), r
        assert expect(api.get("/admin/loggers/root"), 200).json["level"] == "INFO"

        # root sets every logger, and DEBUG shows one line per REST request.
        r = expect(api.call("PUT", "/admin/loggers/root", body={"level": "debug"}), 200).json
        assert set(r) == {"root", "quiet"}, r
        assert api.get("/admin/loggers/quiet").json["level"] == "DEBUG"
        expect(api.get("/connectors/quiet/status?probe=1"), 200)
        wait_for(lambda: "rest: GET /connectors/quiet/status?probe=1 -> 200" in sp.log(), 10,
                 "the request's debug line")
        expect(api.call("PUT", "/admin/loggers/root", body={"level": "INFO"}), 200)

        r = expect(api.call("PUT", "/admin/loggers/root", body={"level": "LOUD"}), 400)
        assert "LOUD" in r.json["message"], r
        expect(api.get("/admin/loggers/nope"), 404)
        expect(api.call("PUT", "/admin/loggers/nope", body={"level": "INFO"}), 404)
        for body in ({}, {"level": 5}, {"level": None}, {"level": "INFO", "scope": "x"}, [],
                     "INFO"):
            expect(api.call("PUT", "/admin/loggers/root", body=body), 400, repr(body))
        assert api.get("/admin/loggers/root").json["level"] == "INFO"


def test_a_connector_logger_above_root_shows_its_lines():
    """PUT /admin/loggers/{c} DEBUG with root at INFO: that connector's
    debug lines appear, no other connector's; back to INFO, they stop."""
    tmp = tempfile.mkdtemp(prefix="spoke-it-")
    inp = os.path.join(tmp, "in.ndjson")
    open(inp, "w").close()
    sp, api = rest_spoke("""
connectors:
  - name: src
    connector.class: file_source
    topic: t
    file: in.ndjson
  - name: loud
    connector.class: echo_transform
    topics: t
    topic: u
    drop.every: 2
  - name: hushed
    connector.class: echo_transform
    topics: t
    topic: v
    drop.every: 2
  - name: sink
    connector.class: null_sink
    topics: u, v
""", tmp=tmp)
    with sp:
        expect(api.call("PUT", "/admin/loggers/loud", body={"level": "DEBUG"}), 200)
        with open(inp, "a") as f:
            f.writelines('{"seq":%d}\n' % i for i in range(10))
        wait_for(lambda: records_in(sp, "sink") == 10, 20, "10 records at the sink")
        log = sp.log()
        assert all("debug [loud] dropped record %d" % i in log for i in (2, 4, 6, 8, 10)), log
        assert "[hushed] dropped record" not in log, log
        expect(api.call("PUT", "/admin/loggers/loud", body={"level": "INFO"}), 200)
        with open(inp, "a") as f:
            f.writelines('{"seq":%d}\n' % i for i in range(10, 14))
        wait_for(lambda: records_in(sp, "sink") == 14, 20, "14 records at the sink")
        assert "[loud] dropped record 12" not in sp.log(), sp.log()


def test_metrics_parse_and_match_the_pipeline():
    sp, api = rest_spoke()
    with sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_lines(inp, N)
        expect(api.call("POST", "/connectors", body={"name": "sink", "config": {
            "connector.class": "null_sink", "topics": "u"}}), 201)
        expect(api.call("POST", "/connectors", body={"name": "echo", "config": {
            "connector.class": "echo_transform", "topics": "t", "topic": "u"}}), 201)
        expect(api.call("POST", "/connectors", body={"name": "src", "config": src_config(inp)}), 201)
        # A paused sink holds what reaches it (backpressure, no commit), so
        # this one reads a topic of its own: it is here for its state gauge.
        expect(api.call("POST", "/connectors", body={"name": "idle",
                                                      "config": sink_config(topics="idle-only"),
                                                      "initial_state": "PAUSED"}), 201)
        r = api.get("/metrics")
        assert r.header("Content-Type").startswith("text/plain; version=0.0.4"), r.headers

        def flowed():
            f = api.metrics(strict=True)
            return sample(f, "spoke_connector_records_in_total", connector="sink") == N and f
        wait_for(flowed, 30, "N records through the pipeline")
        wait_for(lambda: api.get("/connectors/src/offsets").json["offsets"], 30, "a commit")
        f = api.metrics(strict=True)
        assert sample(f, "spoke_connector_records_out_total", connector="src") == N
        assert sample(f, "spoke_connector_records_in_total", connector="echo") == N
        assert sample(f, "spoke_connector_records_out_total", connector="echo") == N
        assert sample(f, "spoke_connector_records_in_total", connector="sink") == N
        assert sample(f, "spoke_topic_records_total", topic="t") == N
        assert sample(f, "spoke_topic_records_total", topic="u") == N
        for name in ("src", "echo", "sink"):
            assert sample(f, "spoke_connector_errors_total", connector=name) == 0
        assert sample(f, "spoke_connector_state", connector="sink", state="RUNNING") == 1
        assert sample(f, "spoke_connector_state", connector="idle", state="PAUSED") == 1
        assert sample(f, "spoke_connector_queue_depth", connector="sink") == 0
        assert sample(f, "spoke_connector_last_poll_timestamp_seconds", connector="src") > 0
        assert sample(f, "spoke_process_resident_memory_bytes") > 0
        assert sample(f, "spoke_process_uptime_seconds") > 0
        # The same numbers as status.json.
        wait_for(lambda: sp.connector("sink").get("metrics", {}).get("records_in") == N, 10,
                 "status.json")


def test_persistence_across_kill9():
    sp, api = rest_spoke("""
connectors:
  - name: fromfile
    connector.class: null_sink
    topics: t
""")
    with sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_lines(inp, 10)
        expect(api.call("POST", "/connectors", body={"name": "src", "config": src_config(inp)}), 201)
        expect(api.call("POST", "/connectors", body={"name": "keep", "config": sink_config(
            **{"batch.max": "7"})}), 201)
        expect(api.call("POST", "/connectors", body={"name": "paused", "config": sink_config()}), 201)
        expect(api.call("POST", "/connectors", body={"name": "gone", "config": sink_config()}), 201)
        expect(api.call("PUT", "/connectors/paused/pause"), 202)
        expect(api.call("PUT", "/connectors/src/stop"), 204)
        expect(api.call("PUT", "/connectors/fromfile/pause"), 202)
        expect(api.call("DELETE", "/connectors/gone"), 204)
        api.wait_state("paused", "PAUSED")
        api.wait_state("fromfile", "PAUSED")
        api.wait_state("src", "STOPPED")
        before = {n: (api.get("/connectors/%s/config" % n).json, api.state(n))
                  for n in api.get("/connectors").json}
        sp.kill()
        sp.start()
        api.wait_healthy()
        assert sorted(api.get("/connectors").json) == ["fromfile", "keep", "paused", "src"]
        for n, (cfg, state) in before.items():
            api.wait_state(n, state)
            assert api.get("/connectors/%s/config" % n).json == cfg, n
        expect(api.get("/connectors/gone"), 404)


def run_cli(*args):
    p = subprocess.run([BIN, "connectors"] + [str(a) for a in args], capture_output=True,
                       text=True, env=env(), timeout=60)
    return p


def test_cli_client():
    sp, api = rest_spoke()
    with sp:
        cfg = sp.config
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_lines(inp, 10)
        yml = os.path.join(sp.tmp, "src.yaml")
        with open(yml, "w") as f:
            f.write("# one connector, as in connectors.yaml\nname: src\nconnector.class: "
                    "file_source\ntopic: t\nfile: %s\n" % inp)
        p = run_cli("-c", cfg, "create", yml)
        assert p.returncode == 0 and "created src (source)" in p.stdout, (p.stdout, p.stderr)
        js = os.path.join(sp.tmp, "sink.json")
        with open(js, "w") as f:
            json.dump({"name": "sink", "config": sink_config()}, f)
        p = run_cli("--url", "http://" + api.hostport, "create", js)
        assert p.returncode == 0 and "created sink (sink)" in p.stdout, (p.stdout, p.stderr)
        flat = os.path.join(sp.tmp, "flat.json")
        with open(flat, "w") as f:
            json.dump({"name": "flat", "connector.class": "null_sink", "topics": "t"}, f)
        assert run_cli("-c", cfg, "create", flat).returncode == 0
        api.wait_state("src", "RUNNING")
        api.wait_state("sink", "RUNNING")

        p = run_cli("-c", cfg, "list")
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert lines[0].split() == ["NAME", "TYPE", "STATE", "TASKS"], p.stdout
        assert lines[1].split()[:3] == ["flat", "sink", "RUNNING"], p.stdout
        assert lines[3].split()[:3] == ["src", "source", "RUNNING"], p.stdout

        p = run_cli("-c", cfg, "pause", "src")
        assert p.returncode == 0 and "src: pause requested" in p.stdout, p
        api.wait_state("src", "PAUSED")
        p = run_cli("-c", cfg, "status", "src")
        assert p.returncode == 0, p.stderr
        assert p.stdout.splitlines()[1].split()[:3] == ["src", "PAUSED", "source"], p.stdout
        assert run_cli("-c", cfg, "resume", "src").returncode == 0
        api.wait_state("src", "RUNNING")
        p = run_cli("-c", cfg, "restart", "src")
        assert p.returncode == 0 and "src: restarted" in p.stdout, p
        p = run_cli("-c", cfg, "restart", "--include-tasks", "src")
        assert p.returncode == 0 and "restart accepted" in p.stdout, p

        # config prints YAML that create accepts back.
        p = run_cli("-c", cfg, "config", "src")
        assert p.returncode == 0 and "connector.class: file_source" in p.stdout, p.stdout
        back = os.path.join(sp.tmp, "back.yaml")
        with open(back, "w") as f:
            f.write(p.stdout.replace("name: src", "name: src2"))
        assert run_cli("-c", cfg, "create", back).returncode == 0
        assert api.get("/connectors/src2/config").json["file"] == inp

        p = run_cli("-c", cfg, "delete", "src2")
        assert p.returncode == 0 and "src2: deleted" in p.stdout, p
        # Errors: the server's message, exit 1.
        p = run_cli("-c", cfg, "status", "nope")
        assert p.returncode == 1 and "Connector nope not found (HTTP 404)" in p.stderr, p
        p = run_cli("-c", cfg, "create", yml)
        assert p.returncode == 1 and "already exists (HTTP 409)" in p.stderr, p
        with open(yml, "w") as f:
            f.write("name: broken\nconnector.class: file_source\n  bad: indent\n")
        p = run_cli("-c", cfg, "create", yml)
        assert p.returncode == 1 and yml + ":" in p.stderr, p
        p = run_cli("--url", "http://127.0.0.1:1", "list")
        assert p.returncode == 1 and "cannot reach" in p.stderr, p
        p = run_cli("-c", cfg, "frobnicate", "x")
        assert p.returncode == 2, p
        p = run_cli("-c", cfg)
        assert p.returncode == 2, p
        p = run_cli("--help")
        assert p.returncode == 0 and "usage: spoke connectors" in p.stdout, p


if __name__ == "__main__":
    main(globals())
