#!/usr/bin/env bash
# Fetches a data set from a Debian package into data/ (apt-get download + dpkg -x: no root, no install).
#   scripts/get-data.sh text     data/gcide.txt (40 MB of English: the Webster 1913 dictionary)
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-text}
mkdir -p data
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fetch() {  # fetch PACKAGE: unpack it into $tmp/root
    (cd "$tmp" && apt-get download "$1" >/dev/null 2>&1) || {
        apt-get update -qq >/dev/null 2>&1 || true
        (cd "$tmp" && apt-get download "$1" >/dev/null)
    } || { echo "get-data: cannot download the Debian package $1" >&2; exit 1; }
    dpkg -x "$tmp"/"$1"_*.deb "$tmp/root"
}

case "$kind" in
text)
    [ -s data/gcide.txt ] && { echo "data/gcide.txt is there"; exit 0; }
    fetch dict-gcide
    zcat "$tmp/root/usr/share/dictd/gcide.dict.dz" > "$tmp/gcide.txt"
    mv "$tmp/gcide.txt" data/gcide.txt
    echo "data/gcide.txt: $(wc -c < data/gcide.txt) bytes"
    ;;
*)
    echo "get-data: unknown data set '$kind' (known: text)" >&2
    exit 2
    ;;
esac
