#!/usr/bin/env python3
"""plugin-null_sink: null_sink discards records, counts records and value
bytes in the connector's status metrics, and logs the running count every
log.every records. Records are produced with file_source."""
import json
import os
import tempfile

import spoketest
from spoketest import (PLUGIN_DIR, Spoke, metric, q, read_bytes, run_spoke, validate, wait_for,
                       write_bytes)

TIMEOUT = 60


def pipeline(src, sink_extra=""):
    """file_source(src) -> topic lines -> null_sink."""
    return ("connectors:\n"
            "  - name: replay\n"
            "    connector.class: file_source\n"
            "    topic: lines\n"
            "    file: %s\n"
            "    poll.interval.ms: 20\n"
            "  - name: devnull\n"
            "    connector.class: null_sink\n"
            "    topics: lines\n"
            "%s" % (q(src), sink_extra))


# ---------------------------------------------------------------------------

def test_unknown_property_rejected():
    good = ("connectors:\n"
            "  - name: devnull\n"
            "    connector.class: null_sink\n"
            "    topics: lines\n")
    r = validate(good)
    assert r.returncode == 0, "valid config refused: %s" % r.stderr
    r = validate(good + "    log.evry: 10\n")
    assert r.returncode == 1, "misspelled key accepted (rc %d)" % r.returncode
    assert "log.evry" in r.stderr, "error does not name the key: %r" % r.stderr


def test_bounds_checked():
    r = validate("connectors:\n"
                 "  - name: devnull\n"
                 "    connector.class: null_sink\n"
                 "    topics: lines\n"
                 "    log.every: -1\n")
    assert r.returncode == 1 and "log.every" in r.stderr, "log.every: -1 accepted: %r" % r.stderr


def test_counts_records_and_bytes():
    with tempfile.TemporaryDirectory(prefix="spoke-ns-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        lines = [('{"i":%d,"pad":"%s"}' % (i, "z" * (i % 97))).encode() for i in range(5000)]
        write_bytes(src, b"".join(line + b"\n" for line in lines))
        nbytes = sum(len(line) for line in lines)
        with Spoke(pipeline(src), tmp=tmp) as s:
            wait_for(lambda: metric(s, "devnull", "records") == len(lines), TIMEOUT,
                     "records == %d in status metrics" % len(lines))
            wait_for(lambda: metric(s, "devnull", "bytes") == nbytes, TIMEOUT,
                     "bytes == %d in status metrics" % nbytes)
            s.wait_state("devnull", "RUNNING")


def test_log_every():
    with tempfile.TemporaryDirectory(prefix="spoke-ns-") as tmp:
        src = os.path.join(tmp, "in.ndjson")
        write_bytes(src, b"".join(b'{"i":%d}\n' % i for i in range(250)))
        with Spoke(pipeline(src, "    log.every: 100\n"), tmp=tmp) as s:
            wait_for(lambda: metric(s, "devnull", "records") == 250, TIMEOUT, "250 records counted")
            wait_for(lambda: "200 records" in s.log(), TIMEOUT, "the running count logged at 200")
            assert "100 records" in s.log()
            assert "300 records" not in s.log()


if __name__ == "__main__":
    spoketest.main(globals())
