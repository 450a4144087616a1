"""it-failures: a failing connector fails alone; error tolerance and the
dead-letter topic; transient failures retry; a plugin that fails init."""
import json
import os
import re
import time

from spoketest import Spoke, count_lines, main, metric, wait_for, write_seq

N = 5000




def test_failing_sink_fails_alone_others_keep_flowing():
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        out = os.path.join(sp.tmp, "out.ndjson")
        write_seq(inp, N)
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: raw
    file: %s
  - name: echo
    connector.class: echo_transform
    topics: raw
    topic: echoed
  - name: bad
    connector.class: failing_sink
    topics: echoed
    fail.after: 10
  - name: good
    connector.class: file_sink
    topics: echoed
    file: %s
""" % (inp, out))
        sp.start()
        st = sp.wait_state("bad", "FAILED")
        assert "configured to fail after 10 records" in (st.get("trace") or ""), st
        assert "put failed" in st["trace"], st
        wait_for(lambda: count_lines(out) == N, 60, "the healthy sink receives everything")
        assert sp.connector("good")["state"] == "RUNNING"
        assert sp.connector("src")["state"] == "RUNNING"
        wait_for(lambda: sp.connector("echo").get("metrics", {}).get("records_out") == N, 10,
                 "echo's records_out to reach N")
        assert sp.alive()
        assert "[bad] put failed" in sp.log()


def tolerant_failing_sink(sp, extra=""):
    """Writes N records to in.ndjson and the config file_source -> raw ->
    failing_sink 'bad' (fails every record after the 100th, errors.tolerance
    all), the rest of bad's keys and further connectors in extra. Returns
    the input's path."""
    inp = os.path.join(sp.tmp, "in.ndjson")
    write_seq(inp, N)
    sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: raw
    file: %s
  - name: bad
    connector.class: failing_sink
    topics: raw
    fail.after: 100
    errors.tolerance: all
""" % inp + extra)
    return inp


def test_tolerance_all_sends_failures_to_dead_letter_topic():
    with Spoke("", start=False) as sp:
        dlq = os.path.join(sp.tmp, "dlq.ndjson")
        inp = tolerant_failing_sink(sp, """    errors.deadletterqueue.topic.name: raw.dlq
  - name: dlq
    connector.class: file_sink
    topics: raw.dlq
    file: %s
""" % dlq)
        sp.start()
        wait_for(lambda: count_lines(dlq) == N - 100, 60, "failed records on the dead-letter topic")
        wait_for(lambda: sp.connector("bad").get("metrics", {}).get("dead_lettered") == N - 100,
                 10, "dead_lettered == N - 100 in status")
        st = sp.connector("bad")
        assert st["state"] == "RUNNING", st
        assert st["metrics"]["errors"] == N - 100, st
        # Dead-lettered records are delivered downstream: offsets reach the end.
        size = os.path.getsize(inp)
        wait_for(lambda: sp.offsets().get("src", {}).get(inp) == size, 30, "offsets committed")
    with open(dlq) as f:
        assert [l.strip() for l in f] == ['{"seq":%d}' % i for i in range(100, N)]


def test_error_log_is_throttled_and_sums_up_the_rest():
    """errors.log.enable logs at most 10 failed records a second one by one;
    the others are summed up once their second is over, so a burst of 4,900
    failures gives a few dozen lines whose counts add up exactly."""
    with Spoke("", start=False) as sp:
        tolerant_failing_sink(sp)
        t0 = time.monotonic()
        sp.start()
        one = re.compile(r"\[bad\] TASK_PUT failed on a record of topic 'raw'")
        more = re.compile(r"\[bad\] (\d+) more records failed in the last [0-9.]+ s, not logged "
                          r"one by one \(at most 10 a second are: errors.log.max.per.second; "
                          r"the errors counter has every one\); the last: TASK_PUT failed on a "
                          r"record of topic 'raw': ")

        def counts():
            log = sp.log()
            return len(one.findall(log)), sum(int(m) for m in more.findall(log))
        wait_for(lambda: sum(counts()) == N - 100, 30,
                 lambda: "logged + summed up == %d, got %r" % (N - 100, counts()))
        took = time.monotonic() - t0
        single, summed = counts()
        assert single <= 10 * (took + 1), "%d lines in %.1f s" % (single, took)
        assert summed > 0
        assert sp.connector("bad")["metrics"]["errors"] == N - 100


def test_transient_failures_retry_then_fail_after_timeout():
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_seq(inp, 50)
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: raw
    file: %s
  - name: flaky
    connector.class: failing_sink
    topics: raw
    fail.after: 5
    fail.mode: retry
    errors.retry.timeout: 1500
    errors.retry.delay.max.ms: 200
""" % inp)
        sp.start()
        def retrying():
            c = sp.connector("flaky")
            return c if c.get("retrying") else None
        st = wait_for(retrying, 20, "retrying shown in status")
        assert "retrying put" in st["trace"], st
        st = sp.wait_state("flaky", "FAILED", 20)
        assert st["metrics"]["retries"] >= 2, st
        # Not committed past what the failed sink never delivered.
        offs = sp.offsets().get("src", {}).get(inp, 0)
        assert offs < os.path.getsize(inp), offs


