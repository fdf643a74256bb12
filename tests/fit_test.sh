#!/usr/bin/env bash
# hearth fit's memory prediction against the peak resident memory (ru_maxrss)
# of hearth run on the same settings, within 10 %: for the real Gemma 3 270M
# and two random-weight models (dense Qwen 3, and Qwen 3.5 with recurrent
# layers).
#
# fit predicts the peak of a session that fills its context (the KV cache's
# pages count only once written), so each run fills it: a prompt of nearly
# the whole context (prefill fills the work space of a whole batch too), then
# -n -1 --ignore-eos to the end. The tiny models' weights are a few MiB, so a
# comparison of them alone would measure the program's fixed overhead; their
# contexts are long enough (8192 and 16384) that the KV cache, the work space
# and the weights make up most of the total, and the test checks they do
# (total minus the fixed part at least 2/3 of it). Gemma 3's peak is the
# load's: the tied embedding's map pages beside the packed copies.
#
#   fit_test.sh HEARTH DENSE_DIR QWEN35_DIR TMPDIR
set -u
hearth=$1 dense=$2 qwen35=$3 tmp=$4/fit
gemma=${XDG_CACHE_HOME:-$HOME/.cache}/hearth/models/gemma-3-270m-q4_k_m.gguf
rm -rf "$tmp" && mkdir -p "$tmp"
# The machine's limits are cached here, not in the user's cache dir.
export XDG_CACHE_HOME=$tmp/cache
passed=0 failed=0 ran=0

# check_model NAME MODEL CTX: predicted vs measured total, within 10 %.
check_model() {
    local name=$1 model=$2 ctx=$3
    if [ ! -r "$model" ]; then
        echo "skip $name: no $model"
        return
    fi
    ran=$((ran + 1))
    # Tokens per "hello world", then a prompt 64 tokens short of the context.
    local per10 pairs
    per10=$("$hearth" tokenize -m "$model" --no-bos -p "$(printf 'hello world %.0s' $(seq 10))" | wc -w)
    pairs=$(((ctx - 64) * 10 / per10))
    printf 'hello world %.0s' $(seq "$pairs") >"$tmp/$name.prompt"
    if ! "$hearth" fit -m "$model" -c "$ctx" --json >"$tmp/$name.json" 2>"$tmp/$name.fit.err"; then
        failed=$((failed + 1))
        echo "FAIL: $name: hearth fit: $(cat "$tmp/$name.fit.err")"
        return
    fi
    local measured
    measured=$(python3 -c '
import resource, subprocess, sys
r = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=open(sys.argv[1], "w"))
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 if r.returncode == 0 else -1)
' "$tmp/$name.run.err" "$hearth" run -m "$model" -c "$ctx" -f "$tmp/$name.prompt" -n -1 --ignore-eos --temp 0)
    if [ "$measured" -lt 0 ]; then
        failed=$((failed + 1))
        echo "FAIL: $name: hearth run: $(tail -3 "$tmp/$name.run.err")"
        return
    fi
    if ! grep -q "context $ctx of $ctx tokens" "$tmp/$name.run.err"; then
        failed=$((failed + 1))
        echo "FAIL: $name: the run did not fill its context: $(grep stopped "$tmp/$name.run.err")"
        return
    fi
    local verdict
    verdict=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1])); measured = int(sys.argv[2])
total, fixed = d["total_bytes"], d["fixed_bytes"]
err = (total - measured) / measured
mib = lambda b: "%.2f MiB" % (b / 2**20)
print("%s: predicted %s, measured %s (%+.1f %%); fixed part %s, weights %s, KV %s, recurrent %s, scratch %s" % (
    sys.argv[3], mib(total), mib(measured), 100 * err, mib(fixed), mib(d["weights_bytes"]), mib(d["kv_bytes"]),
    mib(d["recurrent_bytes"]), mib(d["scratch_bytes"])))
ok = abs(err) <= 0.10 and total - fixed >= 2 * total / 3
print("ok" if ok else "bad")
' "$tmp/$name.json" "$measured" "$name")
    echo "$verdict" | head -1
    if [ "$(echo "$verdict" | tail -1)" = ok ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL: $name: off by more than 10 %, or the fixed part is over a third"
    fi
}

if [ -n "${HEARTH_FIT_NO_RSS:-}" ]; then
    echo "skip the memory comparisons: a sanitizer build's peak is the sanitizer's"
else
    check_model gemma3 "$gemma" 640
    check_model qwen3-tiny "$dense/qwen3-tiny-q8_0.gguf" 8192
    check_model qwen35-tiny "$qwen35/qwen35-tiny-q8_0.gguf" 16384
fi

# The options: q8_0 KV is 34 bytes per 32 values where f16 takes 64; bad values are usage errors.
if [ -r "$dense/qwen3-tiny-q8_0.gguf" ]; then
    ran=$((ran + 1))
    m=$dense/qwen3-tiny-q8_0.gguf
    f16=$("$hearth" fit -m "$m" -c 1024 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kv_bytes"])')
    q8=$("$hearth" fit -m "$m" -c 1024 --kv-type q8_0 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kv_bytes"])')
    if [ "$((f16 / 64 * 34))" -eq "$q8" ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: q8_0 KV $q8, f16 $f16"; fi
    par=$("$hearth" fit -m "$m" -c 1024 --parallel 4 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kv_bytes"])')
    if [ "$par" -eq "$((4 * f16))" ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: --parallel 4 KV $par, one $f16"; fi
    for bad in "--kv-type q4_0" "--parallel 0" "-c 0" "--bogus"; do
        # shellcheck disable=SC2086
        "$hearth" fit -m "$m" $bad >/dev/null 2>&1
        rc=$?
        if [ $rc -eq 2 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: fit $bad exited $rc, not 2"; fi
    done
    "$hearth" fit -m "$m" >"$tmp/text.txt" 2>&1 && grep -q "^total:" "$tmp/text.txt" &&
        grep -q "^largest context:" "$tmp/text.txt" && grep -q "^decode:" "$tmp/text.txt"
    if [ $? -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: text output: $(cat "$tmp/text.txt")"; fi
fi

echo "fit_test: $passed passed, $failed failed"
if [ $ran -eq 0 ] && [ $failed -eq 0 ]; then
    exit 77
fi
[ $failed -eq 0 ]
