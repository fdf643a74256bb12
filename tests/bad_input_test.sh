#!/usr/bin/env bash
# bad_input_test.sh HEARTH DENSE_DIR DEMO_GGUF TMPDIR
#
# Issue 11's bad-input table, end to end through the hearth binary: broken
# copies of the tiny random-weight Qwen 3 model (tests/make_bad_models.py
# writes them from the dense_tiny_models fixture) and hostile prompts. Each
# must give a clear message and exit code, never a signal or a sanitizer
# report, and leave the next request working. The gguf reader's own unit
# test (test_gguf's test_malformed, hand-made images, every check) holds the
# finer cases; this one checks that a real architecture's file, so damaged,
# reaches the user as a message naming the problem.
#
#   row                          outcome                                                  checked by
#   ---------------------------  -------------------------------------------------------  --------------------------------
#   wrong magic                  exit 1, "bad magic"                                       here (run, info); test_gguf; cli
#   version 1                    exit 1, "GGUF version 1 is not supported"                 here (run, info); test_gguf
#   2^60 tensors                 exit 1, "tensor count ... exceeds what the file can hold" here (run, info); test_gguf
#   dims product overflow        exit 1, "tensor T: element count overflows"               here (run, info); test_gguf
#   offset past EOF              exit 1, "tensor T: bytes A..B ... run past end of file"   here (run, info); test_gguf
#   unaligned offset             exit 1, "offset N is not a multiple of the alignment 32"  here (run, info); test_gguf
#   unknown type                 exit 1, "tensor T: unknown type 99"                       here (run, info); test_gguf
#   string length past EOF       exit 1, "key general.name: string value runs past end"    here (run, info); test_gguf
#   truncated file               exit 1, "past end of file"                                cli (9 cuts); test_gguf (every cut)
#   vocab size != embedding rows exit 1, "token_embd.weight: 2048 rows, but the            here (run; info says why it
#                                vocabulary (tokenizer.ggml.tokens) has 2049 tokens"         cannot size a session)
#   missing required tensor      exit 1, "tensor blk.2.attn_k.weight: missing"             here (run, info)
#   missing required key         exit 1, "qwen3.embedding_length: missing"                 here (run, info)
#   unknown architecture         exit 1, "general.architecture: 'noarc' is not supported"  cli
#   tensor of the wrong shape    exit 1, "tensor blk.1.ffn_up.weight: shape [512, 256,     here (run, info)
#                                1, 1], expected [256, 512]"
#   NaN weights                  exit 1, "the model produced NaN or infinite logits        here (run, chat)
#                                (position N): its weights may be corrupt"; the server:    here (serve)
#                                HTTP 500 with that message, and it stays up;
#                                info --check-tensors: exit 1, "tensor blk.1.ffn_down.    here (info)
#                                weight: NaN at row 0, column 0: the file is corrupt"
#   invalid UTF-8 prompt         BPE vocab: exit 1, "not valid UTF-8 at byte N" (llama.cpp  here (run, tokenize, chat)
#                                substitutes U+FFFD unseen; src/text/tokenize.c refuses);
#                                SentencePiece: byte tokens, as llama.cpp; chat: the line    here (run on the demo), cli
#                                is refused, the conversation goes on
#   lone surrogate (ED A0 80)    as invalid UTF-8 (a surrogate is not UTF-8)               here (run, chat)
#   NUL bytes                    a byte token each, nothing cut (-f and -p -); chat: the   here (run, tokenize, chat); cli
#                                line is refused ("has a NUL byte at byte N")
#   1 MB prompt file             exit 1 within seconds, "the prompt has N tokens; it does  here
#                                not fit in the context of 4096"
#   prompt longer than context   exit 1, "does not fit in the context of 16", three times;  here (run, chat); cli (real
#                                chat: refused, the next line is answered                    model); server_openai (HTTP 400)
#   next request after bad ones  the good model runs (exit 0); chat answers the good line  here
set -u
hearth=$1 dense=$2 demo=$3 tmp=$4/bad-input
good=$dense/qwen3-tiny-q8_0.gguf
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -r "$good" ]; then
    echo "SKIP: no $good (the dense_tiny_models step writes it)"
    exit 77
fi
rm -rf "$tmp" && mkdir -p "$tmp"
# The prefix cache's disk tier goes here, not into the user's cache.
export XDG_CACHE_HOME=$tmp/cache
python3 "$here/make_bad_models.py" "$good" "$tmp"
gen=$?
[ "$gen" -eq 77 ] && exit 77
[ "$gen" -ne 0 ] && { echo "FAIL: make_bad_models.py exited $gen"; exit 1; }
passed=0 failed=0

fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
pass() { passed=$((passed + 1)); }

# healthy LABEL RC OUT: no signal, no timeout, no sanitizer report.
healthy() {
    if [ "$2" -ge 124 ]; then
        fail "$1: exit $2 (a signal or a timeout); output: ${3:0:400}"
    elif grep -qE 'Sanitizer|runtime error:' <<<"$3"; then
        fail "$1: sanitizer report: ${3:0:2000}"
    else
        return 0
    fi
    return 1
}

