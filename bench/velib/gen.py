#!/usr/bin/env python3
"""Generates the Vélib' benchmark input: N station_status-shaped NDJSON
records over ~1,470 station codes (polls of the same stations, as the live
feed gives), plus a stationCode -> postcode CSV with 85 postcodes.
Deterministic (seeded), so every run and every peer sees the same data.

usage: gen.py N OUT_DIR [SEED]  -> OUT_DIR/records.ndjson, OUT_DIR/postcodes.csv
SEED (default 20241119) draws the bike counts; bench/pgo.sh trains on
another seed than the benchmark measures.
"""
import os
import random
import sys

STATIONS = 1470
POSTCODES = 85


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 20241119
    os.makedirs(out, exist_ok=True)
    rnd = random.Random(seed)
    codes = ["%05d" % (1000 + 37 * i) for i in range(STATIONS)]
    posts = ["75%03d" % i if i < 20 else "9%04d" % (1000 + 13 * i) for i in range(POSTCODES)]
    with open(os.path.join(out, "postcodes.csv"), "w") as f:
        f.write("stationCode,station_id,postcode,city\n")
        for i, c in enumerate(codes):
            f.write("%s,%d,%s,Paris\n" % (c, 213688169 + i, posts[i % POSTCODES]))
    t0 = 1732001704
    with open(os.path.join(out, "records.ndjson"), "w") as f:
        for k in range(n):
            i = k % STATIONS
            mech, ebike = rnd.randint(0, 30), rnd.randint(0, 15)
            f.write('{"station_id":%d,"num_bikes_available":%d,"numBikesAvailable":%d,'
                    '"num_bikes_available_types":[{"mechanical":%d},{"ebike":%d}],'
                    '"num_docks_available":%d,"numDocksAvailable":%d,"is_installed":1,'
                    '"is_returning":1,"is_renting":1,"last_reported":%d,"stationCode":"%s"}\n'
                    % (213688169 + i, mech + ebike, mech + ebike, mech, ebike, 40 - mech - ebike,
                       40 - mech - ebike, t0 + k // STATIONS * 60, codes[i]))


if __name__ == "__main__":
    main()
