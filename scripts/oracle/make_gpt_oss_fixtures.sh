#!/usr/bin/env bash
# Writes the golden fixtures of gpt-oss from llama.cpp (the oracle) into
# tests/fixtures/gpt-oss/, for the tiny random-weight models that
# scripts/oracle/make_gpt_oss_model.py writes (variants mxfp4, q8_0):
#   topk-VARIANT.txt    top-10 logits at each of 512 positions of a fixed
#                       sequence of random token ids, in one batch (prefill)
#   decode-VARIANT.txt  the same for its first 256 positions, one token per
#                       llama_decode call (decode)
# (logits_oracle.c topk-ids), each headed by the CRC-32 of its model's tensor
# data, as scripts/oracle/make_dense_fixtures.sh does. Idempotent.
#
#   scripts/oracle/make_gpt_oss_fixtures.sh
#   HEARTH_ORACLE_DIR=/somewhere scripts/...    # choose the oracle cache
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
generator="$root/scripts/oracle/make_gpt_oss_model.py"
bin=$("$root/scripts/oracle/build-logits-oracle.sh" | tail -n 1)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$generator" tiny "$work" >/dev/null

out="$root/tests/fixtures/gpt-oss"
mkdir -p "$out"
python3 "$generator" tiny-ids >"$work/ids.txt"
cut -d' ' -f1-256 "$work/ids.txt" >"$work/ids-256.txt"
for variant in mxfp4 q8_0; do
    model="$work/gpt-oss-tiny-$variant.gguf"
    crc=$(python3 "$generator" weights-crc32 "$model")
    for kind in topk decode; do
        if [ $kind = topk ]; then
            "$bin" topk-ids "$model" "$work/ids.txt" "$work/out.txt"
        else
            "$bin" topk-ids "$model" "$work/ids-256.txt" "$work/out.txt" 1
        fi
        {
            echo "# Model: gpt-oss-tiny-$variant.gguf from scripts/oracle/make_gpt_oss_model.py tiny,"
            echo "# whose tensor data (all tensors in file order) has this CRC-32:"
            echo "weights_crc32 $crc"
            cat "$work/out.txt"
        } >"$out/$kind-$variant.txt"
    done
done
echo "wrote $out/{topk,decode}-{mxfp4,q8_0}.txt"
