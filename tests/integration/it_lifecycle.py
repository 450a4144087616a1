"""it-lifecycle: SIGHUP reload as a diff, invalid reloads refused, stateful
transforms snapshot and restore, `spoke validate` and `spoke plugins`."""
import json
import os
import shutil
import stat

from spoketest import (Spoke, TEST_PLUGIN_DIR, PLUGIN_DIR, count_lines, main, run_spoke, write_seq,
                       wait_for)




def two_pipelines(sp, sink_b_extra=""):
    return """
connectors:
  - name: src-a
    connector.class: file_source
    topic: a
    file: {tmp}/a.ndjson
  - name: sink-a
    connector.class: file_sink
    topics: a
    file: {tmp}/out-a.ndjson
  - name: src-b
    connector.class: file_source
    topic: b
    file: {tmp}/b.ndjson
  - name: sink-b
    connector.class: file_sink
    topics: b
    file: {tmp}/out-b.ndjson
{extra}""".format(tmp=sp.tmp, extra=sink_b_extra)


def test_reload_restarts_only_changed_connectors():
    with Spoke("", start=False) as sp:
        write_seq(os.path.join(sp.tmp, "a.ndjson"), 100)
        write_seq(os.path.join(sp.tmp, "b.ndjson"), 100)
        sp.write_config(two_pipelines(sp))
        sp.start()
        wait_for(lambda: count_lines(os.path.join(sp.tmp, "out-b.ndjson")) == 100, 20, "b flows")
        wait_for(lambda: count_lines(os.path.join(sp.tmp, "out-a.ndjson")) == 100, 20, "a flows")
        wait_for(lambda: sp.connector("sink-a").get("metrics", {}).get("records_in") == 100, 10,
                 "status shows sink-a's 100 records")
        # Change only sink-b (a new file), add a connector.
        sp.write_config(two_pipelines(sp, """    batch.max: 10
  - name: extra
    connector.class: null_sink
    topics: a
"""))
        sp.reload()
        wait_for(lambda: "reloaded: 3 unchanged, 1 stopped, 2 started" in sp.log(), 20, "reload done")
        assert "[sink-b] config changed: restarting" in sp.log()
        assert "[sink-a] config changed" not in sp.log()
        # Unchanged connectors kept running: their counters were not reset.
        wait_for(lambda: sp.connector("extra").get("state") == "RUNNING", 10, "extra running")
        assert sp.connector("sink-a")["metrics"]["records_in"] == 100
        # The restarted sink-b resumes where src-b's committed offset says: no repeats.
        write_seq(os.path.join(sp.tmp, "b.ndjson"), 50, start=100, mode="a")
        wait_for(lambda: count_lines(os.path.join(sp.tmp, "out-b.ndjson")) == 150, 20, "b resumes")
        with open(os.path.join(sp.tmp, "out-b.ndjson")) as f:
            assert [json.loads(l)["seq"] for l in f] == list(range(150))


def test_invalid_reload_is_refused_and_old_config_keeps_running():
    with Spoke("", start=False) as sp:
        write_seq(os.path.join(sp.tmp, "a.ndjson"), 10)
        write_seq(os.path.join(sp.tmp, "b.ndjson"), 10)
        sp.write_config(two_pipelines(sp))
        sp.start()
        sp.wait_state("sink-b", "RUNNING")
        sp.write_config(two_pipelines(sp, "    batch.maxx: 10\n"))
        sp.reload()
        wait_for(lambda: "reload refused" in sp.log(), 20, "refusal logged")
        log = sp.log()
        assert "unknown configuration key 'batch.maxx'" in log, log[-2000:]
        assert "did you mean 'batch.max'" in log
        assert "connectors.yaml:" in log  # positioned
        write_seq(os.path.join(sp.tmp, "a.ndjson"), 10, start=10, mode="a")
        wait_for(lambda: count_lines(os.path.join(sp.tmp, "out-a.ndjson")) == 20, 20, "still flowing")
        # Broken YAML is refused too.
        with open(sp.config, "a") as f:
            f.write("  - [unbalanced\n")
        sp.reload()
        wait_for(lambda: sp.log().count("reload refused") == 2, 20, "second refusal")
        assert sp.alive()


