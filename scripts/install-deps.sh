#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages st builds, tests and runs with. Idempotent: installs only
# what is missing. python3-torch (+ OpenBLAS) is the independent implementation the parity test
# checks st against; zlib1g-dev reads the gzip-compressed IDX files of (Fashion-)MNIST; libsndfile1-dev
# (WAV, FLAC, OGG/Vorbis in and out) and libsoxr-dev (resampling) are for st-audio alone.
# `install-deps.sh fuzz` adds clang and its runtimes (libFuzzer, the sanitizers, OpenMP) for make fuzz.
set -euo pipefail
pkgs=(cmake make g++ pkg-config libzstd-dev zstd zlib1g-dev libcxxopts-dev libstb-dev catch2 nlohmann-json3-dev
      libsndfile1-dev libsoxr-dev python3 python3-numpy python3-torch libopenblas0-pthread man-db)
[ "${1:-}" = fuzz ] && pkgs+=(clang libclang-rt-dev libomp-dev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
