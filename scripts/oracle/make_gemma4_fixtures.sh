#!/usr/bin/env bash
# Writes the golden fixtures of Gemma 4 from llama.cpp (the oracle) into
# tests/fixtures/gemma4/, for the tiny random-weight models that
# scripts/oracle/make_gemma4_model.py writes (VARIANT e2b, a4b; types f16,
# q8_0, q4_k_m):
#   VARIANT-topk-TYPE.txt    top-10 logits at each of 512 positions of a fixed
#                            sequence of random token ids, in one batch
#   VARIANT-decode-TYPE.txt  the same for its first 256 positions, one token
#                            per llama_decode call
# (logits_oracle.c topk-ids). Each file first records the CRC-32 of its
# model's tensor data, so tests/test_gemma4.c knows it runs the bytes
# llama.cpp ran. Idempotent: builds (or reuses) the oracle and rewrites the files.
#
#   scripts/oracle/make_gemma4_fixtures.sh [VARIANT...]    # default: both
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
generator="$root/scripts/oracle/make_gemma4_model.py"
bin=$("$root/scripts/oracle/build-logits-oracle.sh" | tail -n 1)
which=("$@")
[ ${#which[@]} -gt 0 ] || which=(e2b a4b)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$generator" tiny "$work" >/dev/null
out="$root/tests/fixtures/gemma4"
mkdir -p "$out"

for v in "${which[@]}"; do
    python3 "$generator" tiny-ids "$v" >"$work/ids.txt"
    cut -d' ' -f1-256 "$work/ids.txt" >"$work/ids-256.txt"
    for type in f16 q8_0 q4_k_m; do
        model="$work/gemma4-$v-tiny-$type.gguf"
        crc=$(python3 "$generator" weights-crc32 "$model")
        for kind in topk decode; do
            if [ $kind = topk ]; then
                "$bin" topk-ids "$model" "$work/ids.txt" "$work/out.txt"
            else
                "$bin" topk-ids "$model" "$work/ids-256.txt" "$work/out.txt" 1
            fi
            {
                echo "# Model: gemma4-$v-tiny-$type.gguf from scripts/oracle/make_gemma4_model.py tiny,"
                echo "# whose tensor data (all tensors in file order) has this CRC-32:"
                echo "weights_crc32 $crc"
                cat "$work/out.txt"
            } >"$out/$v-$kind-$type.txt"
        done
    done
    echo "wrote $out/$v-{topk,decode}-{f16,q8_0,q4_k_m}.txt"
done
