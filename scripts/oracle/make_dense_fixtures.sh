#!/usr/bin/env bash
# Writes the golden fixtures of the dense architectures from llama.cpp (the
# oracle) into tests/fixtures/ARCH/, for the tiny random-weight models that
# scripts/oracle/make_dense_model.py writes (ARCH qwen3, qwen2, llama; variants
# f16, q8_0, q4_k_m):
#   topk-VARIANT.txt    top-10 logits at each of 512 positions of a fixed
#                       sequence of random token ids, in one batch (prefill)
#   decode-VARIANT.txt  the same for its first 256 positions, one token per
#                       llama_decode call (decode)
# (logits_oracle.c topk-ids). Each file first records the CRC-32 of its model's
# tensor data, so tests/test_dense.c knows it runs the bytes llama.cpp ran (the
# test regenerates the models with the same script). Idempotent: builds (or
# reuses) the oracle and rewrites the files.
#
#   scripts/oracle/make_dense_fixtures.sh [ARCH...]    # default: all three
#   HEARTH_ORACLE_DIR=/somewhere scripts/...           # choose the oracle cache
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
generator="$root/scripts/oracle/make_dense_model.py"
bin=$("$root/scripts/oracle/build-logits-oracle.sh" | tail -n 1)
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(qwen3 qwen2 llama)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$generator" tiny "$work" >/dev/null

for arch in "${archs[@]}"; do
    out="$root/tests/fixtures/$arch"
    mkdir -p "$out"
    python3 "$generator" tiny-ids "$arch" >"$work/ids.txt"
    cut -d' ' -f1-256 "$work/ids.txt" >"$work/ids-256.txt"
    for variant in f16 q8_0 q4_k_m; do
        model="$work/$arch-tiny-$variant.gguf"
        crc=$(python3 "$generator" weights-crc32 "$model")
        for kind in topk decode; do
            if [ $kind = topk ]; then
                "$bin" topk-ids "$model" "$work/ids.txt" "$work/out.txt"
            else
                "$bin" topk-ids "$model" "$work/ids-256.txt" "$work/out.txt" 1
            fi
            {
                echo "# Model: $arch-tiny-$variant.gguf from scripts/oracle/make_dense_model.py tiny,"
                echo "# whose tensor data (all tensors in file order) has this CRC-32:"
                echo "weights_crc32 $crc"
                cat "$work/out.txt"
            } >"$out/$kind-$variant.txt"
        done
    done
    echo "wrote $out/{topk,decode}-{f16,q8_0,q4_k_m}.txt"
done
