#!/usr/bin/env bash
# hearth perplexity against llama-perplexity's output on the same text
# (tests/fixtures/NAME/perplexity.txt, from scripts/oracle/make_real_model_fixtures.sh NAME)
# for a model scripts/setup.sh installs: over the whole text (Gemma 3: 49 chunks,
# 12,495 scored tokens) hearth's value must be within 0.5 % of llama.cpp's. With CHUNKS, only the first CHUNKS chunks are scored
# and compared with llama.cpp's running value after as many, within LIMIT
# percent (default 2): over a few hundred tokens the two engines' last-bit
# differences (see tests/test_gemma3.c) move the value by about 1 % (measured:
# 0.6 % after one chunk, 1.2 % after two). CI scores 16 chunks within 1 %
# (measured: Gemma 3 -0.39 %, SmolLM2 +0.18 %; after all 49: -0.14 %, +0.23 %),
# a third of the time of the whole text; the sanitizer build one chunk, within
# 2 %, to check the machinery.
#
#   perplexity_test.sh HEARTH MODEL_FILE FIXTURE TEXT [CHUNKS [LIMIT]]
# MODEL_FILE is a file name in ~/.cache/hearth/models (for the default model,
# $HEARTH_MODEL overrides it, as it does for hearth).
set -euo pipefail
hearth=$1 model_file=$2 fixture=$3 text=$4 chunks=${5:-} chunk_limit=${6:-2}
model=${XDG_CACHE_HOME:-$HOME/.cache}/hearth/models/$model_file
[ "$model_file" != gemma-3-270m-q4_k_m.gguf ] || model=${HEARTH_MODEL:-$model}
if [ ! -r "$model" ]; then
    echo "SKIP: $model not installed (scripts/setup.sh installs it)"
    exit 77
fi

running=$(grep -oE '(\[[0-9]+\][0-9.]+,)+' "$fixture" | tr ',' '\n' | sed -n 's/^\[\([0-9]*\)\]\(.*\)$/\1 \2/p')
if [ -n "$chunks" ]; then
    expected=$(echo "$running" | awk -v c="$chunks" '$1 == c { print $2 }')
    out=$("$hearth" perplexity -m "$model" -f "$text" -c 512 --chunks "$chunks")
    got=$(echo "$out" | grep -oE "\[$chunks\][0-9.]+" | sed 's/.*\]//')
    what="running perplexity after $chunks chunks"
else
    expected=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$fixture")
    out=$("$hearth" perplexity -m "$model" -f "$text" -c 512)
    got=$(echo "$out" | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
    what="final perplexity"
fi
echo "$out" | tail -n 1
if [ -z "$expected" ] || [ -z "$got" ]; then
    echo "FAIL: could not read the $what (expected '$expected', got '$got')"
    exit 1
fi
limit=$([ -n "$chunks" ] && echo "$chunk_limit" || echo 0.5)
python3 - "$got" "$expected" "$what" "$limit" <<'PY'
import sys
got, expected, what, limit = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], float(sys.argv[4]) / 100
diff = abs(got - expected) / expected
print(f"{what}: hearth {got:.4f}, llama.cpp {expected:.4f}, difference {100 * diff:.3f} % (limit {100 * limit:g} %)")
sys.exit(0 if diff <= limit else 1)
PY
