#!/usr/bin/env bash
# Installs every Debian package hearth's build and tests need. Idempotent: when
# everything is present it installs nothing and touches no package list.
# Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
    build-essential  # gcc, make
    cmake
    clang            # the ASan+UBSan and libFuzzer builds
    libclang-rt-dev  # clang's sanitizer and libFuzzer runtimes
    python3          # scripts/oracle (fixture generation; not needed by the tests)
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "setup: all build and test dependencies present"
