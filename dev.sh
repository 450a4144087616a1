#!/usr/bin/env bash
# The two commands of the README:
#   ./dev.sh run  [spoke args...]   set up, build, run the default pipeline (connectors.yaml)
#   ./dev.sh test [--sanitize]      set up, build, run the whole test suite (ctest)
# Set-up installs only the Debian packages that are missing (apt-get, as root
# or through sudo). SPOKE_WERROR=1 builds with warnings as errors (CI does).
set -euo pipefail
cd "$(dirname "$0")"

# libcurl's GnuTLS flavour: libmicrohttpd (the REST API) already runs GnuTLS,
# so the HTTP sources add no second TLS library (bench/README.md, idle RSS).
# It conflicts with libcurl4-openssl-dev, which apt-get then removes.
PACKAGES=(gcc g++ libc6-dev make cmake pkg-config python3
          libjansson-dev libyaml-dev libyajl-dev libcurl4-gnutls-dev librdkafka-dev
          libmicrohttpd-dev libsimdjson-dev libjemalloc-dev
          libgnutls28-dev                   # cassandra_sink's TLS (GnuTLS, as libcurl's and the REST server's)
          liblz4-dev                        # cassandra_sink's compression (liblz4 is librdkafka's already)
          kcat python3-cassandra            # independent Kafka and CQL clients for the tests
          python3-lz4                       # the CQL test server's lz4 frames
          openssl                           # test certificates (cassandra_sink's TLS tests)
          clang libclang-rt-14-dev)  # clang + libFuzzer: ctest fuzz-rest

setup() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "dev.sh: installing missing Debian packages: ${missing[*]}" >&2
        local sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

build() {  # build DIR [cmake args...]
    local dir=$1; shift
    local werror=OFF
    [ "${SPOKE_WERROR:-0}" = 1 ] && werror=ON
    cmake -S . -B "$dir" -DSPOKE_WERROR="$werror" "$@" >/dev/null
    cmake --build "$dir" -j"$(nproc)"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
run)
    setup
    build build
    exec build/spoke run -c connectors.yaml "$@"
    ;;
test)
    setup
    if [ "${1:-}" = "--sanitize" ]; then
        build build-asan -DSPOKE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
        exec ctest --test-dir build-asan --output-on-failure -j2
    fi
    build build
    exec ctest --test-dir build --output-on-failure -j2
    ;;
*)
    echo "usage: ./dev.sh run [spoke args...] | ./dev.sh test [--sanitize]" >&2
    exit 2
    ;;
esac
