"""it-rest_state: what REST changes survive (state.dir/connectors.json), how
they combine with connectors.yaml, and the automatic restart policy."""
import http.client
import json
import os

from spoketest import Spoke, count_lines, main, wait_for, write_seq


def call(sp, method, path, body=None):
    """One REST call; returns (status, parsed JSON body or None)."""
    url = sp.worker["listeners"].split("://", 1)[1]
    host, port = url.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body)
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    return r.status, (json.loads(raw) if raw else None)


def wait_rest(sp):
    def up():
        try:
            return call(sp, "GET", "/health")[0] == 200
        except OSError:
            return False
    wait_for(up, 20, "the REST API")


def state(sp, name):
    st, body = call(sp, "GET", "/connectors/%s/status" % name)
    return body["connector"]["state"] if st == 200 else st


def file_yaml(sp, a_file, c_extra=""):
    return """
connectors:
  - name: a
    connector.class: file_sink
    topics: t
    file: %s
  - name: c
    connector.class: null_sink
    topics: t
%s""" % (a_file, c_extra)


def test_rest_changes_persist_until_the_file_changes_that_connector():
    with Spoke("", start=False) as sp:
        a1, a2, a3 = (os.path.join(sp.tmp, n) for n in ("a1.ndjson", "a2.ndjson", "a3.ndjson"))
        sp.write_config(file_yaml(sp, a1))
        sp.start()
        wait_rest(sp)
        # REST changes a file connector, creates b, deletes c, pauses a.
        st, body = call(sp, "PUT", "/connectors/a/config",
                        {"connector.class": "file_sink", "topics": "t", "file": a2})
        assert st == 200, body
        st, _ = call(sp, "POST", "/connectors", {"name": "b", "config": {
            "connector.class": "null_sink", "topics": "t"}})
        assert st == 201
        assert call(sp, "DELETE", "/connectors/c")[0] == 204
        assert call(sp, "PUT", "/connectors/a/pause")[0] == 202
        wait_for(lambda: state(sp, "a") == "PAUSED", 10, "a paused")
        sp.kill()  # not even a clean stop: the REST state is already durable

        sp.start()
        wait_rest(sp)
        wait_for(lambda: state(sp, "a") == "PAUSED", 10, "a still paused after restart")
        assert call(sp, "GET", "/connectors/a/config")[1]["file"] == a2, "REST config kept"
        assert state(sp, "b") == "RUNNING"
        assert call(sp, "GET", "/connectors/c")[0] == 404, "c stays deleted"

        # The file changes a: the file's version applies (running, file a3).
        sp.write_config(file_yaml(sp, a3))
        sp.reload()
        wait_for(lambda: call(sp, "GET", "/connectors/a/config")[1].get("file") == a3, 20,
                 "file's new config for a")
        wait_for(lambda: state(sp, "a") == "RUNNING", 10, "a running per the file")
        # c unchanged in the file: still deleted; b (REST only) unaffected.
        assert call(sp, "GET", "/connectors/c")[0] == 404
        assert state(sp, "b") == "RUNNING"
        # The file changes c: it comes back.
        sp.write_config(file_yaml(sp, a3, "    batch.max: 7\n"))
        sp.reload()
        wait_for(lambda: state(sp, "c") == "RUNNING", 20, "c back from the file")
        with open(os.path.join(sp.state_dir, "connectors.json")) as f:
            stored = json.load(f)["connectors"]
        assert set(stored) == {"b"}, stored