def test_init_failure_reported_host_keeps_running():
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        out = os.path.join(sp.tmp, "out.ndjson")
        write_seq(inp, 10)
        sp.write_config("""
connectors:
  - name: missing
    connector.class: file_source
    topic: a
    file: %s/does-not-exist.ndjson
  - name: src
    connector.class: file_source
    topic: raw
    file: %s
  - name: dst
    connector.class: file_sink
    topics: raw
    file: %s
""" % (sp.tmp, inp, out))
        sp.start()
        st = sp.wait_state("missing", "FAILED")
        assert "does-not-exist.ndjson" in st["trace"], st
        wait_for(lambda: count_lines(out) == 10, 20, "the other pipeline flows")


def test_unrouted_topic_counted_and_warned_once():
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_seq(inp, 1000)
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: nobody-reads-this
    file: %s
""" % inp)
        sp.start()
        wait_for(lambda: sp.status().get("topics", {}).get("nobody-reads-this", {}).get("unrouted") == 1000,
                 20, "1000 unrouted records counted")
        assert sp.log().count("topic 'nobody-reads-this' has no subscribers") == 1
        size = os.path.getsize(inp)
        wait_for(lambda: sp.offsets().get("src", {}).get(inp) == size, 20, "unrouted records committed")


def test_backpressure_blocks_without_loss():
    """A paused-by-retry sink with a tiny queue: the source blocks, nothing is dropped."""
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        out = os.path.join(sp.tmp, "out.ndjson")
        write_seq(inp, 20000)
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: raw
    file: %s
    read.batch.lines: 100
  - name: dst
    connector.class: file_sink
    topics: raw
    file: %s
    queue.capacity: 8
    batch.max: 4
""" % (inp, out))
        sp.start()
        seen_depth = 0

        def done():
            nonlocal seen_depth
            c = sp.connector("dst").get("metrics", {})
            seen_depth = max(seen_depth, c.get("queue_depth", 0))
            return count_lines(out) == 20000
        wait_for(done, 120, "all records through an 8-record queue")
        assert seen_depth <= 8, seen_depth
        with open(out) as f:
            assert [l.strip() for l in f] == ['{"seq":%d}' % i for i in range(20000)]


def write_marked(path, n, every):
    """{"seq": i} lines; every `every`-th one also carries "reject": true."""
    with open(path, "w") as f:
        for i in range(n):
            f.write('{"seq":%d%s}\n' % (i, ',"reject":true' if i % every == 0 else ""))


def test_async_delivery_failures_take_the_error_path():
    """A sink reports rejected deliveries from flush() (sink_record_failed):
    those records, and only those, reach the dead-letter topic with the
    reason; the others are delivered; offsets reach the end."""
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        dlq = os.path.join(sp.tmp, "dlq.ndjson")
        write_marked(inp, N, 7)
        rejected = len(range(0, N, 7))
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: raw
    file: %s
  - name: asink
    connector.class: async_sink
    topics: raw
    errors.tolerance: all
    errors.deadletterqueue.topic.name: raw.dlq
  - name: dlq
    connector.class: file_sink
    topics: raw.dlq
    file: %s
