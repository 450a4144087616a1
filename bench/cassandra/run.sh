#!/usr/bin/env bash
# cassandra_sink benchmark: rows/s from file_source -> cassandra_sink into the
# CQL v4 test server (tests/cql/cqlserver.py), pipelined batches against one
# request at a time, spoke's peak RSS. Not a test: figures vary with load.
#
#   bench/cassandra/run.sh [N=1000000] [RUNS=5]
#
# spoke is pinned to CPU 0 and the server to CPU 1 (taskset). The server runs
# with --blackhole (answers writes without decoding rows) so the Python server
# is not what is measured; "store" runs keep every row, as the tests do.
# Needs an optimized build (./dev.sh run builds build/; or SPOKE_BUILD=dir).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
n=${1:-1000000}
runs=${2:-5}
command -v taskset >/dev/null || { echo "bench: taskset not found (util-linux)" >&2; exit 2; }
[ -f "$root/tests/cql/cqlserver.py" ] || { echo "bench: tests/cql/cqlserver.py missing" >&2; exit 2; }
exec /usr/bin/python3 "$here/bench.py" "$root" "$n" "$runs"
