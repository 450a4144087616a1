#!/usr/bin/env bash
# Kafka benchmark (bench/README.md, "Kafka"): spoke beside kcat on the same
# librdkafka mock cluster. usage: bench/kafka/run.sh [N] [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
command -v kcat >/dev/null || { echo "kcat is needed (apt-get install kcat)" >&2; exit 1; }
cmake -S "$root" -B "$root/build-rel" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build-rel" -j"$(nproc)" --target spoke file_source kafka_sink kafka_source null_sink mockcluster groupoffsets >/dev/null
work=${WORK:-/tmp/spoke-bench-kafka}
/usr/bin/python3 "$here/bench.py" "$root/build-rel" "$work" "${1:-1000000}" "${2:-3}"
