#!/usr/bin/env python3
"""plugin-file_source: file_source replays and follows a file, resumes from
its committed offset, survives truncation and rotation, and fails clearly on
a missing file or an overlong line, and replays at records.per.second.
Output is checked through file_sink."""
import json
import os
import tempfile
import time

import spoketest
from spoketest import (PLUGIN_DIR, Spoke, metric, q, read_bytes, run_spoke, validate, wait_for,
                       write_bytes)

TIMEOUT = 60


def copy_yaml(src, dst, extra=""):
    """file_source(src) -> topic lines -> file_sink(dst)."""
    return ("connectors:\n"
            "  - name: replay\n"
            "    connector.class: file_source\n"
            "    topic: lines\n"
            "    file: %s\n"
            "    poll.interval.ms: 20\n"
            "%s"
            "  - name: out\n"
            "    connector.class: file_sink\n"
            "    topics: lines\n"
            "    file: %s\n" % (q(src), extra, q(dst)))


def sample_lines(n, start=0):
    """Varied NDJSON lines: unicode, escapes, odd spacing (kept verbatim)."""
    out = []
    for i in range(start, start + n):
        if i % 7 == 0:
            out.append('{ "i" : %d , "s" : "caf\u00e9 \\"q\\" \\\\n" }' % i)
        elif i % 11 == 0:
            out.append('{"i":%d,"pad":"%s"}' % (i, "x" * (i % 5000)))
        else:
            out.append('{"i":%d,"station":"V\u00e9lib %d","bikes":%d}' % (i, i, i % 40))
    return [line.encode() for line in out]


def ndjson(lines):
    return b"".join(line + b"\n" for line in lines)


# ---------------------------------------------------------------------------

def test_unknown_property_rejected():
    good = ("connectors:\n"
            "  - name: replay\n"
            "    connector.class: file_source\n"
            "    topic: lines\n"
            "    file: /tmp/in.ndjson\n")
    r = validate(good)
    assert r.returncode == 0, "valid config refused: %s" % r.stderr
    r = validate(good + "    poll.intervall.ms: 100\n")
    assert r.returncode == 1, "misspelled key accepted (rc %d)" % r.returncode
    assert "poll.intervall.ms" in r.stderr, "error does not name the key: %r" % r.stderr


def test_required_and_bounds_checked():
    r = validate("connectors:\n"
                 "  - name: replay\n"
                 "    connector.class: file_source\n"
                 "    topic: lines\n")
    assert r.returncode == 1 and "file" in r.stderr, "missing `file` accepted: %r" % r.stderr
    r = validate("connectors:\n"
                 "  - name: replay\n"
                 "    connector.class: file_source\n"
                 "    topic: lines\n"
                 "    file: /tmp/in.ndjson\n"
                 "    max.line.bytes: 8\n")
    assert r.returncode == 1 and "max.line.bytes" in r.stderr, \
        "out-of-range max.line.bytes accepted: %r" % r.stderr


def test_rate_limits_the_replay():
    """records.per.second: at no moment has the sink more records than the
    rate allows since before the host started (a tenth of a second's worth
    at once, plus one), and the whole file takes at least the time the rate
    gives it; every line arrives, in order."""
    rate, n = 100, 300
    burst = rate // 10
    r = validate("connectors:\n  - name: replay\n    connector.class: file_source\n"
                 "    topic: lines\n    file: /tmp/in.ndjson\n    records.per.second: -1\n")
    assert r.returncode == 1 and "records.per.second" in r.stderr, r.stderr
    with tempfile.TemporaryDirectory(prefix="spoke-fs-") as tmp:
        src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        lines = sample_lines(n)
        write_bytes(src, ndjson(lines))
        t0 = time.monotonic()
        with Spoke(copy_yaml(src, dst, "    records.per.second: %d\n" % rate), tmp=tmp):
            seen = []

            def all_there():
                got = read_bytes(dst).count(b"\n")
                seen.append((time.monotonic(), got))
                return got >= n
            wait_for(all_there, TIMEOUT, "all %d lines copied" % n, interval=0.02)
            for t, got in seen:
                allowed = burst + 1 + rate * (t - t0)
                assert got <= allowed, "%d records %.2f s after the start: the rate allows %d" % (
                    got, t - t0, allowed)
            took = seen[-1][0] - t0
            assert took >= (n - burst - 1) / rate, "%d records in %.2f s at %d/s" % (n, took, rate)
            assert read_bytes(dst) == ndjson(lines)


def test_copy_exact():
    with tempfile.TemporaryDirectory(prefix="spoke-fs-") as tmp:
        src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        lines = sample_lines(3000)
        data = ndjson(lines)
        write_bytes(src, data)
        with Spoke(copy_yaml(src, dst, "    read.batch.lines: 500\n"), tmp=tmp) as s:
            s.wait_state("replay", "RUNNING")
            wait_for(lambda: len(read_bytes(dst)) >= len(data), TIMEOUT,
                     "all %d lines copied to %s" % (len(lines), dst))
            assert read_bytes(dst) == data, "output differs from input"
            wait_for(lambda: metric(s, "replay", "lines_read") == len(lines), TIMEOUT,
                     "lines_read == %d" % len(lines))
            wait_for(lambda: metric(s, "replay", "bytes_read") == len(data), TIMEOUT,
                     "bytes_read == %d" % len(data))
        assert read_bytes(dst) == data, "output changed after stop"


