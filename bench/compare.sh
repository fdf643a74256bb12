#!/usr/bin/env bash
# hearth against llama.cpp on the same model, threads and machine, in one run:
# pp (prompt processing) and tg (generation) tokens/s from `hearth bench` and
# from llama.cpp's llama-bench, and the ratio hearth / llama.cpp. llama-bench is
# built once from the sources in PyPI's llama-cpp-python source package
# (scripts/oracle/build-llama-cpp.sh, cached outside the repository).
#
#   bench/compare.sh [-m MODEL] [-p 512] [-n 128] [-r 5] [-t THREADS]
#
# The two tools run one after the other, each with its own warm-up; on a
# shared machine, run it twice and trust the ratios more than the absolutes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
model=${HEARTH_MODEL:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/models/gemma-3-270m-q4_k_m.gguf}
n_prompt=512 n_gen=128 reps=5 threads=
while [ $# -gt 0 ]; do
    case $1 in
    -m) model=$2; shift 2 ;;
    -p) n_prompt=$2; shift 2 ;;
    -n) n_gen=$2; shift 2 ;;
    -r) reps=$2; shift 2 ;;
    -t) threads=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ -r "$model" ] || {
    echo "compare.sh: no model at $model (scripts/setup.sh installs the default;" \
        "python3 scripts/oracle/make_dense_model.py bench writes the Qwen 3 one, see bench/README.md)" >&2
    exit 1
}

hearth="$root/build/hearth"
[ -x "$hearth" ] || { echo "compare.sh: build hearth first (make build)" >&2; exit 1; }
oracle_build=$("$root/scripts/oracle/build-llama-cpp.sh" | tail -n 1)
llama_bench="$oracle_build/bin/llama-bench"
if [ -z "$threads" ]; then
    threads=$("$hearth" info --cpu | sed -n 's/^threads: *\([0-9]*\).*/\1/p')
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$hearth" bench -m "$model" -p "$n_prompt" -n "$n_gen" -r "$reps" -t "$threads" --json >"$work/hearth.json"
"$llama_bench" -m "$model" -p "$n_prompt" -n "$n_gen" -r "$reps" -t "$threads" -o json 2>/dev/null >"$work/llama.json"

python3 - "$work/hearth.json" "$work/llama.json" "$model" "$threads" "$("$hearth" info --cpu | sed -n 's/^kernels: *//p')" <<'PY'
import json, os, sys
hearth, llama = (json.load(open(p)) for p in sys.argv[1:3])
model, threads, kernels = os.path.basename(sys.argv[3]), sys.argv[4], sys.argv[5]

def by_test(results):
    out = {}
    for r in results:
        name = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
        out[name] = (r["avg_ts"], r["stddev_ts"])
    return out

h, l = by_test(hearth), by_test(llama)
print(f"model {model}, {threads} threads, hearth kernels {kernels}")
print(f"| test   | hearth t/s        | llama.cpp t/s     | hearth / llama.cpp |")
print(f"| ------ | ----------------: | ----------------: | -----------------: |")
for name in sorted(h, key=lambda n: (n[:2] != "pp", n)):
    if name not in l:
        continue
    (ha, hs), (la, ls) = h[name], l[name]
    print(f"| {name:<6} | {ha:8.2f} ± {hs:6.2f} | {la:8.2f} ± {ls:6.2f} | {ha / la:17.2f}x |")
PY
