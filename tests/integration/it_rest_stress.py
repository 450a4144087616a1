"""it-rest_stress: four REST clients change a running pipeline at random
(creates, config PUTs and PATCHes valid and not, deletes, pause, resume,
stop, restarts, offsets, logger levels, reads) while connectors.yaml is
reloaded with a changed connector every few hundred milliseconds. The host
must answer every request with one of the API's statuses (never a 5xx, never
a dropped connection), stay up, stop cleanly on SIGTERM and, under the
sanitizers, report nothing. The operation sequences are seeded; their
interleaving is not, which is the point: races between lifecycle calls,
reloads and task threads."""
import os
import random
import threading
import time

from resttest import Api
from spoketest import Spoke, main, wait_for

DURATION_S = 15
CLIENTS = 4
# Lifecycle calls may wait for a stopping source to drain (shutdown.timeout.ms,
# 10 s by default) while others queue behind them.
CALL_TIMEOUT_S = 60
ALLOWED = {200, 201, 202, 204, 400, 404, 409}


def pipeline(inp, version):
    return """
connectors:
  - name: src
    connector.class: file_source
    topic: t
    file: %s
  - name: echo
    connector.class: echo_transform
    topics: t
    topic: u
    drop.every: %d
    batch.max: %d
  - name: sink
    connector.class: null_sink
    topics: u
""" % (inp, version % 3, version % 50 + 1)


def test_random_rest_changes_and_reloads_never_break_the_host():
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        with open(inp, "w") as f:
            f.writelines('{"seq":%d}\n' % i for i in range(2000))
        sp.write_config(pipeline(inp, 0))
        sp.start()
        api = Api(sp)
        api.wait_healthy()
        configs = [
            {"connector.class": "null_sink", "topics": "u"},
            {"connector.class": "echo_transform", "topics": "t", "topic": "u"},
            {"connector.class": "file_source", "topic": "t", "file": inp},
            {"connector.class": "counting_sink", "topics": "u"},
            {"connector.class": "failing_sink", "topics": "u"},
            {"connector.class": "null_sink", "topics.regex": "^t.*"},
            {"connector.class": "null_sink", "topics": "t,,u"},       # refused
            {"connector.class": "no_such_plugin"},                    # refused
            {"connector.class": "null_sink", "topics": "u", "batch.max": "0"},  # refused
        ]
        names = ["a", "b", "src", "echo", "sink"]
        deadline = time.monotonic() + DURATION_S
        bad = []
        counts = {}
        lock = threading.Lock()

        def one(r):
            n = r.choice(names)
            op = r.randrange(14)
            if op == 0:
                return api.call("POST", "/connectors", body={"name": n, "config": r.choice(configs)},
                                timeout=CALL_TIMEOUT_S)
            if op == 1:
                return api.call("PUT", "/connectors/%s/config" % n, body=r.choice(configs),
                                timeout=CALL_TIMEOUT_S)
            if op == 2:
                return api.call("PATCH", "/connectors/%s/config" % n,
                                body={"batch.max": str(r.randrange(0, 50))}, timeout=CALL_TIMEOUT_S)
            if op == 3:
                return api.call("DELETE", "/connectors/%s" % n, timeout=CALL_TIMEOUT_S)
            if op in (4, 5, 6):
                return api.call("PUT", "/connectors/%s/%s" % (n, ("pause", "resume", "stop")[op - 4]),
                                timeout=CALL_TIMEOUT_S)
            if op == 7:
                return api.call("POST", "/connectors/%s/restart?includeTasks=true&onlyFailed=%s"
                                % (n, r.choice(["true", "false"])), timeout=CALL_TIMEOUT_S)
            if op == 8:
                return api.call("GET", "/connectors/%s/offsets" % n, timeout=CALL_TIMEOUT_S)
            if op == 9:
                return api.call("PATCH", "/connectors/%s/offsets" % n, body={"offsets": [
                    {"partition": {"file": inp}, "offset": {"position": r.randrange(0, 40000)}}]},
                    timeout=CALL_TIMEOUT_S)
            if op == 10:
                return api.call("DELETE", "/connectors/%s/offsets" % n, timeout=CALL_TIMEOUT_S)
            if op == 11:
                return api.call("GET", "/connectors?expand=status&expand=info",
                                timeout=CALL_TIMEOUT_S)
            if op == 12:
                return api.call("PUT", "/admin/loggers/%s" % n, body={
                    "level": r.choice(["DEBUG", "INFO", "ERROR"])}, timeout=CALL_TIMEOUT_S)
            return api.call("GET", "/metrics", timeout=CALL_TIMEOUT_S)

        def client(k):
            r = random.Random(1000 + k)
            while time.monotonic() < deadline and sp.alive():
                try:
                    resp = one(r)
                    status = resp.status
                    if status >= 400 and not isinstance((resp.json or {}).get("message"), str):
                        status = "%d without Connect's error body: %r" % (status, resp)
                except OSError as e:
                    status = repr(e)
                with lock:
                    counts[status] = counts.get(status, 0) + 1
                    if status not in ALLOWED:
                        bad.append(status)

        def reloader():
            v = 0
            while time.monotonic() < deadline and sp.alive():
                v += 1
                sp.write_config(pipeline(inp, v))
                sp.reload()
                time.sleep(0.3)  # the pace of the reloads, not a wait for anything

        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        threads.append(threading.Thread(target=reloader))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print("requests by status: %r" % counts)
        assert sp.alive(), "spoke died:\n%s" % sp.log()[-4000:]
        assert not bad, "unexpected answers %r (all: %r)" % (bad[:10], counts)
        assert sum(v for k, v in counts.items() if k in ALLOWED) >= 100, counts
        # Still serving: every listed connector has a status.
        names_now = api.get("/connectors").json
        for n in names_now:
            wait_for(lambda: api.get("/connectors/%s/status" % n).status == 200, 10,
                     "the status of %s" % n)
        assert sp.stop() == 0


if __name__ == "__main__":
    main(globals())