def test_stored_connector_that_no_longer_validates_is_failed_and_can_be_deleted():
    """A stored REST connector whose config no longer validates (a stricter
    rule, a plugin gone, a hand edit) is not started and never blocks the
    others. It stays visible: listed, FAILED with the reason as its trace
    (status, ?expand=status, the state gauge of /metrics), its config and
    info shown with secrets masked; the paths that need a running connector
    answer 404 with the reason and the way out. DELETE forgets it; PUT
    config brings it back."""
    with Spoke("connectors: []\n", start=False) as sp:
        sp.start()
        wait_rest(sp)
        for name in ("b", "d", "e", "ok"):
            st, body = call(sp, "POST", "/connectors", {"name": name, "config": {
                "connector.class": "null_sink", "topics": "t", "batch.max": "7"}})
            assert st == 201, body
        st, body = call(sp, "POST", "/connectors", {"name": "s", "config": {
            "connector.class": "secret_sink", "topics": "t", "password": "hunter2-hunter2",
            "api.key": "k-12345678", "label": "shown"}})
        assert st == 201, body
        sp.kill()
        path = os.path.join(sp.state_dir, "connectors.json")
        with open(path) as f:
            stored = json.load(f)
        stored["connectors"]["b"]["config"]["batch.max"] = "0"
        stored["connectors"]["d"]["config"]["bogus.key"] = "1"
        stored["connectors"]["e"]["config"]["name"] = "x"  # not even a section
        stored["connectors"]["s"]["config"]["bogus.s"] = "1"
        # A plugin gone: nothing says which keys are secret, so all but the
        # plain ones (class, topics) are masked.
        stored["connectors"]["g"] = json.loads(json.dumps(stored["connectors"]["s"]))
        stored["connectors"]["g"]["config"].update({"connector.class": "gone_sink", "name": "g"})
        with open(path, "w") as f:
            json.dump(stored, f)
        skipped = (("b", "batch.max"), ("d", "bogus.key"),
                   ("e", "'x' differs from the connector name 'e'"), ("s", "bogus.s"),
                   ("g", "no plugin named 'gone_sink'"))

        sp.start()
        wait_rest(sp)
        wait_for(lambda: state(sp, "ok") == "RUNNING", 10, "ok running")
        assert call(sp, "GET", "/connectors")[1] == ["b", "d", "e", "g", "ok", "s"]
        expanded = call(sp, "GET", "/connectors?expand=status&expand=info")[1]
        _, metrics = _get_text(sp, "/metrics")
        for name, why in skipped:
            st, body = call(sp, "GET", "/connectors/%s/status" % name)
            trace = body["connector"]["trace"]
            assert st == 200 and body["connector"]["state"] == "FAILED" and body["tasks"] == [] \
                and trace.startswith("its stored config no longer validates, so it was not "
                                     "started: ") and why in trace, (st, body)
            assert expanded[name]["status"] == body, expanded[name]
            plugin = {"s": "secret_sink", "g": "gone_sink"}.get(name, "null_sink")
            assert 'spoke_connector_state{connector="%s",plugin="%s",type="%s",' \
                'state="FAILED"} 1' % (name, plugin, "unknown" if name == "g" else "sink") \
                in metrics, metrics
            st, body = call(sp, "GET", "/connectors/%s/tasks" % name)
            msg = body["message"]
            assert st == 404 and msg.startswith(
                "Connector %s not found: its stored config no longer validates, so it was not "
                "started (" % name) and why in msg and msg.endswith(
                "); PUT /connectors/%s/config with a valid config, or DELETE /connectors/%s to "
                "forget it" % (name, name)), (st, body)
        # Config and info: as stored, secrets masked.
        st, conf = call(sp, "GET", "/connectors/s/config")
        assert st == 200 and conf["password"] == "********" and conf["api.key"] == "********" \
            and conf["label"] == "shown" and conf["bogus.s"] == "1" \
            and conf["connector.class"] == "secret_sink", conf
        assert expanded["s"]["info"]["config"] == conf and expanded["s"]["info"]["type"] == "sink"
        assert call(sp, "GET", "/connectors/s")[1]["config"] == conf
        st, conf = call(sp, "GET", "/connectors/g/config")
        assert st == 200 and conf == {"name": "g", "connector.class": "gone_sink", "topics": "t",
                                      "password": "********", "api.key": "********",
                                      "label": "********", "bogus.s": "********"}, conf
        assert expanded["g"]["info"]["type"] == "unknown"
        assert "hunter2" not in json.dumps(expanded) and "hunter2" not in metrics
        assert "stored REST config no longer valid, connector not started" in sp.log()

        # DELETE forgets b: a plain 404 after, and nothing stored.
        assert call(sp, "DELETE", "/connectors/b")[0] == 204
        st, body = call(sp, "GET", "/connectors/b/status")
        assert st == 404 and body["message"] == "Connector b not found", body
        assert call(sp, "DELETE", "/connectors/b")[0] == 404
        for name in ("e", "g", "s"):
            assert call(sp, "DELETE", "/connectors/%s" % name)[0] == 204
        assert call(sp, "GET", "/connectors")[1] == ["d", "ok"]
        # PUT config brings d back, valid.
        st, body = call(sp, "PUT", "/connectors/d/config",
                        {"connector.class": "null_sink", "topics": "t"})
        assert st == 201, body
        wait_for(lambda: state(sp, "d") == "RUNNING", 10, "d running")
        with open(path) as f:
            assert set(json.load(f)["connectors"]) == {"d", "ok"}
        # After a restart nothing is skipped any more.
        sp.kill()
        sp.start()
        wait_rest(sp)
        wait_for(lambda: state(sp, "d") == "RUNNING" and state(sp, "ok") == "RUNNING", 10,
                 "d and ok running")
        assert call(sp, "GET", "/connectors")[1] == ["d", "ok"]
        assert call(sp, "GET", "/connectors/b/status")[1]["message"] == "Connector b not found"