COUNTER_PIPELINE = """
connectors:
  - name: src
    connector.class: file_source
    topic: raw
    file: {inp}
  - name: counter
    connector.class: count_transform
    topics: raw
    topic: counts
    emit.every: {every}
    snapshot.interval.ms: {snap_ms}
  - name: dst
    connector.class: file_sink
    topics: counts
    file: {out}
"""


def counter_pipeline(inp, out, every, snap_ms, extra=""):
    """file_source (src) -> count_transform (counter, stateful) -> file_sink
    (dst), and the connectors in extra after them."""
    return COUNTER_PIPELINE.format(inp=inp, out=out, every=every, snap_ms=snap_ms) + extra


def test_stateful_transform_restores_its_state():
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        out = os.path.join(sp.tmp, "counts.ndjson")
        write_seq(inp, 1000)
        sp.write_config(counter_pipeline(inp, out, 100, 50))
        sp.start()
        wait_for(lambda: count_lines(out) == 10, 20, "10 counts")
        # Absorbed records commit only once a snapshot covers them.
        size = os.path.getsize(inp)
        wait_for(lambda: sp.offsets().get("src", {}).get(inp) == size, 20, "offsets after snapshot")
        assert os.path.exists(os.path.join(sp.state_dir, "snapshots", "counter.snap"))
        sp.stop()
        write_seq(inp, 500, start=1000, mode="a")
        sp.start()
        wait_for(lambda: count_lines(out) == 15, 20, "5 more counts")
        sp.stop()
    with open(out) as f:
        counts = [json.loads(l)["count"] for l in f]
    assert counts == list(range(100, 1501, 100)), counts
    assert "state restored" in sp.log()


def test_absorbed_records_hold_their_source_back_until_a_snapshot():
    """Records a stateful transform absorbed commit only once a snapshot
    covers them, although records derived from them were delivered meanwhile
    (the counts, flushed by the sink); the source counts them in flight. A
    second source's commit shows that the offsets were flushed since."""
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        clock = os.path.join(sp.tmp, "clock.ndjson")
        out = os.path.join(sp.tmp, "counts.ndjson")
        write_seq(inp, 1000)
        write_seq(clock, 1)
        sp.write_config(counter_pipeline(inp, out, 100, 86400000, """\
  - name: clock
    connector.class: file_source
    topic: ticks
    file: %s
  - name: ticks
    connector.class: null_sink
    topics: ticks
""" % clock))
        sp.start()
        wait_for(lambda: count_lines(out) == 10, 20, "10 counts")
        # Every record absorbed; the counts (derived from every 100th) were
        # delivered.
        sp.wait_for(lambda: sp.connector("src").get("metrics", {}).get("inflight") == 1000, 20,
                    "1000 records held in flight")
        size = os.path.getsize(clock)
        wait_for(lambda: sp.offsets().get("clock", {}).get(clock) == size, 20,
                 "the clock source committed")
        write_seq(clock, 1, start=1, mode="a")
        size = os.path.getsize(clock)
        wait_for(lambda: sp.offsets().get("clock", {}).get(clock) == size, 20,
                 "the clock source committed again")
        assert sp.offsets().get("src", {}).get(inp) is None, sp.offsets()
        sp.stop()  # the stop's snapshot covers them
        assert sp.offsets().get("src", {}).get(inp) == os.path.getsize(inp), sp.offsets()


def test_kill9_after_snapshot_replays_nothing_into_the_state():
    """Offsets lag snapshots (flushed every 60 s here), so after kill -9 the
    source replays everything; the snapshot's covered positions keep the
    replayed records out of the restored count."""
    with Spoke("", start=False, extra_worker={"offset.flush.interval.ms": 60000}) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        out = os.path.join(sp.tmp, "counts.ndjson")
        snap = os.path.join(sp.state_dir, "snapshots", "counter.snap")
        write_seq(inp, 3000)
        sp.write_config(counter_pipeline(inp, out, 1000, 20))
        sp.start()
        size = os.path.getsize(inp)

        def snapshot_covers_all():
            try:
                with open(snap) as f:
                    f.readline()
                    pos = json.loads(f.readline())
            except (FileNotFoundError, ValueError):
                return False
            return any(p["source"] == "src" and p["offset"] == size for p in pos)
        wait_for(snapshot_covers_all, 20, "a snapshot covering the whole input")
        wait_for(lambda: count_lines(out) == 3, 20, "3 counts written")
        sp.kill()
        assert sp.offsets().get("src", {}).get(inp, 0) < size, "offsets were flushed: no replay to test"
        write_seq(inp, 1000, start=3000, mode="a")
        sp.start()
        wait_for(lambda: count_lines(out) >= 4, 20, "the 4th count")
        wait_for(lambda: sp.connector("counter").get("metrics", {}).get("replayed_skipped") == 3000,
                 10, "3000 replayed records skipped")
        sp.stop()
    with open(out) as f:
        counts = [json.loads(l)["count"] for l in f]
    assert counts == [1000, 2000, 3000, 4000], counts


