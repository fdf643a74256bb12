#!/usr/bin/env bash
# Writes the golden fixtures of qwen35 and qwen35moe (Qwen 3.5 / 3.6) from
# llama.cpp (the oracle) into tests/fixtures/qwen35/, for the tiny
# random-weight models that scripts/oracle/make_qwen35_model.py writes
# (ARCH qwen35, qwen35moe; VARIANT f16, q8_0, q4_k_m):
#   topk-ARCH-VARIANT.txt    top-10 logits at each of 512 positions of a fixed
#                            sequence of random token ids, in one batch
#                            (prefill: eight of the DeltaNet's 64-token chunks)
#   decode-ARCH-VARIANT.txt  the same for its first 256 positions, one token
#                            per llama_decode call (decode: the recurrent step)
# (logits_oracle.c topk-ids), each headed by the CRC-32 of its model's tensor
# data, as scripts/oracle/make_gpt_oss_fixtures.sh does. Idempotent.
#
#   scripts/oracle/make_qwen35_fixtures.sh
#   HEARTH_ORACLE_DIR=/somewhere scripts/...    # choose the oracle cache
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
generator="$root/scripts/oracle/make_qwen35_model.py"
bin=$("$root/scripts/oracle/build-logits-oracle.sh" | tail -n 1)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$generator" tiny "$work" >/dev/null

out="$root/tests/fixtures/qwen35"
mkdir -p "$out"
python3 "$generator" tiny-ids >"$work/ids.txt"
cut -d' ' -f1-256 "$work/ids.txt" >"$work/ids-256.txt"
for arch in qwen35 qwen35moe; do
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
                echo "# Model: $arch-tiny-$variant.gguf from scripts/oracle/make_qwen35_model.py tiny,"
                echo "# whose tensor data (all tensors in file order) has this CRC-32:"
                echo "weights_crc32 $crc"
                cat "$work/out.txt"
            } >"$out/$kind-$arch-$variant.txt"
        done
    done
done
echo "wrote $out/{topk,decode}-{qwen35,qwen35moe}-{f16,q8_0,q4_k_m}.txt"
