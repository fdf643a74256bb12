#!/usr/bin/env bash
# Builds the oracle: llama.cpp from the sources vendored in PyPI's llama-cpp-python
# source package, into a cache outside the repository. Idempotent: a finished build
# is reused. Prints the build directory on its last line.
#
#   scripts/oracle/build-llama-cpp.sh            # build (or reuse) the oracle
#   HEARTH_ORACLE_DIR=/somewhere scripts/...     # choose the cache
set -euo pipefail

cache="${HEARTH_ORACLE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/oracle}"
mkdir -p "$cache"
build="$cache/build"

if [ -x "$build/bin/llama-cli" ] && [ -f "$build/.hearth-complete" ]; then
    echo "$build"
    exit 0
fi

if [ ! -d "$cache/src/vendor/llama.cpp" ]; then
    dl="$cache/download"
    rm -rf "$dl" && mkdir -p "$dl"
    pip download --no-binary :all: --no-deps -d "$dl" llama-cpp-python >&2
    tarball=$(ls "$dl"/llama_cpp_python-*.tar.gz | head -n 1)
    rm -rf "$cache/src" && mkdir -p "$cache/src"
    tar -xzf "$tarball" -C "$cache/src" --strip-components=1
fi

# The oracle is built for this machine's CPU; it is a reference, not a peer in a
# portable benchmark, and -march=native is what a llama.cpp user builds with.
cmake -S "$cache/src/vendor/llama.cpp" -B "$build" \
    -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=ON >&2
cmake --build "$build" -j "$(nproc)" >&2
touch "$build/.hearth-complete"
echo "$build"