def test_corrupt_snapshot_fails_the_connector_with_reason():
    with Spoke("", start=False) as sp:
        inp = os.path.join(sp.tmp, "in.ndjson")
        write_seq(inp, 5)
        os.makedirs(os.path.join(sp.state_dir, "snapshots"))
        with open(os.path.join(sp.state_dir, "snapshots", "counter.snap"), "w") as f:
            f.write("SPOKESNAP 2 99\n[]\nshort")
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: raw
    file: %s
  - name: counter
    connector.class: count_transform
    topics: raw
    topic: counts
""" % inp)
        sp.start()
        st = sp.wait_state("counter", "FAILED")
        assert "restore failed" in st["trace"] and "not valid" in st["trace"], st


def test_validate_reports_every_error_with_position():
    with Spoke("", start=False) as sp:
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: raw
    file: x
    poll.interval.ms: 0
  - name: bad-class
    connector.class: no_such_plugin
  - name: sink
    connector.class: file_sink
    topics: raw
    fsync: maybe
""")
        p = run_spoke("validate", "-c", sp.config)
        assert p.returncode == 1, p
        err = p.stderr
        lines = sp.config
        assert "poll.interval.ms" in err and "below the minimum 1" in err, err
        assert "no plugin named 'no_such_plugin'" in err and "file_source" in err, err
        assert "missing required configuration key 'file'" in err, err
        assert "fsync" in err, err
        assert err.count(lines + ":") >= 4, err
        assert "invalid: 4 errors" in err, err
        # Positions point at the keys: poll.interval.ms is on line 12 of the file.
        with open(sp.config) as f:
            lineno = [i + 1 for i, l in enumerate(f) if "poll.interval.ms: 0" in l][0]
        assert "%s:%d:" % (lines, lineno) in err, err
        # Not started: nothing ran.
        assert not os.path.exists(os.path.join(sp.state_dir, "offsets.json"))


def test_validate_runs_the_plugins_checks_between_keys():
    """`spoke validate` runs each plugin's check of keys that go together
    and points at the key it names (or the connector); the run refuses the
    file the same way, before anything starts."""
    with Spoke("", start=False) as sp:
        sp.write_config("""
connectors:
  - name: src
    connector.class: file_source
    topic: raw
    file: x
  - name: agg
    connector.class: aggregator
    topics: raw
    topic: out
    group.by: postcode
    semantics: table
    aggregates: [n=count()]
  - name: ck
    connector.class: checked_transform
    topics: raw
    topic: out2
    mode: whole
  - name: vel
    connector.class: velib_source
    topic: v
    url: "file:///etc/passwd"
  - name: ck2
    connector.class: checked_transform
    topics: raw
    topic: out3
    mode: ctl
  - name: sink
    connector.class: null_sink
    topics: [out, out2, out3, v]
""")
        p = run_spoke("validate", "-c", sp.config)
        assert p.returncode == 1, p
        err = p.stderr
        with open(sp.config) as f:
            lines = f.read().split("\n")

        def at(text):
            return "%s:%d:" % (sp.config, [i + 1 for i, l in enumerate(lines) if text in l][0])
        assert at("semantics: table") + "5: connector 'agg': semantics table needs entity.key" \
            in err, err
        # No key named: the connector's own position (its name).
        assert at("name: ck") + "11: connector 'ck': mode whole refuses" in err, err
        assert at("url: ") + "5: connector 'vel': url 'file:///etc/passwd': scheme 'file' is " \
            "not allowed" in err, err
        # A reason with a line break and a terminal escape: one line, no escape.
        assert at("mode: ctl") + "5: connector 'ck2': mode ctl: forged line?[31m red\n" in err, err
        assert "\x1b" not in err, err
        assert "invalid: 4 errors" in err, err
        p = run_spoke("run", "-c", sp.config)
        assert p.returncode == 1 and "semantics table needs entity.key" in p.stderr, p
        assert "mode ctl: forged line?[31m red" in p.stderr and "\x1b" not in p.stderr, p


