#!/usr/bin/env bash
# Tokenizes tests/fixtures/tokenizer/corpus.txt (or another file of texts in
# its format) with llama.cpp (the oracle's llama-tokenize) on a model's
# vocabulary, in the two modes tests compare:
#   NAME.special.out  with BOS and special tokens parsed in the text
#   NAME.plain.out    without BOS, special tokens as plain text
# one line of ids per corpus case.
#
#   scripts/oracle/make_tokenizer_fixtures.sh MODEL.gguf NAME [CORPUS]
set -euo pipefail
model=$1 name=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
oracle=$("$root/scripts/oracle/build-llama-cpp.sh" | tail -n 1)
corpus="${3:-$root/tests/fixtures/tokenizer/corpus.txt}"
out="$root/tests/fixtures/tokenizer"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Split the corpus into one file per case (exact bytes, no trailing newline).
python3 - "$corpus" "$work" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
cases = data.split(b"\n__ggml_vocab_test__\n")[:-1]
for i, c in enumerate(cases):
    open(f"{sys.argv[2]}/case-{i:03d}.txt", "wb").write(c)
PY

: >"$work/special" && : >"$work/plain"
for f in "$work"/case-*.txt; do
    "$oracle/bin/llama-tokenize" -m "$model" -f "$f" --ids --log-disable --no-escape 2>/dev/null |
        tr -d '[],' >>"$work/special"
    "$oracle/bin/llama-tokenize" -m "$model" -f "$f" --ids --log-disable --no-escape --no-bos --no-parse-special 2>/dev/null |
        tr -d '[],' >>"$work/plain"
done
cp "$work/special" "$out/$name.special.out"
cp "$work/plain" "$out/$name.plain.out"
echo "wrote $out/$name.special.out and $name.plain.out ($(wc -l <"$work/plain") cases)"
