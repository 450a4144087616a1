"""it-rest_secrets: secret config values (PASSWORD keys and keys flagged
secret) never leave the host: masked in every REST answer, absent from
status.json, metrics and logs; an invalid secret's error names the key, not
the value. Persisted in state.dir (the host needs them to restart)."""
import json
import os

from resttest import Api
from spoketest import Spoke, main, wait_for

PASSWORD = "hunter2-Sup3rS3cret"
API_KEY = "ak-7f3c9e1d-2b4a"
MASK = "********"


def test_secrets_are_masked_everywhere():
    with Spoke("""
connectors:
  - name: vault
    connector.class: secret_sink
    topics: t
    password: %s
""" % PASSWORD) as sp:
        api = Api(sp)
        def up():
            try:
                return api.get("/health").status == 200
            except OSError:
                return False
        wait_for(up, 20, "REST up")
        st = api.call("POST", "/connectors", body={"name": "vault2", "config": {
            "connector.class": "secret_sink", "topics": "t", "password": PASSWORD,
            "api.key": API_KEY}})
        assert st.status == 201, st
        answers = [st.raw.decode()]
        for path in ("/connectors/vault", "/connectors/vault/config", "/connectors/vault2",
                     "/connectors/vault2/config", "/connectors/vault2/tasks",
                     "/connectors?expand=info&expand=status", "/connector-plugins/secret_sink/config",
                     "/metrics", "/connectors/vault2/status"):
            r = api.get(path)
            assert r.status == 200, (path, r)
            answers.append(r.raw.decode())
        cfg = api.get("/connectors/vault2/config").json
        assert cfg["password"] == MASK and cfg["api.key"] == MASK and cfg["topics"] == "t", cfg
        assert api.get("/connectors/vault/config").json["password"] == MASK
        # validate: masked values, and a bad secret's error does not echo it.
        v = api.call("PUT", "/connector-plugins/secret_sink/config/validate",
                     body={"topics": "t", "password": PASSWORD, "api.key": API_KEY,
                           "labell": PASSWORD})
        assert v.status == 200 and v.json["error_count"] == 1, v
        answers.append(v.raw.decode())
        by = {c["value"]["name"]: c["value"] for c in v.json["configs"]}
        assert by["password"]["value"] == MASK and by["api.key"]["value"] == MASK, by
        # A PATCH that changes the password keeps it masked.
        p = api.call("PATCH", "/connectors/vault2/config", body={"password": PASSWORD + "x"})
        assert p.status == 200 and p.json["config"]["password"] == MASK, p
        answers.append(p.raw.decode())
        wait_for(lambda: sp.connector("vault2").get("state") == "RUNNING", 10, "vault2 running")
        with open(os.path.join(sp.state_dir, "status.json")) as f:
            answers.append(f.read())
        for text in answers:
            assert PASSWORD not in text and API_KEY not in text, text[:500]
        # The plugin saw the real value (its log line has the length only).
        assert "password of %d bytes" % len(PASSWORD) in sp.log()
    log = sp.log()
    assert PASSWORD not in log and API_KEY not in log, "a secret reached the log"
    # connectors.json keeps the real values so a restart works (state.dir is 0700).
    with open(os.path.join(sp.state_dir, "connectors.json")) as f:
        stored = json.load(f)["connectors"]["vault2"]["config"]
    assert stored["password"] == PASSWORD + "x"
    assert (os.stat(sp.state_dir).st_mode & 0o077) == 0, oct(os.stat(sp.state_dir).st_mode)


if __name__ == "__main__":
    main(globals())
