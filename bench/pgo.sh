#!/usr/bin/env bash
# A profile-guided build of Spoke (GCC's PGO), for the benchmarks:
#
#   bench/pgo.sh [BUILD_DIR=build-pgo] [TRAIN_RECORDS=300000]
#
# 1. configures BUILD_DIR as Release with -DSPOKE_PGO=generate and builds it
#    (instrumented: every spoke writes its profile when it exits);
# 2. trains it: bench/velib/bench.py BENCH_ONLY=train runs the Vélib'
#    pipelines the benchmark measures on TRAIN_RECORDS records generated
#    with another seed than the benchmark's, and 30 polls of the snapshot
#    pipeline when ../shared/data is there;
# 3. reconfigures the same directory with -DSPOKE_PGO=use and rebuilds it.
#
# Then e.g. BENCH_ONLY=target SPOKE_BUILD=build-rel BENCH_ALSO=build-pgo
# bench/velib/run.sh runs both builds in the same rounds (bench/README.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dir=$(realpath -m "${1:-build-pgo}")
n=${2:-300000}
profiles=$dir/pgo-profile

rm -rf "$profiles"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DSPOKE_PGO=generate \
      -DSPOKE_PGO_DIR="$profiles" >/dev/null
cmake --build "$dir" -j"$(nproc)" >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/velib/gen.py "$n" "$work" 7
SPOKE_BUILD=$dir BENCH_ONLY=train BENCH_SNAPSHOT_POLLS=${BENCH_SNAPSHOT_POLLS:-30} \
    python3 bench/velib/bench.py "$root" "$work" "$n" 1
count=$(find "$profiles" -name '*.gcda' | wc -l)
[ "$count" -gt 0 ] || { echo "pgo: the training wrote no profile in $profiles" >&2; exit 1; }
echo "pgo: $count profiles in $profiles"

cmake -S . -B "$dir" -DSPOKE_PGO=use >/dev/null
cmake --build "$dir" -j"$(nproc)" >/dev/null
echo "pgo: $dir/spoke is built with them"
