#!/usr/bin/env python3
"""plugin-console_sink: console_sink prints `<topic> <key> <value>` lines and
aligned tables (header repeated, widths grown, nested values as JSON),
refuses values that are not rows in table format, and can print to stderr.
Records are produced with file_source."""
import json
import os
import tempfile

import spoketest
from spoketest import (PLUGIN_DIR, Spoke, metric, q, read_bytes, run_spoke, validate, wait_for,
                       write_bytes)

TIMEOUT = 60


def pipeline(src, sink_extra=""):
    """file_source(src) -> topic rows -> console_sink."""
    return ("connectors:\n"
            "  - name: replay\n"
            "    connector.class: file_source\n"
            "    topic: rows\n"
            "    file: %s\n"
            "    poll.interval.ms: 20\n"
            "  - name: show\n"
            "    connector.class: console_sink\n"
            "    topics: rows\n"
            "%s" % (q(src), sink_extra))


def printed(text, first):
    """The lines of text from the first one equal to `first` on (the host may
    print other things before the sink's output)."""
    lines = text.split("\n")
    if first not in lines:
        return []
    return lines[lines.index(first):]


# Rows for the table tests: a UTF-8 name (width counted in characters), a
# width that grows, a null, an extra field not shown, a row lacking fields.
TABLE_INPUT = (
    '{"station":"Ch\u00e2telet","bikes":3,"ratio":0.25,"open":true}\n'
    '{"station":"Gare de Lyon","bikes":12,"ratio":0.5,"open":false}\n'
    '{"station":"Bastille","bikes":-1,"ratio":null,"open":true,"extra":"x"}\n'
    '{"bikes":1234,"where":{"lat":48.85,"tags":["a","b"]}}\n'
).encode()


# ---------------------------------------------------------------------------

def test_unknown_property_rejected():
    good = ("connectors:\n"
            "  - name: show\n"
            "    connector.class: console_sink\n"
            "    topics: rows\n")
    r = validate(good)
    assert r.returncode == 0, "valid config refused: %s" % r.stderr
    r = validate(good + "    formatt: table\n")
    assert r.returncode == 1, "misspelled key accepted (rc %d)" % r.returncode
    assert "formatt" in r.stderr, "error does not name the key: %r" % r.stderr


def test_allowed_values_checked():
    r = validate("connectors:\n"
                 "  - name: show\n"
                 "    connector.class: console_sink\n"
                 "    topics: rows\n"
                 "    format: grid\n")
    assert r.returncode == 1 and "format" in r.stderr, "format: grid accepted: %r" % r.stderr
    r = validate("connectors:\n"
                 "  - name: show\n"
                 "    connector.class: console_sink\n"
                 "    topics: rows\n"
                 "    header.every: 0\n")
    assert r.returncode == 1 and "header.every" in r.stderr, "header.every: 0 accepted: %r" % r.stderr


def test_line_format():
    with tempfile.TemporaryDirectory(prefix="spoke-cs-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        values = ['{"i":%d,"name":"v\u00e9lo %d"}' % (i, i) for i in range(200)]
        write_bytes(src, "".join(v + "\n" for v in values).encode())
        want = ["rows - %s" % v for v in values]
        with Spoke(pipeline(src), tmp=tmp) as s:
            wait_for(lambda: len(printed(s.stdout_text(), want[0])) > len(want), TIMEOUT,
                     "200 records printed on stdout")
            got = [line for line in printed(s.stdout_text(), want[0]) if line.startswith("rows ")]
            assert got == want, "line format differs:\n%s" % "\n".join(got[:5])


def test_line_format_escapes_control_characters():
    with tempfile.TemporaryDirectory(prefix="spoke-cs-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_bytes(src, b'plain\nred \x1b[31mtext\rmore\tend\n')
        with Spoke(pipeline(src), tmp=tmp) as s:
            want = "rows - red \\x1b[31mtext\\rmore\\tend"
            wait_for(lambda: want in s.stdout_text().split("\n"), TIMEOUT,
                     "the escaped record printed on one line")
            assert "rows - plain" in s.stdout_text().split("\n")
            assert "\x1b" not in s.stdout_text(), "an escape character reached the terminal"


def test_table_format():
    with tempfile.TemporaryDirectory(prefix="spoke-cs-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_bytes(src, TABLE_INPUT)
        want = [
            "station   bikes  ratio  open",
            "--------  -----  -----  ----",
            "Ch\u00e2telet      3   0.25  true",
            "Gare de Lyon     12    0.5  false",
            "Bastille         -1  null   true",
            "station       bikes  ratio  open",
            "------------  -----  -----  -----",
            "               1234",
        ]
        with Spoke(pipeline(src, "    format: table\n    header.every: 3\n"), tmp=tmp) as s:
            wait_for(lambda: len(printed(s.stdout_text(), want[0])) > len(want), TIMEOUT,
                     "the table printed on stdout")
            got = printed(s.stdout_text(), want[0])[:len(want)]
            assert got == want, "table differs:\n%s" % "\n".join(got)


def test_table_columns_and_nested_values():
    with tempfile.TemporaryDirectory(prefix="spoke-cs-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_bytes(src, TABLE_INPUT)
        want = [
            "bikes  where  station",
            "-----  -----  --------",
            "    3         Ch\u00e2telet",
            "   12         Gare de Lyon",
            "   -1         Bastille",
            " 1234  {\"lat\":48.85,\"tags\":[\"a\",\"b\"]}",
        ]
        extra = "    format: table\n    columns: [bikes, where, station]\n"
        with Spoke(pipeline(src, extra), tmp=tmp) as s:
            wait_for(lambda: len(printed(s.stdout_text(), want[0])) > len(want), TIMEOUT,
                     "the table printed on stdout")
            got = printed(s.stdout_text(), want[0])[:len(want)]
            assert got == want, "table differs:\n%s" % "\n".join(got)


def test_table_refuses_non_rows():
    data = b'{"a":1}\n[1,2]\n{"a":2}\n'
    with tempfile.TemporaryDirectory(prefix="spoke-cs-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_bytes(src, data)
        with Spoke(pipeline(src, "    format: table\n"), tmp=tmp) as s:
            s.wait_state("show", "FAILED")
            trace = s.connector("show").get("trace") or ""
            assert "value is not a row" in trace, "trace: %r" % trace

    with tempfile.TemporaryDirectory(prefix="spoke-cs-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_bytes(src, data)
        want = ["a", "-", "1", "2"]
        with Spoke(pipeline(src, "    format: table\n    errors.tolerance: all\n"), tmp=tmp) as s:
            wait_for(lambda: len(printed(s.stdout_text(), "a")) > len(want), TIMEOUT,
                     "the two rows printed, the list skipped")
            assert printed(s.stdout_text(), "a")[:len(want)] == want
            s.wait_state("show", "RUNNING")


def test_output_stderr():
    with tempfile.TemporaryDirectory(prefix="spoke-cs-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_bytes(src, b'{"to":"stderr"}\n')
        with Spoke(pipeline(src, "    output: stderr\n"), tmp=tmp) as s:
            wait_for(lambda: 'rows - {"to":"stderr"}' in s.log(), TIMEOUT,
                     "the record printed on stderr")
            assert "stderr" not in s.stdout_text(), "the record also went to stdout"


if __name__ == "__main__":
    spoketest.main(globals())
