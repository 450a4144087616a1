#!/usr/bin/env bash
# Vélib' pipeline benchmark: Spoke beside python3+json, jq and miller, on the
# same generated input, in one session. Not a test: figures vary with load.
#
#   bench/velib/run.sh [N=1000000] [RUNS=5]
#
# Needs an optimized build (./dev.sh run builds build/ with RelWithDebInfo;
# or set SPOKE_BUILD=/path/to/build) and the peers: apt-get install jq miller.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
n=${1:-1000000}
runs=${2:-5}
for tool in python3 jq mlr; do
    command -v "$tool" >/dev/null || { echo "bench: $tool not found (apt-get install jq miller)" >&2; exit 2; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$here/gen.py" "$n" "$work"
python3 "$here/bench.py" "$root" "$work" "$n" "$runs"
