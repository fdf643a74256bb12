#!/usr/bin/env bash
# Tokenizer throughput, hearth against llama.cpp, on the same 1 MiB of mixed
# text and the same vocabulary, one thread each, in one run: MB/s of both and
# the ratio, and whether the two produced the same ids (a hash of them).
#
#   bench/tokenize_compare.sh [-r RUNS] [-o TEXT] [VOCAB.gguf ...]
#
# Vocabularies by default: GPT-2's (the shared test data) and SmolLM2's (the
# model scripts/setup.sh installs), those present. The text is deterministic:
# the valid UTF-8 cases of tests/fixtures/tokenizer/corpus.txt, then
# sentences drawn by a fixed LCG from word lists of eleven languages and
# scripts, numbers and code, to 1 MiB (cut at a character). -o keeps it.
# Both run without BOS and with special tokens as text; best of RUNS (default
# 5) after a warm-up. llama.cpp's side is bench/tokenize_llama.c, built
# against the oracle (scripts/oracle/build-logits-oracle.sh).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
runs=5 keep=
while [ $# -gt 0 ]; do
    case $1 in
    -r) runs=$2; shift 2 ;;
    -o) keep=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "tokenize_compare.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    *) break ;;
    esac
done
vocabs=("$@")
if [ ${#vocabs[@]} -eq 0 ]; then
    for v in "$root/../shared/data/tokenizer/ggml-vocab-gpt-2.gguf" \
        "${XDG_CACHE_HOME:-$HOME/.cache}/hearth/models/smollm2-135m-instruct-q4_1.gguf"; do
        [ -r "$v" ] && vocabs+=("$v")
    done
fi
[ ${#vocabs[@]} -gt 0 ] || { echo "tokenize_compare.sh: no vocabulary found (see --help)" >&2; exit 1; }

bench="$root/build/hearth-bench-tokenize"
[ -x "$bench" ] || { echo "tokenize_compare.sh: build hearth first (make build)" >&2; exit 1; }
llama=$("$root/scripts/oracle/build-logits-oracle.sh" "$root/bench/tokenize_llama.c" | tail -n 1)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
text=${keep:-$work/text.txt}
python3 - "$root/tests/fixtures/tokenizer/corpus.txt" "$text" <<'PY'
import sys
SIZE = 1 << 20
corpus = open(sys.argv[1], "rb").read().split(b"\n__ggml_vocab_test__\n")[:-1]
parts = []
for case in corpus:
    try:
        parts.append(case.decode("utf-8"))
    except UnicodeDecodeError:
        pass
WORDS = [
    "the quick brown fox jumps over lazy dog while tokenizers split text into pieces and merge them again".split(),
    "Größe Übung schön Straße Mädchen Fußball Käse über für während".split(),
    "élève déjà naïve café crème garçon où là-bas français hôpital".split(),
    "señor niño mañana corazón canción pingüino árbol también".split(),
    "привет мир язык модель текст слово быстрый лиса собака".split(),
    "καλημέρα κόσμε γλώσσα μοντέλο κείμενο λέξη".split(),
    "我们 今天 去 公园 语言 模型 分词 测试 中文 文本".split(),
    "日本語 の テキスト を 分割 します トークン 東京 ひらがな カタカナ".split(),
    "한국어 문장 토큰 모델 서울 안녕하세요 감사합니다".split(),
    "हिन्दी भाषा नमस्ते दुनिया मॉडल पाठ".split(),
    "مرحبا بالعالم اللغة العربية نموذج نص".split(),
    "def return self None True False for in if else import print len range".split(),
]
PUNCT = [" ", " ", " ", " ", ", ", ". ", "! ", "? ", "; ", ": ", " — ", "\n", "\n\n", "\t", "    "]
state = 20260517
def rand(n):
    global state
    state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
    return (state >> 33) % n
out, size = [], 0
while size < SIZE:
    if rand(40) == 0:
        s = parts[rand(len(parts))] + "\n"
    else:
        lang = WORDS[rand(len(WORDS))]
        words = []
        for _ in range(3 + rand(12)):
            w = lang[rand(len(lang))]
            if rand(8) == 0:
                w = w.capitalize()
            if rand(12) == 0:
                w = str(rand(100000)) if rand(2) else f"{rand(1000)}.{rand(100):02d}"
            words.append(w + PUNCT[rand(len(PUNCT))])
        s = "".join(words)
    out.append(s)
    size += len(s.encode("utf-8"))
data = "".join(out).encode("utf-8")[:SIZE].decode("utf-8", "ignore").encode("utf-8")
open(sys.argv[2], "wb").write(data)
PY

echo "text: $(wc -c <"$text") bytes; best of $runs runs after a warm-up; one thread each"
for v in "${vocabs[@]}"; do
    h=$("$bench" "$v" "$text" "$runs")
    l=$("$llama" "$v" "$text" "$runs")
    echo "$(basename "$v"):"
    echo "  $h"
    echo "  $l"
    python3 - "$h" "$l" <<'PY'
import sys
h, l = (s.split() for s in sys.argv[1:3])
hm, lm = float(h[3]), float(l[3])
same = "same ids" if h[1] == l[1] and h[-1] == l[-1] else "DIFFERENT ids"
print(f"  hearth / llama.cpp: {hm / lm:.2f}x ({same})")
PY
done