def test_validate_checks_topic_wiring():
    with Spoke("""
connectors:
  - name: src
    connector.class: file_source
    file: x
    topics: a
  - name: t
    connector.class: echo_transform
    topics: a
    topic: a
  - name: sink
    connector.class: file_sink
    file: y
    topics: b
    topic: c
    errors.deadletterqueue.topic.name: b
""", start=False) as sp:
        p = run_spoke("validate", "-c", sp.config)
        err = p.stderr
        assert p.returncode == 1, err
        for msg in ("a source needs `topic`", "a source reads no topics", "'a' is both read and written",
                    "a sink writes no topic", "the dead-letter topic 'b' is also an input topic"):
            assert msg in err, (msg, err)


def test_validate_refuses_bad_connector_names():
    with Spoke("""
connectors:
  - name: Up/Down
    connector.class: file_sink
""", start=False) as sp:
        p = run_spoke("validate", "-c", sp.config)
        assert p.returncode == 1 and "'Up/Down' is not a valid connector name" in p.stderr, p.stderr


def test_run_refuses_invalid_config_with_exit_1():
    with Spoke("""
connectors:
  - name: s
    connector.class: file_sink
    topics: t
""", start=False) as sp:
        p = run_spoke("run", "-c", sp.config, timeout=30)
        assert p.returncode == 1
        assert "missing required configuration key 'file'" in p.stderr, p.stderr
        assert "not started" in p.stderr


def test_list_items_validate_as_they_run():
    """A YAML list item with a comma would run as two items (a config is kept
    as Connect's comma-joined text): validate and run both refuse it at its
    line, as they do an empty item; trimmed items run as validated."""
    for items, want in (('["Accept: a, b"]', "list item 1 contains ','"),
                        ('["X: 1", ""]', "list item 2 is empty"),
                        ('"X: 1,,Y: 2"', "list item 2 is empty")):
        with Spoke("""
connectors:
  - name: h
    connector.class: http_source
    topic: t
    url: http://127.0.0.1:9/x
    headers: %s
  - name: s
    connector.class: null_sink
    topics: t
""" % items, start=False) as sp:
            with open(sp.config) as f:
                at = [i + 1 for i, l in enumerate(f) if "    headers:" in l][0]
            for cmd in ("validate", "run"):
                p = run_spoke(cmd, "-c", sp.config, timeout=30)
                assert p.returncode == 1, (cmd, items, p)
                assert "%s:%d:5: connector 'h': key 'headers': %s" % (sp.config, at, want) \
                    in p.stderr, (cmd, items, p.stderr)


def test_env_references_resolve_and_missing_ones_are_errors():
    with Spoke("""
connectors:
  - name: s
    connector.class: file_sink
    topics: t
    file: ${env:SPOKE_IT_OUT}
""", start=False) as sp:
        os.environ.pop("SPOKE_IT_OUT", None)
        p = run_spoke("validate", "-c", sp.config)
        assert p.returncode == 1 and "SPOKE_IT_OUT" in p.stderr, p.stderr
        os.environ["SPOKE_IT_OUT"] = os.path.join(sp.tmp, "o.ndjson")
        p = run_spoke("validate", "-c", sp.config)
        assert p.returncode == 0, p.stderr
        assert "valid: 1 connector" in p.stdout


