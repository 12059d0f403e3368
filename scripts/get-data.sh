#!/usr/bin/env bash
# Fetches a data set from a Debian package into data/ (apt-get download + dpkg -x: no root, no install).
#   scripts/get-data.sh text     data/gcide.txt (40 MB of English: the Webster 1913 dictionary)
#   scripts/get-data.sh images   data/fashion-mnist/: Fashion-MNIST's four IDX .gz files, and train.bin
#                                and test.bin (60,000 and 10,000 records of 28x28x1) made by st-image
#                                from the build in $BUILD (default build/)
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
images)
    dir=data/fashion-mnist
    mkdir -p "$dir"
    names=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
    for n in "${names[@]}"; do
        [ -s "$dir/$n.gz" ] && continue
        [ -d "$tmp/root" ] || fetch dataset-fashion-mnist
        cp "$tmp/root/usr/share/datasets/fashion-mnist/$n.gz" "$dir/$n.gz.tmp"
        mv "$dir/$n.gz.tmp" "$dir/$n.gz"
    done
    st_image=${BUILD:-build}/st-image
    for part in train:train t10k:test; do
        out=$dir/${part#*:}.bin
        [ -s "$out" ] && continue
        [ -x "$st_image" ] || { echo "get-data: $st_image is missing: build first (make), then run this again" >&2; exit 1; }
        "$st_image" encode -q "$dir/${part%%:*}-images-idx3-ubyte.gz" > "$out.tmp"
        mv "$out.tmp" "$out"
    done
    for f in "$dir"/*.gz "$dir"/*.bin; do echo "$f: $(wc -c < "$f") bytes"; done
    ;;
*)
    echo "get-data: unknown data set '$kind' (known: text, images)" >&2
    exit 2
    ;;
esac
