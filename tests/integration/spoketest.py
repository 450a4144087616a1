"""spoketest - drive build/spoke from integration tests.

Waiting is always polling a condition against a deadline (wait_for), never a
fixed sleep. Every run checks the host's exit code and fails on any
AddressSanitizer / UndefinedBehaviorSanitizer / LeakSanitizer report.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

SOURCE_DIR = os.environ.get("SPOKE_SOURCE_DIR",
                            os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD_DIR = os.environ.get("SPOKE_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
BIN = os.environ.get("SPOKE_BIN", os.path.join(BUILD_DIR, "spoke"))
PLUGIN_DIR = os.environ.get("SPOKE_PLUGIN_DIR", os.path.join(BUILD_DIR, "plugins"))
TEST_PLUGIN_DIR = os.environ.get("SPOKE_TEST_PLUGIN_DIR", os.path.join(BUILD_DIR, "tests", "plugins"))
SHARED_DATA = os.path.abspath(os.path.join(SOURCE_DIR, "..", "shared", "data"))

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer", "SUMMARY: AddressSanitizer")


def env():
    e = dict(os.environ)
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=86")
    e.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1:exitcode=87")
    return e


class Skip(Exception):
    """Raised by a test that cannot run here (e.g. ../shared/data absent)."""


def wait_for(pred, timeout=30.0, what="condition", interval=0.01):
    """Polls pred() until it returns a truthy value (returned) or the deadline
    passes. what: a string, or a callable giving it at the deadline (so it
    can describe the state the wait ended in)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout, what() if callable(what) else what))
        time.sleep(interval)


def check_sanitizers(text, what):
    for m in SANITIZER_MARKERS:
        if m in text:
            raise AssertionError("%s: sanitizer report:\n%s" % (what, text[-6000:]))


def run_spoke(*args, cwd=None, timeout=60):
    """Runs a one-shot spoke command; returns CompletedProcess (text)."""
    p = subprocess.run([BIN] + [str(a) for a in args], capture_output=True, text=True,
                       cwd=cwd, env=env(), timeout=timeout)
    check_sanitizers(p.stderr, "spoke " + " ".join(map(str, args)))
    return p