def test_plugins_lists_found_and_refused_and_finds_new_files():
    import tempfile
    d = tempfile.mkdtemp(prefix="spoke-plugins-")
    shutil.copy(os.path.join(TEST_PLUGIN_DIR, "echo_transform.so"), d)
    shutil.copy(os.path.join(TEST_PLUGIN_DIR, "bad_magic.so"), d)
    p = run_spoke("plugins", "-c", "/nonexistent.yaml", "--plugin-path", d)
    assert p.returncode == 0, p.stderr
    assert "echo_transform" in p.stdout and "transform" in p.stdout
    assert "bad magic" in p.stdout
    assert "failing_sink" not in p.stdout
    # Dropping a new .so in is enough: no rebuild, no restart of anything.
    shutil.copy(os.path.join(TEST_PLUGIN_DIR, "failing_sink.so"), d)
    p = run_spoke("plugins", "-c", "/nonexistent.yaml", "--plugin-path", d)
    assert "failing_sink" in p.stdout
    # World-writable files are refused.
    os.chmod(os.path.join(d, "failing_sink.so"), 0o666)
    p = run_spoke("plugins", "-c", "/nonexistent.yaml", "--plugin-path", d)
    assert "world-writable" in p.stdout, p.stdout
    shutil.rmtree(d)


def test_task_threads_are_named_after_their_connectors():
    """Each connector's task thread carries the connector's name (cut to the
    kernel's 15 bytes), so top -H, ps -L, perf and gdb tell them apart; the
    housekeeping thread is spoke-hk."""
    long_name = "sink-with-a-long-name"
    with Spoke("", start=False) as sp:
        write_seq(os.path.join(sp.tmp, "a.ndjson"), 10)
        sp.write_config("""
connectors:
  - name: src-a
    connector.class: file_source
    topic: a
    file: {tmp}/a.ndjson
  - name: {name}
    connector.class: file_sink
    topics: a
    file: {tmp}/out-a.ndjson
""".format(tmp=sp.tmp, name=long_name))
        sp.start()
        wait_for(lambda: count_lines(os.path.join(sp.tmp, "out-a.ndjson")) == 10, 20, "a flows")
        task = "/proc/%d/task" % sp.proc.pid
        names = []
        for tid in os.listdir(task):
            try:
                with open(os.path.join(task, tid, "comm")) as f:
                    names.append(f.read().strip())
            except FileNotFoundError:
                pass  # a thread that ended meanwhile
        for want in ("src-a", long_name[:15], "spoke-hk"):
            assert want in names, "no thread named %r among %r" % (want, names)


def test_one_cpu_gets_shallow_queues_unless_the_connector_sets_them():
    """On one CPU (the affinity mask here) connectors that leave
    queue.capacity and batch.max unset get 512 and 256, and the log says
    why; values a connector sets are kept. With every CPU of this machine
    the defaults are 4096 and 1024, unless a cgroup quota of one CPU
    applies, which the log then names."""
    yaml = """
connectors:
  - name: src
    connector.class: file_source
    topic: t
    file: {tmp}/in.ndjson
  - name: plain
    connector.class: null_sink
    topics: t
  - name: set
    connector.class: null_sink
    topics: t
    queue.capacity: 100
    batch.max: 7
"""
    mine = sorted(os.sched_getaffinity(0))
    runs = [({mine[-1]}, (512, 256))]
    if len(mine) > 1:
        runs.append((set(mine), (4096, 1024)))
    for cpus, want in runs:
        with Spoke("", start=False) as sp:
            write_seq(os.path.join(sp.tmp, "in.ndjson"), 5)
            sp.write_config(yaml.format(tmp=sp.tmp))
            sp.cpus = cpus
            sp.start()
            sp.wait_for(lambda: all(sp.connector(c).get("metrics", {}).get("records_in") == 5
                                    for c in ("plain", "set")), 20, "both sinks read 5 records")
            m = sp.connector("plain")["metrics"]
            if len(cpus) > 1 and m["queue_capacity"] == 512:
                # Every CPU, but a cgroup quota of one: the log must say so.
                sp.wait_for(lambda: "cgroup quota 1)" in sp.log(), 20, "the quota named")
                want = (512, 256)
            if want == (512, 256):
                # Logged once the connectors are started: maybe after the
                # status file showed them working.
                sp.wait_for(lambda: "one CPU to run on" in sp.log(), 20, "the one-CPU log line")
            else:
                assert "one CPU to run on" not in sp.log(), sp.log()
            assert (m["queue_capacity"], m["batch_max"]) == want, (cpus, m)
            m = sp.connector("set")["metrics"]
            assert (m["queue_capacity"], m["batch_max"]) == (100, 7), (cpus, m)