# expect CODE PATTERN -- ARGS...: hearth ARGS (stdin from $input, default
# none) exits CODE within a minute, healthily, and its output matches the
# extended regex PATTERN.
input=/dev/null
expect() {
    local code=$1 pattern=$2
    shift 3
    local out rc
    out=$(timeout 60 "$hearth" "$@" <"$input" 2>&1)
    rc=$?
    if ! healthy "hearth $*" "$rc" "$out"; then
        :
    elif [ "$rc" -ne "$code" ]; then
        fail "hearth $*: exit $rc, expected $code; output: ${out:0:400}"
    elif ! grep -qaE -- "$pattern" <<<"$out"; then
        fail "hearth $*: output does not match /$pattern/: ${out:0:400}"
    else
        pass
    fi
}

# The reader's rows: run and info both refuse the file.
while IFS='|' read -r name pattern; do
    expect 1 "$pattern" -- run -m "$tmp/$name.gguf" -p hi -n 1
    expect 1 "$pattern" -- info "$tmp/$name.gguf"
done <<'ROWS'
magic|bad magic: not a GGUF file
version1|GGUF version 1 is not supported
tensors_2_60|tensor count 1152921504606846976 exceeds what the file can hold
dims_overflow|tensor blk\.0\.attn_q\.weight: element count overflows
offset_past_eof|tensor output_norm\.weight: bytes 1073741824\.\.[0-9]+ of the data section run past end of file
offset_unaligned|tensor blk\.0\.attn_q\.weight: offset [0-9]+ is not a multiple of the alignment 32
type_unknown|tensor blk\.0\.attn_q\.weight: unknown type 99
string_past_eof|key general\.name: string value runs past end of file
ROWS

# The loader's rows: run refuses the file; info describes it, and says why
# it cannot size a session for it.
while IFS='|' read -r name pattern; do
    expect 1 "$pattern" -- run -m "$tmp/$name.gguf" -p hi -n 1
    expect 0 "session memory: +- \(.*$pattern" -- info "$tmp/$name.gguf"
done <<'ROWS'
vocab_rows|tensor token_embd\.weight: 2048 rows, but the vocabulary \(tokenizer\.ggml\.tokens\) has 2049 tokens
missing_tensor|tensor blk\.2\.attn_k\.weight: missing
missing_key|qwen3\.embedding_length: missing
wrong_shape|tensor blk\.1\.ffn_up\.weight: shape \[512, 256, 1, 1\], expected \[256, 512\]
ROWS

# NaN weights load (scanning every weight would cost seconds on a real
# model) and fail at the first logits, in run and in chat.
nan='the model produced NaN or infinite logits \(position [0-9]+\): its weights may be corrupt'
expect 1 "$nan" -- run -m "$tmp/nan_weights.gguf" -p hi -n 4
printf 'hello\n' >"$tmp/hello.txt"
input=$tmp/hello.txt expect 1 "$nan" -- chat -m "$tmp/nan_weights.gguf" -n 4
# hearth info --check-tensors reads every weight, and names the bad one.
expect 1 'nan_weights\.gguf: tensor blk\.1\.ffn_down\.weight: NaN at row 0, column 0: the file is corrupt' -- \
    info --check-tensors "$tmp/nan_weights.gguf"
expect 0 '46 of 46 tensors checked: every value is finite' -- info --check-tensors "$good"

# The server on the same model: each request gets HTTP 500 with the message,
# and the server stays up for the next one.
"$hearth" serve -m "$tmp/nan_weights.gguf" --port 0 -np 2 -c 256 2>"$tmp/serve.err" &
server=$!
port=
for _ in $(seq 300); do
    port=$(sed -nE 's|.*listening on http://127\.0\.0\.1:([0-9]+)/.*|\1|p' "$tmp/serve.err")
    [ -n "$port" ] || ! kill -0 $server 2>/dev/null && break
    sleep 0.1
