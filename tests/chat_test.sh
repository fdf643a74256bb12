#!/usr/bin/env bash
# hearth chat, non-interactively (messages on stdin), on the tiny random-weight
# Qwen 3 model (its chat template is Qwen's): each turn's prompt must reuse the
# whole of the previous turn's prompt from the context and evaluate only the
# rest; the commands /save, /clear, /load and /system do what they say; and a
# model without a chat template, a bad template and a bad /load file give
# clear errors.
#
#   chat_test.sh HEARTH MODEL_DIR TMPDIR
set -u
hearth=$1 model=$2/qwen3-tiny-q8_0.gguf tmp=$3/chat
if [ ! -r "$model" ]; then
    echo "SKIP: no $model (the dense_tiny_models step writes it)"
    exit 77
fi
rm -rf "$tmp" && mkdir -p "$tmp"
passed=0 failed=0
check() { if eval "$1"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $2"; fi; }

# Five turns; then save, clear, one turn, load, one more turn, a system prompt.
printf '%s\n' "hello there" "how are you" "tell me more" "and then?" "thanks" "/save $tmp/conv.json" "/clear" \
    "again" "/load $tmp/conv.json" "one more" "/system be brief" "last" |
    "$hearth" chat -m "$model" --temp 0 -n 8 -v >"$tmp/out.txt" 2>"$tmp/err.txt"
rc=$?
check '[ $rc -eq 0 ]' "chat exited $rc: $(cat "$tmp/err.txt")"
# [turn N: prompt P tokens, K already in the context, E evaluated ...; G generated ...]
turns=$(sed -nE 's/^\[turn ([0-9]+): prompt ([0-9]+) tokens, ([0-9]+) already in the context, ([0-9]+) evaluated.* ([0-9]+) generated.*/\1 \2 \3 \4 \5/p' "$tmp/err.txt")
check '[ "$(echo "$turns" | wc -l)" -eq 8 ]' "expected 8 turn lines, got: $turns"
# Every turn evaluates exactly what it did not keep.
check '[ -z "$(echo "$turns" | awk '"'"'$2 != $3 + $4'"'"')" ]' "prompt != kept + evaluated: $turns"
# Turns 2-5 keep at least the previous turn's whole prompt.
check '[ -z "$(echo "$turns" | awk '"'"'NR >= 2 && NR <= 5 && $3 < prev { print } { prev = $2 }'"'"')" ]' \
    "a turn re-evaluated the previous prompt: $turns"
check '[ "$(echo "$turns" | awk '"'"'NR == 1 { print $3 }'"'"')" -eq 0 ]' "the first turn kept tokens: $turns"
check 'grep -q "saved 10 messages" "$tmp/err.txt"' "/save: $(grep -i save "$tmp/err.txt")"
check 'python3 -c "import json,sys; m=json.load(open(sys.argv[1])); assert [x[\"role\"] for x in m] == [\"user\",\"assistant\"]*5" "$tmp/conv.json"' \
    "the saved conversation is not 5 user/assistant pairs"
check 'grep -q "loaded 10 messages" "$tmp/err.txt"' "/load: $(grep -i load "$tmp/err.txt")"
# After /clear, the turn starts over (its prompt is one message long) ...
check '[ "$(echo "$turns" | awk '"'"'NR == 6 { print $2 }'"'"')" -lt "$(echo "$turns" | awk '"'"'NR == 1 { print $2 + 10 }'"'"')" ]' \
    "/clear did not clear: $turns"
# ... and after /load the conversation is the 10 loaded messages and one more.
check '[ "$(echo "$turns" | awk '"'"'NR == 7 { print $2 }'"'"')" -gt "$(echo "$turns" | awk '"'"'NR == 5 { print $2 }'"'"')" ]' \
    "/load did not restore the conversation: $turns"
check 'grep -q "system prompt set" "$tmp/err.txt"' "/system"

# Errors: no template in the model, a broken one, a file that is not a conversation.
python3 - "$model" "$tmp/no-template.gguf" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
key = b"tokenizer.chat_template"
assert data.count(key) == 1
open(sys.argv[2], "wb").write(data.replace(key, b"tokenizer.chat_templatX"))
PY
out=$(echo hi | "$hearth" chat -m "$tmp/no-template.gguf" 2>&1)
rc=$?
check '[ $rc -eq 1 ] && grep -q "has no chat template" <<<"$out"' "no template: exit $rc: $out"
printf '{%% if %%}' >"$tmp/broken.jinja"
out=$(echo hi | "$hearth" chat -m "$model" --template "$tmp/broken.jinja" 2>&1)
rc=$?
check '[ $rc -eq 1 ] && grep -q "chat template" <<<"$out"' "broken template: exit $rc: $out"
echo '{"not": "a conversation"}' >"$tmp/bad.json"
out=$(printf '/load %s\n' "$tmp/bad.json" | "$hearth" chat -m "$model" 2>&1)
rc=$?
check '[ $rc -eq 0 ] && grep -q "not a JSON array of messages" <<<"$out"' "bad /load: exit $rc: $out"
out=$("$hearth" chat -m "$model" --temp x 2>&1)
rc=$?
check '[ $rc -eq 2 ] && grep -q "\-\-temp x" <<<"$out"' "bad option: exit $rc: $out"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
