#!/usr/bin/env python3
"""plugin-file_sink: file_sink writes values verbatim as NDJSON, puts a JSON
value that holds a line break on one line without changing it (any JSON, not
only what a parser can represent), refuses a non-JSON one, writes key and
value with format keyed (tombstones name their key), appends to an existing
file (ending a torn last line first) and fails clearly when it cannot open
its file. Records are produced with file_source, and with velib_source for
keys and tombstones."""
import http.server
import json
import os
import tempfile
import threading

import spoketest
from spoketest import (PLUGIN_DIR, Spoke, complete_lines, metric, q, read_bytes, run_spoke,
                       validate, wait_for, write_bytes)

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


# Valid JSON values holding line breaks, each a template: %s is where a line
# break goes (between tokens, where it is whitespace). Several are JSON a
# parser such as jansson refuses or changes: a double out of range, integers
# beyond 64 bits, a NUL escape, a number whose shortest double form differs
# from its text, deep nesting. (Not at the end of a value: file_source
# takes a \r right before the \n as part of the line ending.)
BREAK_VALUES = [
    '{"x":0.1,%s"y":1}',
    '{"a":1,%s"b":18446744073709551615, "c": -123456789012345678901234567890}',
    '{"a":%s1e400,"b":-1E-400, "c":[4.50, 0.0e0]}',
    '{"k":"v\\u0000w",%s"n":1}',
    '%s"str"',
    '%s' + '[' * 100 + '%s' + ']' * 100,
    '{ "e" :%s3 %s}',
    '{"s": "tab\\tand \\"quote\\" \\r\\n", %s"t":[true,%sfalse,%snull], "u":{}}',
]


def exact_tokens(text):
    """A JSON text parsed with its numbers kept as their text: equal
    results mean the same value, number spelling included."""
    return json.loads(text, parse_float=str, parse_int=str, parse_constant=str, strict=False)


def test_value_with_line_break_kept_exact():
    # file_source cuts lines at \n (and \r\n), so a value can hold a \r: the
    # sink must not write it raw (a reader would see a line break) and must
    # not change the value either. A line break between tokens becomes a
    # space; one inside a string (not JSON, but lenient producers write
    # them, like the raw tab left as it is) becomes the escape \r.
    values = [t.replace("%s", "\r").encode() for t in BREAK_VALUES]
    want = [t.replace("%s", " ").encode() for t in BREAK_VALUES]
    values.append('{"s":"a%sb%sc\td"}'.replace("%s", "\r").encode())
    want.append('{"s":"a%sb%sc\td"}'.replace("%s", "\\r").encode())
    values.append(b'{"plain":1}')
    want.append(b'{"plain":1}')
    with tempfile.TemporaryDirectory(prefix="spoke-fk-") as tmp:
        src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        write_bytes(src, b"".join(v + b"\n" for v in values))
        data = b"".join(w + b"\n" for w in want)
        with Spoke(pipeline(src, dst), tmp=tmp) as s:
            s.wait_for(lambda: metric(s, "out", "records_written") == len(values) or
                       s.connector("out").get("state") == "FAILED", TIMEOUT,
                       "%d records written" % len(values))
            assert s.connector("out").get("state") == "RUNNING", s.connector("out")
            assert read_bytes(dst) == data, "got %r" % read_bytes(dst)
            lines = read_bytes(dst).split(b"\n")
            for value, line in zip(values, lines):
                assert exact_tokens(line) == exact_tokens(value), line
            for line in lines[:len(BREAK_VALUES)]:
                json.loads(line)  # valid JSON in, valid (strict) JSON out


def test_value_with_line_break_not_json_fails():
    # (value, why, byte offset): the error says what is wrong and where.
    cases = [(b"not\rjson", "unexpected character", 0),
             (b'{"a":1}\r{"b":2}', "text after the value", 8),
             (b'{"a":\r1', "unexpected end", 7),
             (b'{"a":01\r}', "expected ',' or '}'", 6),
             (b'["\\x"\r]', "bad escape in a string", 2),
             (b'\r"open', "unterminated string", 1),
             (b'\r \t', "no value", 3)]
    for value, why, at in cases:
        with tempfile.TemporaryDirectory(prefix="spoke-fk-") as tmp:
            src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
            write_bytes(src, b'{"a":1}\n' + value + b'\n{"a":2}\n')
            with Spoke(pipeline(src, dst), tmp=tmp) as s:
                s.wait_state("out", "FAILED")
                trace = s.connector("out").get("trace") or ""
                want = "value contains a line break and is not JSON (%s at byte %d)" % (why, at)
                assert want in trace, "%r: trace %r lacks %r" % (value, trace, want)
                assert read_bytes(dst) in (b"", b'{"a":1}\n'), "the bad value was written"

    with tempfile.TemporaryDirectory(prefix="spoke-fk-") as tmp:
        src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        write_bytes(src, b'{"a":1}\nnot\rjson\n{"a":2}\n')
        with Spoke(pipeline(src, dst, "    errors.tolerance: all\n"), tmp=tmp) as s:
            wait_for(lambda: read_bytes(dst) == b'{"a":1}\n{"a":2}\n', TIMEOUT,
                     "the good records written, the bad one skipped")
            s.wait_state("out", "RUNNING")