done
python3 - "$port" <<'PY' && pass || fail "serve on NaN weights: $(cat "$tmp/serve.err")"
import json, sys, urllib.error, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}"
for i in range(3):
    req = urllib.request.Request(url + "/v1/completions", json.dumps({"prompt": "hello", "max_tokens": 4}).encode(),
                                 {"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=60)
        sys.exit(f"request {i}: no error")
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
        assert e.code == 500 and "NaN or infinite logits" in body["error"]["message"], (e.code, body)
assert json.loads(urllib.request.urlopen(url + "/health", timeout=10).read())["status"] == "ok"
PY
kill $server
wait $server
rc=$?
healthy "serve on NaN weights" "$rc" "$(cat "$tmp/serve.err")" && { [ "$rc" -eq 0 ] && pass || fail "serve exited $rc"; }

# Text. The BPE vocabulary's pre-tokenizer works on characters, so bytes that
# are not UTF-8 (a lone surrogate, ED A0 80, is not UTF-8 either) are an
# error; SentencePiece falls back to byte tokens, as llama.cpp does.
printf 'a\377b' >"$tmp/invalid.txt"
printf 'a\355\240\200b' >"$tmp/surrogate.txt"
expect 1 'tokenizer: text is not valid UTF-8 at byte 1 of 3' -- run -m "$good" -f "$tmp/invalid.txt" -n 1
expect 1 'tokenizer: text is not valid UTF-8 at byte 1 of 5' -- run -m "$good" -f "$tmp/surrogate.txt" -n 1
expect 1 'tokenizer: text is not valid UTF-8 at byte 1 of 5' -- tokenize -m "$good" -f "$tmp/surrogate.txt"
# On the demo's SentencePiece vocabulary: BOS, "▁" and "a" as bytes, then
# the stray byte(s) and "b", one byte token each.
expect 0 'prompt eval += +[0-9.]+ ms / +7 tokens' -- run -m "$demo" -f "$tmp/invalid.txt" -n 1 --seed 1
expect 0 'prompt eval += +[0-9.]+ ms / +9 tokens' -- run -m "$demo" -f "$tmp/surrogate.txt" -n 1 --seed 1

# NUL bytes in a prompt file or on stdin are text: each a byte token, and
# nothing after them is lost (the echo holds every byte).
printf 'a\000b\000c' >"$tmp/nul.txt"
expect 0 "^ +[0-9]+ -> '\\\\x00'" -- tokenize -m "$good" -f "$tmp/nul.txt" -v
n_nul=$("$hearth" tokenize -m "$good" -f "$tmp/nul.txt" -v 2>/dev/null | grep -c "'\\\\x00'")
[ "$n_nul" = 2 ] && pass || fail "tokenize: $n_nul NUL tokens in a\\0b\\0c, expected 2"
for source in "-f $tmp/nul.txt" "-p -"; do
    timeout 60 "$hearth" run -m "$good" $source -n 2 --temp 0 <"$tmp/nul.txt" >"$tmp/nul.out" 2>"$tmp/nul.err"
    rc=$?
    out=$(head -c 5 "$tmp/nul.out" | od -An -c)
    if healthy "run $source with NUL bytes" "$rc" "$(cat "$tmp/nul.err")"; then
        [ "$rc" -eq 0 ] && [ "$(echo $out)" = 'a \0 b \0 c' ] && grep -qE 'prompt eval .* / +5 tokens' "$tmp/nul.err" &&
            pass ||
            fail "run $source with NUL bytes: echo '$out', $(grep 'prompt eval' "$tmp/nul.err")"
    fi
done

# A 1 MB prompt file: refused quickly (expect's timeout), not tokenized forever.
python3 -c 'import sys; sys.stdout.write(("the quick brown fox jumps over the lazy dog " * 24000)[:1 << 20])' \
    >"$tmp/big.txt"
expect 1 'the prompt has [0-9]+ tokens; it does not fit in the context of 4096' -- run -m "$good" -f "$tmp/big.txt"

# A prompt longer than the context, three times; then the same prompt runs
# in a context that holds it.
long=$(printf 'one two three four five six seven eight nine ten %.0s' 1 2 3)
for i in 1 2 3; do
    expect 1 'the prompt has [0-9]+ tokens; it does not fit in the context of 16 \(use -c\)' -- \
        run -m "$good" -p "$long" -c 16 -n 1
done
expect 0 'generation += +[0-9.]+ ms / +2 tokens' -- run -m "$good" -p "$long" -c 256 -n 2 --temp 0 --ignore-eos

# hearth chat, one message a line: each bad line is refused with its reason
# and the good one after them is answered.
{
    printf 'bad \377 byte\n'
    printf 'lone \355\240\200 surrogate\n'
    printf 'a\000b\n'
    printf '%s\n' "$long$long$long$long"
    printf 'hello there\n'
} >"$tmp/chat.txt"
out=$(timeout 120 "$hearth" chat -m "$good" -c 128 -n 4 --temp 0 -v <"$tmp/chat.txt" 2>&1)
rc=$?
if healthy "chat with bad lines" "$rc" "$out"; then
    [ "$rc" -eq 0 ] && pass || fail "chat with bad lines: exit $rc: ${out:0:400}"
    for pattern in 'the message is not valid UTF-8 at byte 4 of 10; not sent' \
        'the message is not valid UTF-8 at byte 5 of 18; not sent' 'the message has a NUL byte at byte 1; not sent' \
        'the conversation is [0-9]+ tokens, the context 128: /clear, or a larger -c' \
        '^\[turn 1: prompt [0-9]+ tokens, 0 already in the context'; do
        grep -qaE -- "$pattern" <<<"$out" && pass || fail "chat with bad lines: no /$pattern/ in: ${out:0:600}"
    done
fi

# And the next command after all of these: the good model runs.
expect 0 'generation += +[0-9.]+ ms / +4 tokens' -- run -m "$good" -p hi -n 4 --temp 0 --ignore-eos

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