def _get_text(sp, path):
    url = sp.worker["listeners"].split("://", 1)[1]
    host, port = url.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", path)
    r = conn.getresponse()
    text = r.read().decode()
    conn.close()
    return r.status, text


def test_stop_offsets_and_resume_from_altered_offset():
    with Spoke("", start=False) as sp:
        inp, out = os.path.join(sp.tmp, "in.ndjson"), os.path.join(sp.tmp, "out.ndjson")
        write_seq(inp, 100)
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: t
    file: %s
  - name: dst
    connector.class: file_sink
    topics: t
    file: %s
""" % (inp, out))
        sp.start()
        wait_rest(sp)
        wait_for(lambda: count_lines(out) == 100, 20, "100 lines")
        size = os.path.getsize(inp)
        st, body = call(sp, "PATCH", "/connectors/src/offsets",
                        {"offsets": [{"partition": {"partition": inp}, "offset": {"offset": 0}}]})
        assert st == 400 and "STOPPED" in body["message"], body
        assert call(sp, "PUT", "/connectors/src/stop")[0] == 204
        wait_for(lambda: call(sp, "GET", "/connectors/src/offsets")[1]["offsets"] ==
                 [{"partition": {"partition": inp}, "offset": {"offset": size}}], 10, "offsets")
        # Rewind to line 90 (each line is 11 or 12 bytes; compute the byte offset).
        with open(inp, "rb") as f:
            off = len(b"".join(f.readlines()[:90]))
        st, body = call(sp, "PATCH", "/connectors/src/offsets",
                        {"offsets": [{"partition": {"partition": inp}, "offset": {"offset": off}}]})
        assert st == 200 and "altered" in body["message"], body
        assert call(sp, "PUT", "/connectors/src/resume")[0] == 202
        wait_for(lambda: count_lines(out) == 110, 20, "the last 10 lines again")
        with open(out) as f:
            seqs = [json.loads(l)["seq"] for l in f]
        assert seqs == list(range(100)) + list(range(90, 100)), seqs[-15:]


def test_auto_restart_with_backoff_then_gives_up():
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_seq(inp, 100)
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: t
    file: %s
  - name: flaky
    connector.class: failing_sink
    topics: t
    fail.after: 5
    restart.max.retries: 2
    restart.backoff.ms: 50
""" % inp)
        sp.start()
        wait_rest(sp)
        wait_for(lambda: "[flaky] automatic restart 2 after failure" in sp.log() and
                 state(sp, "flaky") == "FAILED", 30, "two automatic restarts, then FAILED")
        # Each restart replayed the source from its committed offset, so the
        # restarted sink received records again (and failed again on them).
        assert sp.log().count("[src] replaying from the committed offsets") >= 2, sp.log()[-3000:]
        wait_for(lambda: "spoke_connector_restarts_total{connector=\"flaky\"" in metrics(sp), 10,
                 "restart metric")
        m = metrics(sp)
        line = [l for l in m.splitlines() if l.startswith('spoke_connector_restarts_total{connector="flaky"')]
        assert line and line[0].endswith(" 2"), line
        # It stays FAILED: no third restart is scheduled.
        assert "automatic restart 3" not in sp.log()
        # A manual restart still works and counts.
        assert call(sp, "POST", "/connectors/flaky/restart")[0] == 204


def test_restarted_failed_sink_gets_every_record_it_missed():
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        good = os.path.join(sp.tmp, "good.ndjson")
        missing = os.path.join(sp.tmp, "missing")
        bad = os.path.join(missing, "bad.ndjson")
        write_seq(inp, 1000)
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: t
    file: %s
  - name: good
    connector.class: file_sink
    topics: t
    file: %s
  - name: bad
    connector.class: file_sink
    topics: t
    file: %s
""" % (inp, good, bad))
        sp.start()
        wait_rest(sp)
        wait_for(lambda: state(sp, "bad") == "FAILED", 20, "bad FAILED (its directory is missing)")
        wait_for(lambda: count_lines(good) == 1000, 20, "the healthy sink flows meanwhile")
        os.mkdir(missing)
        assert call(sp, "POST", "/connectors/bad/restart")[0] == 204
        wait_for(lambda: count_lines(bad) == 1000, 30, "bad receives all 1000 after the restart")
        wait_for(lambda: sp.offsets().get("src", {}).get(inp) == os.path.getsize(inp), 20,
                 "offsets committed to the end")
    want = ['{"seq":%d}' % i for i in range(1000)]
    with open(bad) as f:
        assert [l.strip() for l in f] == want
    with open(good) as f:
        got = [l.strip() for l in f]
    assert set(got) == set(want), "the healthy sink lost records"  # duplicates allowed


def metrics(sp):
    url = sp.worker["listeners"].split("://", 1)[1]
    host, port = url.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return text


if __name__ == "__main__":
    main(globals())
