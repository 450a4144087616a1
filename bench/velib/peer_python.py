#!/usr/bin/env python3
"""The seed projects' way, minus Kafka and Spark: Python's json module doing
the same aggregate as the Spoke pipeline (table semantics: the latest record
of each station counts; totals per postcode). Prints the table as NDJSON.

With --snapshot it is the snapshot bench's Python peer instead, the seed's
producer and aggregate in one process: it polls a station_status URL (one
connection, kept alive, a poll every INTERVAL ms), parses each body with
json, keeps every station, writes the totals per postcode to /dev/null, and
prints the time from each poll's start to that output as "p50 P90 MAX" in
milliseconds.

usage: peer_python.py records.ndjson postcodes.csv
       peer_python.py --snapshot URL postcodes.csv POLLS INTERVAL
"""
import csv
import http.client
import json
import sys
import time
import urllib.parse


def load_postcodes(path):
    post = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            post[row["stationCode"]] = row["postcode"]
    return post


def take(latest, post, r):
    types = {k: v for d in r["num_bikes_available_types"] for k, v in d.items()}
    latest[r["stationCode"]] = (post.get(r["stationCode"]), r["num_bikes_available"],
                                types.get("mechanical", 0), types.get("ebike", 0))


def print_totals(latest, out):
    totals = {}
    for pc, bikes, mech, ebike in latest.values():
        t = totals.setdefault(pc, [0, 0, 0])
        t[0] += bikes
        t[1] += mech
        t[2] += ebike
    for pc in sorted(totals, key=lambda p: (p is None, p)):
        t = totals[pc]
        print(json.dumps({"postcode": pc, "total_bikes_available": t[0],
                          "total_mechanical_bikes": t[1], "total_electric_bikes": t[2]}), file=out)


def snapshot(url, post, polls, interval):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    latest = {}
    ms = []
    nxt = time.monotonic()
    with open("/dev/null", "w") as out:
        for i in range(polls + 1):  # poll 0 connects and warms up, unmeasured
            time.sleep(max(0.0, nxt - time.monotonic()))
            t = time.monotonic()
            nxt = t + interval / 1000.0
            conn.request("GET", u.path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                sys.exit("peer_python: HTTP %d" % resp.status)
            for r in json.loads(body)["data"]["stations"]:
                take(latest, post, r)
            print_totals(latest, out)
            out.flush()
            if i:
                ms.append((time.monotonic() - t) * 1000.0)
    ms.sort()
    print("p50 %.3f p90 %.3f max %.3f" % (ms[len(ms) // 2], ms[len(ms) * 9 // 10], ms[-1]))


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "--snapshot":
        snapshot(sys.argv[2], load_postcodes(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    post = load_postcodes(sys.argv[2])
    latest = {}
    with open(sys.argv[1]) as f:
        for line in f:  # take() inlined: a call per record would slow this peer
            r = json.loads(line)
            types = {k: v for d in r["num_bikes_available_types"] for k, v in d.items()}
            latest[r["stationCode"]] = (post.get(r["stationCode"]), r["num_bikes_available"],
                                        types.get("mechanical", 0), types.get("ebike", 0))
    print_totals(latest, sys.stdout)


if __name__ == "__main__":
    main()