def free_port():
    """A TCP port free on 127.0.0.1 right now (the kernel's pick)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(json.dumps(str(x)) for x in v) + "]"
    return json.dumps(str(v))


def count_lines(path):
    """Newline-terminated lines of path (a sink's output): a partial last
    line, still being written, is not counted."""
    n = 0
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                n += chunk.count(b"\n")
    except FileNotFoundError:
        pass
    return n


class Spoke:
    """A spoke process on a temp dir: `with Spoke(yaml) as sp: ...`."""

    def __init__(self, connectors_yaml, tmp=None, extra_worker=None, start=True, args=()):
        self.tmp = tmp or tempfile.mkdtemp(prefix="spoke-it-")
        self.state_dir = os.path.join(self.tmp, "state")
        self.config = os.path.join(self.tmp, "connectors.yaml")
        self.args = list(args)
        self.proc = None
        self.runs = 0
        self.cpus = None  # a set of CPUs: the affinity mask spoke starts with
        worker = {
            "plugin.path": [PLUGIN_DIR, TEST_PLUGIN_DIR],
            "state.dir": self.state_dir,
            "log.level": "info",
            "status.interval.ms": 100,
            "offset.flush.interval.ms": 100,
            # Every spoke gets its own REST port, so tests run in parallel.
            "listeners": "http://127.0.0.1:%d" % free_port(),
        }
        # The port picked here, unless the test gives its own listeners.
        self.own_listeners = worker["listeners"]
        worker.update(extra_worker or {})
        self.worker = worker
        self.write_config(connectors_yaml)
        if start:
            self.start()

    def write_config(self, connectors_yaml):
        self.connectors_yaml = connectors_yaml
        lines = ["worker:"] + ["  %s: %s" % (k, yaml_scalar(v)) for k, v in self.worker.items()]
        text = "\n".join(lines) + "\n" + connectors_yaml.strip("\n") + "\n"
        tmp = self.config + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config)

    def start(self):
        """Starts spoke. When it listens on the port free_port() picked, waits
        until it holds that port or exits: the port was free when picked,
        but another process (a client's ephemeral port, another test) may
        take it before spoke binds; spoke then exits "Address already in
        use" and is started again on a new port."""
        for _ in range(5):
            self._launch()
            port = self._own_port()
            if port is None:
                return self
            wait_for(lambda: not self.alive() or self._listening(port), 60,
                     "spoke to listen on port %d or exit" % port)
            if self.alive() or "Address already in use" not in self.log():
                return self
            self._close()
            self.worker["listeners"] = self.own_listeners = "http://127.0.0.1:%d" % free_port()
            self.write_config(self.connectors_yaml)
        return self

    def _own_port(self):
        """The port spoke's REST API should hold, when it is the one
        free_port() picked for it (not a test's own listeners or --listen)."""
        if (self.worker["listeners"] != self.own_listeners or "--listen" in self.args
                or str(self.worker.get("rest.enable", "true")).lower() == "false"):
            return None
        return int(self.own_listeners.rsplit(":", 1)[1])

    def _listening(self, port):
        """True when this spoke process holds a socket listening on port
        (read from /proc: no connection is made to it)."""
        inodes = set()
        try:
            with open("/proc/net/tcp") as f:
                for line in f.readlines()[1:]:
                    col = line.split()
                    if col[3] == "0A" and int(col[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add("socket:[%s]" % col[9])
            fd_dir = "/proc/%d/fd" % self.proc.pid
            for fd in os.listdir(fd_dir):
                try:
                    if os.readlink(os.path.join(fd_dir, fd)) in inodes:
                        return True
                except OSError:
                    pass
        except OSError:
            pass
        return False

    def _launch(self):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.runs += 1
        self.stdout_path = os.path.join(self.tmp, "stdout.%d" % self.runs)
        self.stderr_path = os.path.join(self.tmp, "stderr.%d" % self.runs)
        # A fresh status file per run, so waits never see the previous run's.
        try:
            os.unlink(os.path.join(self.state_dir, "status.json"))
        except FileNotFoundError:
            pass
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        cpus = self.cpus
        self.proc = subprocess.Popen([BIN, "run", "-c", self.config] + self.args,
                                     stdout=self._out, stderr=self._err, cwd=self.tmp, env=env(),
                                     preexec_fn=(lambda: os.sched_setaffinity(0, cpus))
                                     if cpus else None)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if self.proc and self.proc.poll() is None:
            if et is None:
                rc = self.stop()
                assert rc == 0, "spoke exited with %d:\n%s" % (rc, self.log()[-4000:])
            else:
                self.kill()
        if et is not None:
            sys.stderr.write("---- spoke stderr (last run) ----\n%s\n" % self.log()[-4000:])
        return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def status(self):
        try:
            with open(os.path.join(self.state_dir, "status.json")) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def connector(self, name):
        return self.status().get("connectors", {}).get(name, {})

    def wait_for(self, pred, timeout, what):
        """wait_for(), failing at once (with the log) if spoke exits first."""
        def ok():
            if not self.alive():
                raise AssertionError("spoke exited (%s) while waiting for %s:\n%s"
                                     % (self.proc.returncode, what() if callable(what) else what,
                                        self.log()[-3000:]))
            return pred()
        return wait_for(ok, timeout, what)

    def wait_state(self, name, state, timeout=20):
        self.wait_for(lambda: self.connector(name).get("state") == state, timeout,
                      lambda: "connector %s to be %s (now %s)"
                      % (name, state, self.connector(name).get("state")))
        return self.connector(name)

    def offsets(self):
        try:
            with open(os.path.join(self.state_dir, "offsets.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout=60):
        """SIGTERM, wait, check sanitizers; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("spoke did not stop within %ss:\n%s" % (timeout, self.log()[-3000:]))
        self._close()
        check_sanitizers(self.log(), "spoke run")
        return rc

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self._close()

    def _close(self):
        for f in (self._out, self._err):
            try:
                f.close()
            except Exception:
                pass

    def log(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except (AttributeError, FileNotFoundError):
            return ""

    def stdout_text(self):
        try:
            with open(self.stdout_path, errors="replace") as f:
                return f.read()
        except (AttributeError, FileNotFoundError):
            return ""

    def stdout_lines(self):
        """The complete lines on stdout so far: a trailing line the host is
        still writing (a long record goes out in several writes) is left
        out, so a parser never sees half of it."""
        return self.stdout_text().split("\n")[:-1]


# ---- helpers shared by the test modules ----

def q(text):
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text)


def validate(connectors_text):
    """Runs `spoke validate` on a complete connectors.yaml."""
    with tempfile.TemporaryDirectory(prefix="spoke-validate-") as tmp:
        path = os.path.join(tmp, "connectors.yaml")
        with open(path, "w") as f:
            f.write("worker:\n  plugin.path: [%s]\n  state.dir: %s\n"
                    % (q(PLUGIN_DIR), q(os.path.join(tmp, "state"))))
            f.write(connectors_text)
        return run_spoke("validate", "-c", path)


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def complete_lines(path):
    """The newline-terminated lines of a file another process is still
    writing; a trailing partial line (a write in progress) is left out."""
    return [x for x in read_bytes(path).split(b"\n")[:-1] if x.strip()]


def validate_config(tmp, connector_text, plugin_dirs=None):
    """Writes tmp/c.yaml (a worker section, then "connectors:" and
    connector_text) and runs `spoke validate` on it: (path, lines, result)."""
    path = os.path.join(tmp, "c.yaml")
    with open(path, "w") as f:
        f.write("worker:\n  plugin.path: [%s]\n  state.dir: %s\n" % (
            ", ".join(q(d) for d in (plugin_dirs or [PLUGIN_DIR])),
            q(os.path.join(tmp, "state"))))
        f.write("connectors:\n" + connector_text)
    with open(path) as f:
        lines = f.readlines()
    return path, lines, run_spoke("validate", "-c", path)


def expect_check_refuses(tmp, connector_text, name, key, want, reason_first=False):
    """A config whose plugin check refuses it: `spoke validate` reports the
    one error, with want, at the line of key (at the connector when it has
    no such key), and `spoke run` refuses the file. See expect_checks_refuse
    (reason_first, the result)."""
    return expect_checks_refuse(tmp, connector_text, [(name, key, want)], reason_first)


def expect_checks_each_refuse(head, name, cases, allowed):
    """Each (key, extra, want) of cases: the connector head + extra is
    refused by its plugin's check at key (expect_check_refuses); then head +
    allowed validates."""
    with tempfile.TemporaryDirectory(prefix="spoke-check-") as tmp:
        for key, extra, want in cases:
            expect_check_refuses(tmp, head + extra, name, key, want)
        p = validate_config(tmp, head + allowed)[2]
        assert p.returncode == 0, p


def expect_checks_refuse(tmp, connector_text, errors, reason_first=False):
    """A config whose plugin checks refuse it, errors being the
    [(connector name, key, want)] they find: `spoke validate` reports
    exactly these errors, one line each holding want, at the line of key in
    that connector (at the connector's line when it has no such key), and
    `spoke run` refuses the file with every want. reason_first: want is the
    start of the reason (right after "connector 'name': "). Returns (path,
    the validate result, the run result) for the caller's own checks."""
    path, lines, p = validate_config(tmp, connector_text)
    assert p.returncode == 1, "%s: %r" % ([e[1] for e in errors], p)
    out = p.stderr.splitlines()
    for name, key, want in errors:
        first = lines.index("  - name: %s\n" % name)
        end = next((i for i in range(first + 1, len(lines)) if not lines[i].startswith("    ")),
                   len(lines))
        at = [i + 1 for i in range(first + 1, end) if lines[i].startswith("    %s:" % key)]
        prefix = ("%s:%d:5: connector '%s': " % (path, at[0], name) if at else
                  "%s:%d:" % (path, first + 1))
        reason = "connector '%s': " % name + (want if reason_first else "")
        mine = [l for l in out if l.startswith(prefix) and reason in l and want in l]
        assert len(mine) == 1, "%s: %r lacks %r, %r and %r" % (key, p.stderr, prefix, reason, want)
    assert len(out) == len(errors) + 1 and out[-1] == "%s: invalid: %d error%s" % (
        path, len(errors), "" if len(errors) == 1 else "s"), \
        "%d error(s) expected: %r" % (len(errors), p.stderr)
    r = run_spoke("run", "-c", path, cwd=tmp)
    assert r.returncode == 1 and all(e[2] in r.stderr for e in errors), \
        "%s: %r" % ([e[1] for e in errors], r)
    return path, p, r


def write_bytes(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)


def metric(s, conn, name):
    """A metric the plugin reported (status.json: metrics.plugin); None while
    it is not there yet."""
    return ((s.connector(conn).get("metrics") or {}).get("plugin") or {}).get(name)


def write_seq(path, n, start=0, mode="w"):
    """Writes n NDJSON lines {"seq": i} for i in [start, start + n)."""
    with open(path, mode) as f:
        for i in range(start, start + n):
            f.write('{"seq":%d}\n' % i)


def main(ns):
    """Runs every test_* function of a module; prints 'N passed, N failed'."""
    if not os.path.exists(BIN):
        print("spoke binary not found at %s (build first)" % BIN)
        sys.exit(1)
    tests = [(k, v) for k, v in ns.items() if k.startswith("test_") and callable(v)]
    only = os.environ.get("SPOKE_TEST_ONLY")
    passed = failed = skipped = 0
    for name, fn in tests:
        if only and only not in name:
            continue
        t0 = time.monotonic()
        try:
            fn()
            passed += 1
            print("PASS %s (%.2fs)" % (name, time.monotonic() - t0), flush=True)
        except Skip as e:
            skipped += 1
            print("SKIP %s: %s" % (name, e), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s (%.2fs)" % (name, time.monotonic() - t0), flush=True)
            traceback.print_exc()
            sys.stdout.flush()
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    sys.exit(1 if failed or passed == 0 and skipped == 0 else 0)


CERT_PASSWORD = "spoke test pass"


def make_certs(d):
    """Test certificates in d, made with openssl: a CA ("ca"), a server
    certificate it signed for the IP address 127.0.0.1 only ("server"), a
    client certificate it signed ("client", CN spoke-client), and a second CA
    that signed nothing here ("other"). Returns {name: (pem path, key path)},
    with also:
    - "client_pkcs8", "client_trad": the client certificate with its key
      encrypted with CERT_PASSWORD, as PKCS#8 and in OpenSSL's traditional
      form;
    - "crl_server" (the CA's revocation list revoking "server"), "crl_none"
      (the CA's, revoking nothing), "crl_other" (other's), "crl_expired"
      (the CA's, its next update two days ago): (path, None)."""
    openssl = shutil.which("openssl")
    if not openssl:
        raise Skip("openssl is not installed (apt-get install openssl)")

    def run(*args):
        p = subprocess.run([openssl] + list(args), capture_output=True, text=True, cwd=d)
        assert p.returncode == 0, "openssl %s: %s" % (args[0], p.stderr)

    out = {}
    for ca in ("ca", "other"):
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
            "-subj", "/CN=spoke test %s" % ca)
        out[ca] = (os.path.join(d, ca + ".pem"), os.path.join(d, ca + ".key"))
    for name, cn, ext in (("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\n"),
                          ("client", "spoke-client", "extendedKeyUsage=clientAuth\n")):
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write(ext)
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn)
        run("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext")
        out[name] = (os.path.join(d, name + ".pem"), os.path.join(d, name + ".key"))
    passout = "pass:" + CERT_PASSWORD
    run("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", "client.key", "-out",
        "client.pkcs8.key", "-passout", passout)
    run("ec", "-aes256", "-in", "client.key", "-out", "client.trad.key", "-passout", passout)
    out["client_pkcs8"] = (out["client"][0], os.path.join(d, "client.pkcs8.key"))
    out["client_trad"] = (out["client"][0], os.path.join(d, "client.trad.key"))
    # Revocation lists: openssl ca keeps what it revoked in a database.
    for ca in ("ca", "other"):
        for f, text in (("%s.index" % ca, ""), ("%s.crlnumber" % ca, "01\n")):
            with open(os.path.join(d, f), "w") as fh:
                fh.write(text)
        with open(os.path.join(d, ca + ".cnf"), "w") as f:
            f.write("[ca]\ndefault_ca = c\n[c]\ndatabase = %s.index\ncrlnumber = "
                    "%s.crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\n" % (ca, ca))

    def gencrl(ca, name, *args):
        run("ca", "-config", ca + ".cnf", "-keyfile", ca + ".key", "-cert", ca + ".pem",
            "-gencrl", "-out", name + ".pem", *args)
        out[name] = (os.path.join(d, name + ".pem"), None)

    gencrl("ca", "crl_none")
    stamp = lambda days: time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() - days * 86400))
    gencrl("ca", "crl_expired", "-crl_lastupdate", stamp(3), "-crl_nextupdate", stamp(2))
    gencrl("other", "crl_other")
    run("ca", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.pem", "-revoke",
        "server.pem")
    gencrl("ca", "crl_server")
    return out


def pem(path):
    with open(path) as f:
        return f.read()
