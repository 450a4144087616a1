#!/usr/bin/env python3
"""plugin-file_sink: file_sink writes values verbatim as NDJSON, compacts a
JSON value that holds a line break, refuses a non-JSON one, appends to an
existing file (ending a torn last line first) and fails clearly when it
cannot open its file. Records are produced with file_source."""
import json
import os
import tempfile

import spoketest
from spoketest import (PLUGIN_DIR, Spoke, metric, q, read_bytes, run_spoke, validate, wait_for,
                       write_bytes)

TIMEOUT = 60


def pipeline(src, dst, sink_extra=""):
    """file_source(src) -> topic lines -> file_sink(dst)."""
    return ("connectors:\n"
            "  - name: replay\n"
            "    connector.class: file_source\n"
            "    topic: lines\n"
            "    file: %s\n"
            "    poll.interval.ms: 20\n"
            "  - name: out\n"
            "    connector.class: file_sink\n"
            "    topics: lines\n"
            "    file: %s\n"
            "%s" % (q(src), q(dst), sink_extra))


# ---------------------------------------------------------------------------

def test_unknown_property_rejected():
    good = ("connectors:\n"
            "  - name: out\n"
            "    connector.class: file_sink\n"
            "    topics: lines\n"
            "    file: /tmp/out.ndjson\n")
    r = validate(good)
    assert r.returncode == 0, "valid config refused: %s" % r.stderr
    r = validate(good + "    fsynk: false\n")
    assert r.returncode == 1, "misspelled key accepted (rc %d)" % r.returncode
    assert "fsynk" in r.stderr, "error does not name the key: %r" % r.stderr


def test_bool_checked():
    r = validate("connectors:\n"
                 "  - name: out\n"
                 "    connector.class: file_sink\n"
                 "    topics: lines\n"
                 "    file: /tmp/out.ndjson\n"
                 "    fsync: maybe\n")
    assert r.returncode == 1 and "fsync" in r.stderr, "fsync: maybe accepted: %r" % r.stderr


def test_exact_ndjson():
    # Odd spacing and escapes must survive: values are written verbatim.
    lines = [('{ "n" : %d, "s": "\u00e9t\u00e9 \\u00e9 \\"x\\"" , "l":[1, 2.50, null] }' % i).encode()
             for i in range(1000)]
    data = b"".join(line + b"\n" for line in lines)
    for fsync in ("true", "false"):
        with tempfile.TemporaryDirectory(prefix="spoke-fk-") as tmp:
            src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
            write_bytes(src, data)
            with Spoke(pipeline(src, dst, "    fsync: %s\n" % fsync), tmp=tmp) as s:
                wait_for(lambda: len(read_bytes(dst)) >= len(data), TIMEOUT,
                         "1000 records written (fsync %s)" % fsync)
                assert read_bytes(dst) == data, "output is not the input verbatim (fsync %s)" % fsync
                wait_for(lambda: metric(s, "out", "records_written") == len(lines), TIMEOUT,
                         "records_written == %d" % len(lines))
                wait_for(lambda: metric(s, "out", "bytes_written") == len(data), TIMEOUT,
                         "bytes_written == %d" % len(data))
            assert os.stat(dst).st_mode & 0o777 == 0o644 & ~current_umask(), "file mode"


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_value_with_line_break_is_compacted():
    # file_source cuts lines at \n, so a value can hold a \r: the sink must
    # not write it raw (a reader would see a line break) but as compact JSON.
    with tempfile.TemporaryDirectory(prefix="spoke-fk-") as tmp:
        src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        write_bytes(src, b'{"a":1}\n'
                         b'{"b":\r 2,\r\t"c": [1,\r 2],"d":"x y"}\n'
                         b'{"e" : 3 }\r\r\n'
                         b'"str"\n')
        with Spoke(pipeline(src, dst), tmp=tmp) as s:
            want = b'{"a":1}\n{"b":2,"c":[1,2],"d":"x y"}\n{"e":3}\n"str"\n'
            wait_for(lambda: len(read_bytes(dst)) >= len(want), TIMEOUT, "four records written")
            assert read_bytes(dst) == want, "got %r" % read_bytes(dst)
            for line in read_bytes(dst).splitlines():
                json.loads(line)
            s.wait_state("out", "RUNNING")


def test_value_with_line_break_not_json_fails():
    with tempfile.TemporaryDirectory(prefix="spoke-fk-") as tmp:
        src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        write_bytes(src, b'{"a":1}\nnot\rjson\n{"a":2}\n')
        with Spoke(pipeline(src, dst), tmp=tmp) as s:
            s.wait_state("out", "FAILED")
            trace = s.connector("out").get("trace") or ""
            assert "value contains a newline and is not JSON" in trace, "trace: %r" % trace
            assert b"not" not in read_bytes(dst), "the bad value was written"

    with tempfile.TemporaryDirectory(prefix="spoke-fk-") as tmp:
        src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        write_bytes(src, b'{"a":1}\nnot\rjson\n{"a":2}\n')
        with Spoke(pipeline(src, dst, "    errors.tolerance: all\n"), tmp=tmp) as s:
            wait_for(lambda: read_bytes(dst) == b'{"a":1}\n{"a":2}\n', TIMEOUT,
                     "the good records written, the bad one skipped")
            s.wait_state("out", "RUNNING")


def test_appends_and_ends_torn_line():
    with tempfile.TemporaryDirectory(prefix="spoke-fk-") as tmp:
        src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        write_bytes(src, b'{"new":1}\n{"new":2}\n')
        write_bytes(dst, b'{"old":1}\n{"torn":')
        with Spoke(pipeline(src, dst), tmp=tmp) as s:
            want = b'{"old":1}\n{"torn":\n{"new":1}\n{"new":2}\n'
            wait_for(lambda: len(read_bytes(dst)) >= len(want), TIMEOUT, "records appended")
            assert read_bytes(dst) == want, "got %r" % read_bytes(dst)
            assert "does not end with a newline" in s.log(), "no warning about the torn line"


def test_unopenable_file_fails_with_reason():
    with tempfile.TemporaryDirectory(prefix="spoke-fk-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        dst = os.path.join(tmp, "no-such-dir", "out.ndjson")
        write_bytes(src, b'{"a":1}\n')
        with Spoke(pipeline(src, dst), tmp=tmp) as s:
            s.wait_state("out", "FAILED")
            trace = s.connector("out").get("trace") or ""
            want = "cannot open %s: No such file or directory" % dst
            assert want in trace, "trace %r lacks %r" % (trace, want)


if __name__ == "__main__":
    spoketest.main(globals())
