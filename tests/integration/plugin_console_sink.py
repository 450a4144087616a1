#!/usr/bin/env python3
"""plugin-console_sink: console_sink prints `<topic> <key> <value>` lines and
aligned tables (header repeated, widths grown, nested values as JSON; columns
aligned by display width: wide characters take two, combining marks none),
escapes controls and bytes that are not UTF-8, prints non-finite doubles as
null, refuses values that are not rows in table format, and can print to
stderr. Records are produced with file_source (and the aggregator, for
non-finite doubles)."""
import json
import os
import re
import subprocess
import sys
import tempfile
import unicodedata

import spoketest
from spoketest import (PLUGIN_DIR, SOURCE_DIR, Skip, Spoke, metric, q, read_bytes, run_spoke,
                       validate, wait_for, write_bytes)

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


def printed(s, first):
    """The complete lines on the host's stdout from the first one equal to
    `first` on (the host may print other things before the sink's output)."""
    lines = s.stdout_lines()
    if first not in lines:
        return []
    return lines[lines.index(first):]


# Rows for the table tests: a UTF-8 name (width counted in columns), a
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
            wait_for(lambda: len(printed(s, want[0])) >= len(want), TIMEOUT,
                     "200 records printed on stdout")
            got = [line for line in printed(s, want[0]) if line.startswith("rows ")]
            assert got == want, "line format differs:\n%s" % "\n".join(got[:5])


