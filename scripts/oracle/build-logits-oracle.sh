#!/usr/bin/env bash
# Compiles scripts/oracle/logits_oracle.c against the oracle build (building
# that first if needed, scripts/oracle/build-llama-cpp.sh) into the oracle's
# cache. Prints the program's path on its last line.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$("$root/scripts/oracle/build-llama-cpp.sh" | tail -n 1)
src="$(dirname "$build")/src/vendor/llama.cpp"
bin="$(dirname "$build")/logits_oracle"

cc -std=c11 -O2 -Wall -Wextra -Werror \
    -I"$src/include" -I"$src/ggml/include" \
    "$root/scripts/oracle/logits_oracle.c" -o "$bin" \
    -L"$build/bin" -Wl,-rpath,"$build/bin" -lllama -lggml -lggml-base -lggml-cpu
echo "$bin"