def thread_policies(pid):
    """{thread name: set of scheduling policies} of a process's threads
    (/proc/PID/task/TID/stat field 41: 0 SCHED_OTHER, 3 SCHED_BATCH)."""
    out = {}
    task = "/proc/%d/task" % pid
    for tid in os.listdir(task):
        try:
            with open(os.path.join(task, tid, "stat")) as f:
                stat = f.read()
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        policy = int(stat[stat.rindex(")") + 2:].split()[38])
        out.setdefault(name, set()).add(policy)
    return out


def test_tasks_scheduling_batch_on_one_cpu_or_when_asked():
    """tasks.scheduling auto (the default) runs the connectors' task
    threads as SCHED_BATCH when the process can use one CPU only, and says
    so in the one-CPU log line; normal keeps them SCHED_OTHER there; batch
    asks for it with every CPU. The other threads (main, housekeeping,
    REST) stay SCHED_OTHER in every case."""
    yaml = """
connectors:
  - name: src
    connector.class: file_source
    topic: t
    file: {tmp}/in.ndjson
  - name: out
    connector.class: null_sink
    topics: t
"""
    mine = sorted(os.sched_getaffinity(0))
    runs = [({mine[-1]}, "auto", 3), ({mine[-1]}, "normal", 0)]
    if len(mine) > 1:
        runs += [(set(mine), "auto", None), (set(mine), "batch", 3)]
    for cpus, mode, want in runs:
        with Spoke("", start=False, extra_worker={"tasks.scheduling": mode}) as sp:
            write_seq(os.path.join(sp.tmp, "in.ndjson"), 5)
            sp.write_config(yaml.format(tmp=sp.tmp))
            sp.cpus = cpus
            sp.start()
            sp.wait_for(lambda: sp.connector("out").get("metrics", {}).get("records_in") == 5,
                        20, "the sink read 5 records")
            one_cpu = sp.connector("out")["metrics"]["queue_capacity"] == 512
            if want is None:  # every CPU, unless a cgroup quota of one applies
                want = 3 if one_cpu else 0
            pol = thread_policies(sp.proc.pid)
            assert pol.get("src") == {want} and pol.get("out") == {want}, (cpus, mode, pol)
            # jemalloc's purging thread inherits the policy of whichever
            # thread happened to start it.
            others = set().union(*(v for k, v in pol.items()
                                   if k not in ("src", "out", "jemalloc_bg_thd")))
            assert others == {0}, (cpus, mode, pol)
            if one_cpu:
                sp.wait_for(lambda: "one CPU to run on" in sp.log(), 20, "the one-CPU log line")
                assert ("task threads run SCHED_BATCH" in sp.log()) == (want == 3), sp.log()


def test_plugin_readmes_match_their_config_tables():
    """Each plugin README embeds `spoke plugins --doc <name>` between markers."""
    src = os.environ.get("SPOKE_SOURCE_DIR")
    plugins_dir = os.path.join(src, "plugins")
    checked = 0
    for name in sorted(os.listdir(plugins_dir)):
        readme = os.path.join(plugins_dir, name, "README.md")
        if not os.path.exists(readme):
            continue
        p = run_spoke("plugins", "-c", "/nonexistent.yaml", "--plugin-path", PLUGIN_DIR, "--doc", name)
        assert p.returncode == 0, p.stderr
        text = open(readme).read()
        a, b = text.find("<!-- config:begin -->"), text.find("<!-- config:end -->")
        assert a >= 0 and b > a, "%s: config markers missing" % readme
        assert text[a + len("<!-- config:begin -->"):b].strip() == p.stdout.strip(), \
            "%s: config table differs from `spoke plugins --doc %s`:\n%s" % (readme, name, p.stdout)
        checked += 1
    assert checked >= 4, checked
    # The host's own tables in the top-level README.
    readme = open(os.path.join(src, "README.md")).read()
    for what in ("worker", "connector", "topic"):
        p = run_spoke("config-doc", what)
        assert p.stdout.strip() in readme, "README.md lacks the current `spoke config-doc %s` table" % what


if __name__ == "__main__":
    main(globals())
