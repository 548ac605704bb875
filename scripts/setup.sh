#!/usr/bin/env bash
# Installs what bpfvm needs on Debian 12 (only what is missing) and configures the build.
set -euo pipefail
PACKAGES=(build-essential cmake ninja-build pkg-config
          libelf-dev libbpf-dev libcapstone-dev libcli11-dev libfmt-dev nlohmann-json3-dev
          libpcap-dev googletest libgtest-dev libbenchmark-dev zlib1g-dev libssl-dev
          clang-14 llvm-14 libclang-rt-14-dev clang-19 tcpdump
          libzydis-dev libzycore-dev systemtap-sdt-dev)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