def test_line_format_escapes_control_characters():
    with tempfile.TemporaryDirectory(prefix="spoke-cs-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_bytes(src, b'plain\nred \x1b[31mtext\rmore\tend\n')
        with Spoke(pipeline(src), tmp=tmp) as s:
            want = "rows - red \\x1b[31mtext\\rmore\\tend"
            wait_for(lambda: want in s.stdout_lines(), TIMEOUT,
                     "the escaped record printed on one line")
            assert "rows - plain" in s.stdout_lines()
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
            wait_for(lambda: len(printed(s, want[0])) >= len(want), TIMEOUT,
                     "the table printed on stdout")
            got = printed(s, want[0])[:len(want)]
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
            wait_for(lambda: len(printed(s, want[0])) >= len(want), TIMEOUT,
                     "the table printed on stdout")
            got = printed(s, want[0])[:len(want)]
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
            wait_for(lambda: len(printed(s, "a")) >= len(want), TIMEOUT,
                     "the two rows printed, the list skipped")
            assert printed(s, "a")[:len(want)] == want
            s.wait_state("show", "RUNNING")


def test_output_stderr():
    with tempfile.TemporaryDirectory(prefix="spoke-cs-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_bytes(src, b'{"to":"stderr"}\n')
        with Spoke(pipeline(src, "    output: stderr\n"), tmp=tmp) as s:
            wait_for(lambda: 'rows - {"to":"stderr"}' in s.log(), TIMEOUT,
                     "the record printed on stderr")
            assert "stderr" not in s.stdout_text(), "the record also went to stdout"


def display_width(text):
    """Terminal columns of text, by the Unicode database: 0 for combining
    marks and format characters, 2 for East Asian wide and fullwidth."""
    w = 0
    for ch in text:
        if unicodedata.category(ch) in ("Mn", "Me", "Cf") and ch != "\u00ad":
            continue
        w += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return w


def table_lines(cols, rows, every):
    """What format table prints for rows (dicts of str and int values, no
    controls): a column is as wide as its widest text so far (the current
    row included), numbers right-aligned, the header every `every` rows."""
    width = {c: display_width(c) for c in cols}
    out = []

    def line(cells):
        parts = []
        for c, (text, right) in zip(cols, cells):
            pad = " " * (width[c] - display_width(text))
            parts.append(pad + text if right else text + pad)
        return "  ".join(parts).rstrip(" ")

    for i, row in enumerate(rows):
        cells = [(str(row[c]), isinstance(row[c], int)) if c in row else ("", False) for c in cols]
        for c, (text, _) in zip(cols, cells):
            width[c] = max(width[c], display_width(text))
        if i % every == 0:
            out.append(line([(c, False) for c in cols]))
            out.append("  ".join("-" * width[c] for c in cols))
        out.append(line(cells))
    return out


def test_table_aligns_by_display_width():
    # CJK and fullwidth characters take two columns, halfwidth katakana one,
    # combining marks and a zero-width space none; a header can be wide too.
    names = ["\u65e5\u672c\u8a9e", "e\u0301cole", "\U0001F600 smile",
             "\uff8a\uff9d\uff76\uff78 kana", "\uff26\uff55\uff4c\uff4c", "zero\u200bwidth",
             "Ch\u00e2telet", "plain"]
    rows = [{"\u540d\u524d": name, "n": (-1) ** i * 7 ** i} for i, name in enumerate(names)]
    cols = ["\u540d\u524d", "n"]
    want = table_lines(cols, rows, 3)
    with tempfile.TemporaryDirectory(prefix="spoke-cs-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_bytes(src, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
        extra = "    format: table\n    header.every: 3\n    columns: [%s]\n" % ", ".join(
            q(c) for c in cols)
        with Spoke(pipeline(src, extra), tmp=tmp) as s:
            s.wait_for(lambda: any(line.startswith(names[-1])
                                   for line in s.stdout_lines()),
                       TIMEOUT, "the table printed on stdout")
            got = printed(s, want[0])[:len(want)]
            assert got == want, "table differs:\n%s\nwanted:\n%s" % (s.stdout_text(),
                                                                      "\n".join(want))


def escaped(data):
    """What console_sink prints for bytes: controls (C0, DEL, C1) as \\n,
    \\r, \\t or \\xNN per byte, bytes that are not UTF-8 as \\xNN."""
    out, i = [], 0
    while i < len(data):
        for n in (1, 2, 3, 4):
            try:
                ch = data[i:i + n].decode("utf-8")
                break
            except UnicodeDecodeError:
                ch = None
        if ch is None:
            out.append("\\x%02x" % data[i])
            i += 1
            continue
        cp = ord(ch)
        if cp < 0x20 or 0x7f <= cp <= 0x9f:
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(
                ch, "".join("\\x%02x" % b for b in data[i:i + n])))
        else:
            out.append(ch)
        i += n
    return "".join(out)


def test_line_format_escapes_c1_and_bytes_not_utf8():
    # U+009B is CSI for a terminal taking C1 controls, and a lone byte 0x9b
    # is CSI for one that is not in UTF-8: neither may reach it raw. Latin-1
    # text, a truncated sequence, an encoded surrogate and an overlong form
    # are not UTF-8 either.
    values = [b"csi \xc2\x9b31m red \x9b31m", b"caf\xe9 cr\xe8me", b"cut \xe2\x82 here",
              b"surrogate \xed\xa0\x80 overlong \xc0\xaf",
              b"fine \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \x7f"]
    with tempfile.TemporaryDirectory(prefix="spoke-cs-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_bytes(src, b"".join(v + b"\n" for v in values))
        want = ["rows - " + escaped(v) for v in values]
        with Spoke(pipeline(src), tmp=tmp) as s:
            s.wait_for(lambda: len(printed(s, want[0])) >= len(want), TIMEOUT,
                       "the records printed")
            assert printed(s, want[0])[:len(want)] == want, s.stdout_text()
            out = read_bytes(s.stdout_path)
            assert b"\x9b" not in out and b"\xe9" not in out, out
            out.decode("utf-8")  # nothing but UTF-8 reaches the terminal


def test_table_escapes_field_names():
    # Field names come from the data as much as values do: a header must not
    # carry an escape sequence either, and is as wide as its escaped text.
    row = {"red\u001b[31m": "\u009b2J", "\u65e5": 1}
    with tempfile.TemporaryDirectory(prefix="spoke-cs-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_bytes(src, (json.dumps(row) + "\n").encode())
        shown = [escaped(k.encode()) for k in row]
        want = table_lines(shown, [{escaped(k.encode()): escaped(v.encode()) if isinstance(v, str)
                                    else v for k, v in row.items()}], 20)
        with Spoke(pipeline(src, "    format: table\n"), tmp=tmp) as s:
            s.wait_for(lambda: len(printed(s, want[0])) >= len(want), TIMEOUT, "the row printed")
            assert printed(s, want[0])[:len(want)] == want, s.stdout_text()
            assert "\x1b" not in s.stdout_text() and "\x9b" not in s.stdout_text()


def cells(dashes, line):
    """The cells of a table row under its dashes line: (text, aligned),
    aligned "left" or "right" (or "both" when the text fills the column)."""
    spans = [m.span() for m in re.finditer(r"-+", dashes)]
    line = line.ljust(len(dashes))
    out = []
    for a, b in spans:
        cell = line[a:b]
        text = cell.strip(" ")
        left, right = not cell.startswith(" "), not cell.endswith(" ")
        out.append((text, "both" if left and right else "left" if left else "right"))
    return out


def test_table_non_finite_doubles_print_null():
    # nonfinite_transform (a test fixture) hands the sink rows whose double
    # is NaN, +inf or -inf, which JSON cannot hold: the record's JSON says
    # null, and so does the table (aligned as a null, to the left of a
    # column wider than it, not as a number).
    data = [{"g": "a", "v": "nan"}, {"g": "b", "v": "inf"}, {"g": "c", "v": "-inf"},
            {"g": "ok", "v": 2.5}, {"g": "wide", "v": 123456.25}]
    with tempfile.TemporaryDirectory(prefix="spoke-cs-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_bytes(src, "".join(json.dumps(r) + "\n" for r in data).encode())
        conf = ("connectors:\n"
                "  - name: replay\n"
                "    connector.class: file_source\n"
                "    topic: raw\n"
                "    file: %s\n"
                "  - name: rows\n"
                "    connector.class: nonfinite_transform\n"
                "    topics: raw\n"
                "    topic: rows\n"
                "  - name: show\n"
                "    connector.class: console_sink\n"
                "    topics: rows\n"
                "    format: table\n"
                "    header.every: 1\n"
                "    columns: [g, value]\n" % q(src))

        def last_rows(s):
            lines = s.stdout_lines()
            rows = {}
            for i in range(2, len(lines)):
                if lines[i - 1].startswith("-") and lines[i]:
                    row = cells(lines[i - 1], lines[i])
                    rows[row[0][0]] = row
            return rows

        with Spoke(conf, tmp=tmp) as s:
            s.wait_for(lambda: set(last_rows(s)) == {r["g"] for r in data}, TIMEOUT,
                       lambda: "a row for every record:\n%s" % s.stdout_text())
            rows = last_rows(s)
            for r in data:
                text, aligned = rows[r["g"]][1]
                if isinstance(r["v"], str):
                    assert (text, aligned) == ("null", "left"), (r, rows[r["g"]])
                else:
                    assert float(text) == r["v"] and aligned in ("right", "both"), \
                        (r, rows[r["g"]])
            low = s.stdout_text().lower()
            assert "nan" not in low and "inf" not in low, s.stdout_text()


def test_width_table_generated():
    # console_sink_width.h is gen_width.py's output for its Unicode version.
    d = os.path.join(SOURCE_DIR, "plugins", "console_sink")
    with open(os.path.join(d, "console_sink_width.h")) as f:
        text = f.read()
    version = re.search(r'CS_UNICODE_VERSION "([^"]+)"', text).group(1)
    if version != unicodedata.unidata_version:
        raise Skip("table from Unicode %s, this Python has %s"
                   % (version, unicodedata.unidata_version))
    p = subprocess.run([sys.executable, os.path.join(d, "gen_width.py")], capture_output=True,
                       text=True, check=True)
    assert p.stdout == text, "console_sink_width.h differs from gen_width.py's output"


if __name__ == "__main__":
    spoketest.main(globals())
