#!/usr/bin/env bash
# Writes the golden fixtures of a real model from llama.cpp (the oracle) into
# tests/fixtures/NAME/:
#   greedy.txt      3 prompts, 64 greedy tokens each            (logits_oracle.c)
#   topk.txt        top-10 logits at each of 512 positions of the text (logits_oracle.c)
#   perplexity.txt  llama-perplexity on the text, -c 512 -b 512 -t 2
# The text is tests/fixtures/text/genesis-1-28.txt. NAME is one of the models
# scripts/setup.sh installs: gemma3 (Gemma 3 270M Q4_K_M, the default model)
# or smollm2 (SmolLM2 135M Instruct Q4_1). Idempotent: builds (or reuses) the
# oracle, compiles logits_oracle.c into the oracle's cache, and rewrites the
# three files.
#
#   scripts/oracle/make_real_model_fixtures.sh NAME [MODEL.gguf]   # another file of that model
#   HEARTH_ORACLE_DIR=/somewhere scripts/...                      # choose the oracle cache
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
name=${1:-}
models=${XDG_CACHE_HOME:-$HOME/.cache}/hearth/models
case $name in
gemma3) default_model=$models/gemma-3-270m-q4_k_m.gguf label="Gemma 3" ;;
smollm2) default_model=$models/smollm2-135m-instruct-q4_1.gguf label="SmolLM2" ;;
*) echo "usage: $0 gemma3|smollm2 [MODEL.gguf]" >&2; exit 2 ;;
esac
model=${2:-$default_model}
[ -f "$model" ] || { echo "no model at $model (scripts/setup.sh installs it)" >&2; exit 1; }
model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
text=tests/fixtures/text/genesis-1-28.txt
out="$root/tests/fixtures/$name"

build=$("$root/scripts/oracle/build-llama-cpp.sh" | tail -n 1)
bin=$("$root/scripts/oracle/build-logits-oracle.sh" | tail -n 1)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
cd "$root"   # so the text's path in the fixtures is the repository's

SECONDS=0
"$bin" greedy "$model" "$work/greedy.txt"
"$bin" topk "$model" "$text" "$work/topk.txt"
echo "logits_oracle: ${SECONDS}s" >&2

n_tokens=$("$build/bin/llama-tokenize" -m "$model" -f "$text" --ids --log-disable 2>/dev/null |
    tr -d '[],' | wc -w)
SECONDS=0
"$build/bin/llama-perplexity" -m "$model" -f "$text" -c 512 -b 512 -t 2 >"$work/ppl.log" 2>&1
echo "llama-perplexity: ${SECONDS}s" >&2
{
    echo "# $label perplexity from llama.cpp (scripts/oracle/make_real_model_fixtures.sh $name)."
    echo "# command: llama-perplexity -m $(basename "$model") -f $text -c 512 -b 512 -t 2"
    echo "# tokens: $n_tokens (llama-tokenize, BOS included)"
    echo "# Each chunk is 512 tokens, its first replaced by BOS (if the model adds one); the last 255 predictions"
    echo "# of each are scored. The lines below are llama-perplexity's own output."
    # Without the log's timestamp and level prefix ("0.02.614.451 I ").
    grep -E 'tokenizing the input|calculating perplexity over|Final estimate: PPL|^\[1\]' \
        "$work/ppl.log" | sed -E 's/^[0-9.]+ [A-Z] //'
} >"$work/perplexity.txt"
grep -q 'Final estimate' "$work/perplexity.txt" || { cat "$work/ppl.log" >&2; exit 1; }

cp "$work/greedy.txt" "$work/topk.txt" "$work/perplexity.txt" "$out/"
echo "wrote $out/greedy.txt, topk.txt and perplexity.txt"