""" % (inp, dlq))
        sp.start()
        wait_for(lambda: count_lines(dlq) == rejected, 60, "rejected records on the dead-letter topic")
        wait_for(lambda: metric(sp, "asink", "delivered") == N - rejected, 20, "the rest delivered")
        # The plugin counts in flush(), the host after it; the status file
        # (every 100 ms) can hold one without the other: wait for both.
        wait_for(lambda: sp.connector("asink")["metrics"]["dead_lettered"] == rejected, 20,
                 "dead_lettered == rejected in the status")
        st = sp.connector("asink")
        assert st["state"] == "RUNNING", st
        assert metric(sp, "asink", "bogus_refused") >= 1, st
        size = os.path.getsize(inp)
        wait_for(lambda: sp.offsets().get("src", {}).get(inp) == size, 30, "offsets committed")
    with open(dlq) as f:
        rows = [json.loads(l) for l in f]
    assert [r["seq"] for r in rows] == list(range(0, N, 7))
    assert all(r.get("reject") is True for r in rows)


def test_async_delivery_failure_without_tolerance_fails_and_holds_offsets():
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_marked(inp, 1000, 500)  # seq 0 and 500 are rejected
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: raw
    file: %s
  - name: asink
    connector.class: async_sink
    topics: raw
""" % inp)
        sp.start()
        st = sp.wait_state("asink", "FAILED")
        assert "the target rejected the record" in st["trace"], st
        # The first record was never delivered: no offset may pass it.
        offs = sp.offsets().get("src", {}).get(inp, 0)
        assert offs == 0, offs


PIPE_N = 20000


def pipelined_config(inp, out, dlq, extra=""):
    return """
connectors:
  - name: src
    connector.class: file_source
    topic: raw
    file: %s
    read.batch.lines: 4096
  - name: asink
    connector.class: async_sink
    topics: raw
    batch.max: 64
    pipeline.window: 2000
    out.file: %s
    errors.tolerance: all
    errors.deadletterqueue.topic.name: raw.dlq
%s  - name: dlq
    connector.class: file_sink
    topics: raw.dlq
    file: %s
""" % (inp, out, extra, dlq)


def seqs(path):
    with open(path) as f:
        return [json.loads(l)["seq"] for l in f]


def test_pipelined_sink_settles_records_out_of_order_across_batches():
    """A pipelined sink (flush returns SPOKE_PENDING, outcomes reported
    record by record, newest first) keeps more than one batch pending; every
    record is settled exactly once: delivered ones acknowledged, rejected
    ones dead-lettered, and the source's offsets reach the end."""
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        out = os.path.join(sp.tmp, "out.ndjson")
        dlq = os.path.join(sp.tmp, "dlq.ndjson")
        write_marked(inp, PIPE_N, 11)
        rejected = list(range(0, PIPE_N, 11))
        sp.write_config(pipelined_config(inp, out, dlq))
        sp.start()
        size = os.path.getsize(inp)
        wait_for(lambda: sp.offsets().get("src", {}).get(inp) == size, 60, "offsets committed")
        wait_for(lambda: count_lines(dlq) == len(rejected), 20, "rejected records dead-lettered")
        # The status file is written every 100 ms: wait for the final counts.
        wait_for(lambda: metric(sp, "asink", "delivered") == PIPE_N - len(rejected), 20,
                 "delivered counted in the status")
        st = sp.connector("asink")
        assert st["state"] == "RUNNING", st
        # Pending beyond one batch: the host went on putting while
        # deliveries were under way, and the window bounded it.
        assert 64 < metric(sp, "asink", "pending_max") <= 2000 + 64, st
        sp.stop()
    got = seqs(out)
    assert len(got) == len(set(got)), "a record was delivered twice"
    assert sorted(got) == [i for i in range(PIPE_N) if i % 11], "delivered set differs"
    assert sorted(seqs(dlq)) == rejected


def test_pipelined_sink_unconfirmed_records_are_replayed_after_restart():
    """Deliveries never confirmed (hold): nothing is acknowledged, the status
    says why, shutdown gives the records back; the next run delivers every
    record."""
    with Spoke("", start=False, extra_worker={"shutdown.timeout.ms": 1500}) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        out = os.path.join(sp.tmp, "out.ndjson")
        dlq = os.path.join(sp.tmp, "dlq.ndjson")
        write_marked(inp, PIPE_N, 11)
        sp.write_config(pipelined_config(inp, out, dlq, "    hold: true\n"))
        sp.start()
        def held():
            st = sp.connector("asink") or {}
            return st if st.get("retrying") and "holding" in (st.get("trace") or "") else None
        st = wait_for(held, 60, "the sink retrying while it holds deliveries")
        assert "retrying flush" in st["trace"], st
        assert metric(sp, "asink", "pending_max") > 64
        sp.stop()
        assert count_lines(out) == 0
        assert sp.offsets().get("src", {}).get(inp, 0) == 0, sp.offsets()
        sp.write_config(pipelined_config(inp, out, dlq))
        sp.start()
        size = os.path.getsize(inp)
        wait_for(lambda: sp.offsets().get("src", {}).get(inp) == size, 60, "offsets committed")
        sp.stop()
    assert sorted(set(seqs(out))) == [i for i in range(PIPE_N) if i % 11]


if __name__ == "__main__":
    main(globals())
