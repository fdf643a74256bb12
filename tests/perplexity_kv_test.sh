#!/usr/bin/env bash
# hearth perplexity with a Q8_0 KV cache against the same run with f16, on
# the fixture text: the quantized cache may move the value by at most LIMIT
# percent (0.5 by default). The first CHUNKS chunks of 512 tokens are scored
# (all of them when CHUNKS is "all" or empty).
#
#   perplexity_kv_test.sh HEARTH MODEL_FILE TEXT [CHUNKS] [LIMIT]
# MODEL_FILE is a file name in ~/.cache/hearth/models (for the default model,
# $HEARTH_MODEL overrides it, as it does for hearth).
set -euo pipefail
hearth=$1 model_file=$2 text=$3 chunks=${4:-} limit=${5:-0.5}
[ "$chunks" != all ] || chunks=
model=${XDG_CACHE_HOME:-$HOME/.cache}/hearth/models/$model_file
[ "$model_file" != gemma-3-270m-q4_k_m.gguf ] || model=${HEARTH_MODEL:-$model}
if [ ! -r "$model" ]; then
    echo "SKIP: $model not installed (scripts/setup.sh installs it)"
    exit 77
fi

ppl() {
    "$hearth" perplexity -m "$model" -f "$text" -c 512 ${chunks:+--chunks "$chunks"} --kv-type "$1" |
        sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'
}
f16=$(ppl f16)
q8=$(ppl q8_0)
if [ -z "$f16" ] || [ -z "$q8" ]; then
    echo "FAIL: could not read the perplexities (f16 '$f16', q8_0 '$q8')"
    exit 1
fi
python3 - "$f16" "$q8" "$limit" "${chunks:-all}" <<'PY'
import sys
f16, q8, limit, chunks = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
change = 100 * (q8 - f16) / f16
print(f"perplexity over {chunks} chunks: f16 {f16:.4f}, q8_0 {q8:.4f}, change {change:+.3f} % (limit {limit:g} %)")
sys.exit(0 if abs(change) <= limit else 1)
PY
