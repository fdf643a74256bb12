#!/usr/bin/env bash
# Writes the Qwen 3 golden fixtures from llama.cpp (the oracle) into
# tests/fixtures/qwen3/, for the tiny random-weight models that
# scripts/oracle/make_qwen3_model.py writes (variants f16, q8_0, q4_k_m):
#   topk-VARIANT.txt    top-10 logits at each of 512 positions of a fixed
#                       sequence of random token ids, in one batch (prefill)
#   decode-VARIANT.txt  the same for its first 256 positions, one token per
#                       llama_decode call (decode)
# (logits_oracle.c topk-ids). Each file first records the CRC-32 of its model's
# tensor data, so tests/test_qwen3.c knows it runs the bytes llama.cpp ran (the
# test regenerates the models with the same script). Idempotent: builds (or
# reuses) the oracle and rewrites the six files.
#
#   scripts/oracle/make_qwen3_fixtures.sh
#   HEARTH_ORACLE_DIR=/somewhere scripts/...   # choose the oracle cache
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/tests/fixtures/qwen3"
generator="$root/scripts/oracle/make_qwen3_model.py"
bin=$("$root/scripts/oracle/build-logits-oracle.sh" | tail -n 1)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
python3 "$generator" tiny "$work" >/dev/null
# Ids of the tiny model's byte and merged tokens (0..1999), none of the added
# or padding ones: a random model reads any token as well as another.
python3 -c 'import numpy as np; print(" ".join(map(str, np.random.RandomState(20260302).randint(0, 2000, 512))))' \
    >"$work/ids.txt"
cut -d' ' -f1-256 "$work/ids.txt" >"$work/ids-256.txt"

for variant in f16 q8_0 q4_k_m; do
    model="$work/qwen3-tiny-$variant.gguf"
    crc=$(python3 "$generator" weights-crc32 "$model")
    for kind in topk decode; do
        if [ $kind = topk ]; then
            "$bin" topk-ids "$model" "$work/ids.txt" "$work/out.txt"
        else
            "$bin" topk-ids "$model" "$work/ids-256.txt" "$work/out.txt" 1
        fi
        {
            echo "# Model: qwen3-tiny-$variant.gguf from scripts/oracle/make_qwen3_model.py tiny,"
            echo "# whose tensor data (all tensors in file order) has this CRC-32:"
            echo "weights_crc32 $crc"
            cat "$work/out.txt"
        } >"$out/$kind-$variant.txt"
    done
done
echo "wrote $out/{topk,decode}-{f16,q8_0,q4_k_m}.txt"
