#!/usr/bin/env bash
# Installs the Debian packages xtrain builds against, if any is missing. Needs root or sudo for apt-get.
set -euo pipefail
packages=(pkg-config libopenblas-dev libzstd-dev libhdf5-dev zstd libpng-dev libjpeg-dev openmpi-bin)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
