#!/usr/bin/python3
"""cqlbench - how many rows/s cqlserver takes: prepared INSERTs in UNLOGGED
BATCHes from one connection with many requests in flight.

    /usr/bin/python3 tests/cql/cqlbench.py [--blackhole] [--rows 100000]
        [--batch 100 | --execute] [--inflight 32] [--port P]

Without --port it starts its own cqlserver (with --blackhole if asked). The
frames are encoded before the clock starts, so the number measures the server
(the client only writes prepared bytes and reads the answers).
"""
import argparse
import os
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cqlclient as C  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int)
    ap.add_argument("--blackhole", action="store_true")
    ap.add_argument("--rows", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--inflight", type=int, default=32)
    ap.add_argument("--execute", action="store_true", help="single-row EXECUTEs instead of BATCHes")
    ap.add_argument("--using", default="", help="e.g. 'USING TTL 3600 AND TIMESTAMP ?' (a TIMESTAMP marker "
                    "gets increasing microseconds)")
    a = ap.parse_args()

    proc = None
    port = a.port
    if port is None:
        cmd = [sys.executable, os.path.join(HERE, "cqlserver.py")] + (["--blackhole"] if a.blackhole else [])
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline().split()
        port = int(line[1].split("=")[1])
    try:
        c = C.RawClient("127.0.0.1", port, timeout=60)
        c.startup()
        c.query("CREATE KEYSPACE IF NOT EXISTS bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        c.query("DROP TABLE IF EXISTS bench.rows")
        c.query("CREATE TABLE bench.rows (id bigint PRIMARY KEY, name text, value double, ts timestamp, "
                "ok boolean, payload blob)")
        pid = c.prepare("INSERT INTO bench.rows (id, name, value, ts, ok, payload) VALUES (?, ?, ?, ?, ?, ?) "
                        + a.using)
        ts_marker = "TIMESTAMP ?" in a.using.upper()

        if a.execute:
            a.batch = 1
        nframes = a.rows // a.batch
        frames = []
        now_ms = int(time.time() * 1000)
        stream = 0
        for f in range(nframes):
            items = []
            for r in range(a.batch):
                i = f * a.batch + r
                vals = [struct.pack(">q", i), ("row-%08d" % i).encode(), struct.pack(">d", i * 0.5),
                        struct.pack(">q", now_ms + i), b"\x01", b"\xab" * 16]
                if ts_marker:
                    vals.append(struct.pack(">q", now_ms * 1000 + i))
                items.append((pid, vals))
            stream = stream % 30000 + 1
            if a.execute:
                frames.append(C.frame(C.EXECUTE, C.execute_body(pid, items[0][1]), stream))
            else:
                frames.append(C.frame(C.BATCH, C.batch_body(items, 1), stream))

        sock = c.sock
        t0 = time.perf_counter()
        sent = 0
        done = 0
        errors = 0
        first = min(a.inflight, nframes)
        sock.sendall(b"".join(frames[:first]))
        sent = first
        buf = b""
        while done < nframes:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise SystemExit("server closed the connection")
            buf += chunk
            pos = 0
            answered = 0
            while len(buf) - pos >= 9:
                _, _, _, op, ln = C.HDR.unpack_from(buf, pos)
                if len(buf) - pos < 9 + ln:
                    break
                if op != C.RESULT:
                    errors += 1
                    if errors == 1:
                        print("error:", C.parse_error(buf[pos + 9:pos + 9 + ln]))
                pos += 9 + ln
                answered += 1
            buf = buf[pos:]
            done += answered
            more = min(answered, nframes - sent)
            if more:
                sock.sendall(b"".join(frames[sent:sent + more]))
                sent += more
        dt = time.perf_counter() - t0
        print("%s: %d rows in %d %s, %d in flight: %.2fs  %.0f frames/s  %.0f rows/s  (%d errors)"
              % ("blackhole" if a.blackhole else "store", nframes * a.batch, nframes,
                 "EXECUTEs" if a.execute else "batches of %d" % a.batch, a.inflight,
                 dt, nframes / dt, nframes * a.batch / dt, errors))
        if not a.blackhole:
            body = c.query("SELECT COUNT(*) FROM bench.rows")
            n = struct.unpack(">q", body[-8:])[0]
            print("stored rows: %d" % n)
        c.close()
    finally:
        if proc:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
