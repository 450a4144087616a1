#!/usr/bin/env python3
"""The seed projects' way, minus Kafka and Spark: Python's json module doing
the same aggregate as the Spoke pipeline (table semantics: the latest record
of each station counts; totals per postcode). Prints the table as NDJSON.

usage: peer_python.py records.ndjson postcodes.csv
"""
import csv
import json
import sys


def main():
    post = {}
    with open(sys.argv[2]) as f:
        for row in csv.DictReader(f):
            post[row["stationCode"]] = row["postcode"]
    latest = {}
    with open(sys.argv[1]) as f:
        for line in f:
            r = json.loads(line)
            types = {k: v for d in r["num_bikes_available_types"] for k, v in d.items()}
            latest[r["stationCode"]] = (post.get(r["stationCode"]), r["num_bikes_available"],
                                        types.get("mechanical", 0), types.get("ebike", 0))
    totals = {}
    for pc, bikes, mech, ebike in latest.values():
        t = totals.setdefault(pc, [0, 0, 0])
        t[0] += bikes
        t[1] += mech
        t[2] += ebike
    for pc in sorted(totals, key=lambda p: (p is None, p)):
        t = totals[pc]
        print(json.dumps({"postcode": pc, "total_bikes_available": t[0],
                          "total_mechanical_bikes": t[1], "total_electric_bikes": t[2]}))


if __name__ == "__main__":
    main()