class StationFeed:
    """A GBFS station_status feed on 127.0.0.1 for velib_source: serves
    snapshots[i] on the i-th request (the last one from then on)."""

    def __init__(self, snapshots):
        feed = self
        self.snapshots = snapshots
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps(feed.snapshots[min(feed.requests, len(feed.snapshots) - 1)])
                feed.requests += 1
                body = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/station_status.json" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_keyed_format_names_tombstones():
    # velib_source keys each station by its stationCode and sends a
    # tombstone (that key, a null value) for a station that leaves the feed.
    # format keyed writes {"key":...,"value":...}: the tombstone's line says
    # which key it deletes. Keys that need escaping stay exact.
    codes = ["16107", 'quo"te \\ back', "t\u00e9l\u00e9\u65e5", "ctl\u0001\n\r\u001f"]
    stations = [{"stationCode": c, "station_id": i, "num_bikes_available": i * 2}
                for i, c in enumerate(codes)]
    gone = codes[1:3]
    snaps = [{"lastUpdatedOther": 1732000000, "ttl": 0, "data": {"stations": stations}},
             {"lastUpdatedOther": 1732000060, "ttl": 0,
              "data": {"stations": [st for st in stations if st["stationCode"] not in gone]}}]
    with tempfile.TemporaryDirectory(prefix="spoke-fk-") as tmp, StationFeed(snaps) as feed:
        dst = os.path.join(tmp, "out.ndjson")
        conf = ("connectors:\n"
                "  - name: velib\n"
                "    connector.class: velib_source\n"
                "    topic: stations\n"
                "    url: %s\n"
                "    information.url: \"\"\n"
                "    poll.interval.ms: 100\n"
                "    ttl.max.ms: 0\n"
                "  - name: out\n"
                "    connector.class: file_sink\n"
                "    topics: stations\n"
                "    file: %s\n"
                "    format: keyed\n" % (q(feed.url), q(dst)))
        with Spoke(conf, tmp=tmp) as s:
            s.wait_state("out", "RUNNING")
            n = len(stations) + len(stations) - len(gone) + len(gone)
            s.wait_for(lambda: len(complete_lines(dst)) >= n, TIMEOUT, "%d lines written" % n)
            lines = [json.loads(line) for line in complete_lines(dst)[:n]]
        assert all(sorted(line) == ["key", "value"] for line in lines), lines
        first, second = lines[:len(stations)], lines[len(stations):]
        assert [line["key"] for line in first] == codes, first
        for line, st in zip(first, stations):
            assert {k: line["value"][k] for k in st} == st, line
        # The second snapshot: the stations that stayed, then a tombstone for
        # each station that left (in any order: the source keeps a hash set).
        stay = [c for c in codes if c not in gone]
        assert [line["key"] for line in second[:len(stay)]] == stay, second
        assert all(line["value"]["stationCode"] == line["key"] for line in second[:len(stay)])
        tombs = second[len(stay):]
        assert sorted(line["key"] for line in tombs) == sorted(gone), tombs
        assert all(line["value"] is None for line in tombs), tombs


def test_keyed_format_without_keys():
    # file_source records have no key: "key":null. The value is embedded as
    # it is (one line, exact); a value that is not JSON cannot be, and is
    # refused.
    values = [b'{ "a" : 1.50 }', b'"text"', b'{"x":\r1e400}', b'plain text', b'[1, 2]']
    with tempfile.TemporaryDirectory(prefix="spoke-fk-") as tmp:
        src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        write_bytes(src, b"".join(v + b"\n" for v in values))
        good = [v.replace(b"\r", b" ") for v in values if v != b"plain text"]
        want = b"".join(b'{"key":null,"value":' + v + b'}\n' for v in good)
        extra = "    format: keyed\n    errors.tolerance: all\n"
        with Spoke(pipeline(src, dst, extra), tmp=tmp) as s:
            s.wait_for(lambda: len(read_bytes(dst)) >= len(want), TIMEOUT,
                       "the JSON values written")
            assert read_bytes(dst) == want, "got %r" % read_bytes(dst)
            why = ("value (format keyed writes it inside a JSON object) is not JSON "
                   "(unexpected character at byte 0)")
            s.wait_for(lambda: why in s.log(), TIMEOUT, "the refusal of 'plain text' logged")
            s.wait_state("out", "RUNNING")

    with tempfile.TemporaryDirectory(prefix="spoke-fk-") as tmp:
        src, dst = os.path.join(tmp, "in.ndjson"), os.path.join(tmp, "out.ndjson")
        write_bytes(src, b'{"a":1}\nplain text\n')
        with Spoke(pipeline(src, dst, "    format: keyed\n"), tmp=tmp) as s:
            s.wait_state("out", "FAILED")
            assert why in (s.connector("out").get("trace") or ""), s.connector("out")


def test_format_checked():
    head = ("connectors:\n"
            "  - name: out\n"
            "    connector.class: file_sink\n"
            "    topics: lines\n"
            "    file: /tmp/out.ndjson\n")
    for fmt in ("value", "keyed"):
        r = validate(head + "    format: %s\n" % fmt)
        assert r.returncode == 0, "format: %s refused: %r" % (fmt, r.stderr)
    r = validate(head + "    format: envelope\n")
    assert r.returncode == 1 and "format" in r.stderr, "format: envelope accepted: %r" % r.stderr


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
