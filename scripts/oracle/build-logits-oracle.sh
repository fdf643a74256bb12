#!/usr/bin/env bash
# Compiles scripts/oracle/logits_oracle.c (or another program that calls
# llama.h, such as bench/tokenize_llama.c) against the oracle build (building
# that first if needed, scripts/oracle/build-llama-cpp.sh) into the oracle's
# cache. Prints the program's path on its last line.
#
#   scripts/oracle/build-logits-oracle.sh [PROGRAM.c]
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
program=${1:-$root/scripts/oracle/logits_oracle.c}
build=$("$root/scripts/oracle/build-llama-cpp.sh" | tail -n 1)
src="$(dirname "$build")/src/vendor/llama.cpp"
bin="$(dirname "$build")/$(basename "$program" .c)"

cc -std=c11 -O2 -Wall -Wextra -Werror \
    -I"$src/include" -I"$src/ggml/include" -I"$root/src" \
    "$program" -o "$bin" \
    -L"$build/bin" -Wl,-rpath,"$build/bin" -lllama -lggml -lggml-base -lggml-cpu
echo "$bin"