def test_empty_lines_and_crlf():
    with tempfile.TemporaryDirectory(prefix="spoke-fs-") as tmp:
        src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        write_bytes(src, b'{"a":1}\n\n{"b":2}\r\n\n\n{"c":3}\n')
        with Spoke(copy_yaml(src, dst), tmp=tmp) as s:
            want = b'{"a":1}\n{"b":2}\n{"c":3}\n'
            wait_for(lambda: read_bytes(dst) == want, TIMEOUT,
                     "three records, empty lines skipped and CR removed")
            wait_for(lambda: metric(s, "replay", "lines_read") == 3, TIMEOUT, "lines_read == 3")


def test_resume_after_restart_does_not_reemit():
    with tempfile.TemporaryDirectory(prefix="spoke-fs-") as tmp:
        src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        first = sample_lines(200)
        write_bytes(src, ndjson(first))
        with Spoke(copy_yaml(src, dst), tmp=tmp):
            wait_for(lambda: read_bytes(dst) == ndjson(first), TIMEOUT, "first 200 lines copied")

        more = sample_lines(100, start=200)
        write_bytes(src, ndjson(more), mode="ab")
        want = ndjson(first + more)
        with Spoke(copy_yaml(src, dst), tmp=tmp) as s:
            # file_source reads in order: once the last new line is out, any
            # re-emitted old line would already be in the file.
            wait_for(lambda: read_bytes(dst).endswith(ndjson(more[-1:])), TIMEOUT,
                     "the appended lines copied after the restart")
            got = read_bytes(dst)
            assert got == want, "after restart: %d lines, want %d (old lines re-emitted?)" % (
                got.count(b"\n"), want.count(b"\n"))
            wait_for(lambda: metric(s, "replay", "lines_read") == len(more), TIMEOUT,
                     "lines_read == %d after the restart" % len(more))


def test_partial_line_waits_for_newline():
    with tempfile.TemporaryDirectory(prefix="spoke-fs-") as tmp:
        src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        write_bytes(src, b'{"a":1}\n{"b":')
        with Spoke(copy_yaml(src, dst), tmp=tmp) as s:
            wait_for(lambda: read_bytes(dst) == b'{"a":1}\n', TIMEOUT, "the complete line copied")
            # The partial line has been read, yet only the complete one is out.
            wait_for(lambda: metric(s, "replay", "bytes_read") == 13, TIMEOUT,
                     "the partial line read (bytes_read == 13)")
            assert metric(s, "replay", "lines_read") == 1, "a partial line was emitted"
            write_bytes(src, b'2}\n{"c":3}\n', mode="ab")
            wait_for(lambda: read_bytes(dst) == b'{"a":1}\n{"b":2}\n{"c":3}\n', TIMEOUT,
                     "the completed line emitted whole")


def test_truncation_restarts_from_zero():
    with tempfile.TemporaryDirectory(prefix="spoke-fs-") as tmp:
        src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        old = sample_lines(50)
        write_bytes(src, ndjson(old))
        with Spoke(copy_yaml(src, dst), tmp=tmp) as s:
            wait_for(lambda: read_bytes(dst) == ndjson(old), TIMEOUT, "the original lines copied")
            new = [b'{"after":"truncate","n":1}', b'{"after":"truncate","n":2}']
            write_bytes(src, ndjson(new))  # truncates, then writes less than before
            wait_for(lambda: read_bytes(dst) == ndjson(old + new), TIMEOUT,
                     "the new lines read from byte 0 after the truncation")
            wait_for(lambda: "truncated" in s.log(), TIMEOUT, "a warning about the truncation")
            s.wait_state("replay", "RUNNING")


def test_rotation_follows_new_file():
    with tempfile.TemporaryDirectory(prefix="spoke-fs-") as tmp:
        src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        old = sample_lines(30)
        write_bytes(src, ndjson(old))
        with Spoke(copy_yaml(src, dst), tmp=tmp) as s:
            wait_for(lambda: read_bytes(dst) == ndjson(old), TIMEOUT, "the original lines copied")
            os.rename(src, src + ".1")
            new = sample_lines(40, start=1000)
            write_bytes(src + ".tmp", ndjson(new))
            os.rename(src + ".tmp", src)
            wait_for(lambda: read_bytes(dst) == ndjson(old + new), TIMEOUT,
                     "the rotated-in file read from the start")
            wait_for(lambda: "rotated" in s.log(), TIMEOUT, "a warning about the rotation")


def test_missing_file_fails_with_reason():
    with tempfile.TemporaryDirectory(prefix="spoke-fs-") as tmp:
        src = os.path.join(tmp, "does-not-exist.ndjson")
        yaml = ("connectors:\n"
                "  - name: replay\n"
                "    connector.class: file_source\n"
                "    topic: lines\n"
                "    file: %s\n" % q(src))
        with Spoke(yaml, tmp=tmp) as s:
            s.wait_state("replay", "FAILED")
            trace = s.connector("replay").get("trace") or ""
            want = "cannot open %s: No such file or directory" % src
            assert want in trace, "trace %r lacks %r" % (trace, want)


def test_overlong_line_fails_with_position():
    with tempfile.TemporaryDirectory(prefix="spoke-fs-") as tmp:
        src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        write_bytes(src, b'{"ok":1}\n' + b'{"long":"' + b"y" * 100 + b'"}\n{"never":1}\n')
        with Spoke(copy_yaml(src, dst, "    max.line.bytes: 64\n"), tmp=tmp) as s:
            s.wait_state("replay", "FAILED")
            trace = s.connector("replay").get("trace") or ""
            want = "line at byte 9 is longer than max.line.bytes (64)"
            assert want in trace, "trace %r lacks %r" % (trace, want)
            assert b"never" not in read_bytes(dst), "a line after the long one was emitted"


if __name__ == "__main__":
    spoketest.main(globals())
