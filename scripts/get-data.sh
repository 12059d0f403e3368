#!/usr/bin/env bash
# Fetches a data set from a Debian package into data/ (apt-get download + dpkg -x: no root, no install).
#   scripts/get-data.sh text     data/gcide.txt (40 MB of English: the Webster 1913 dictionary)
#   scripts/get-data.sh images   data/fashion-mnist/: Fashion-MNIST's four IDX .gz files, and train.bin
#                                and test.bin (60,000 and 10,000 records of 28x28x1) made by st-image
#                                from the build in $BUILD (default build/)
#   scripts/get-data.sh audio    data/music/*.ogg (Wesnoth's orchestral soundtrack: 41 OGG Vorbis files, 2 hours, 148 MB) and
#                                data/speech/ (25 minutes of one English voice: 568 WAV files at 8 kHz, in folders)
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
audio)
    # Each folder appears whole (built beside it, then renamed), so one that is there is complete.
    if [ ! -d data/music ]; then
        fetch wesnoth-1.16-music
        rm -rf data/music.tmp
        cp -r "$tmp/root/usr/share/games/wesnoth/1.16/data/core/music" data/music.tmp
        mv data/music.tmp data/music
    fi
    if [ ! -d data/speech ]; then
        fetch asterisk-core-sounds-en-wav
        rm -rf data/speech.tmp
        cp -r "$tmp/root/usr/share/asterisk/sounds/en_US_f_Allison" data/speech.tmp
        mv data/speech.tmp data/speech
    fi
    echo "data/music: $(ls data/music/*.ogg | wc -l) OGG files, $(du -sm data/music | cut -f1) MB"
    echo "data/speech: $(find data/speech -name '*.wav' | wc -l) WAV files, $(du -sm data/speech | cut -f1) MB"
    ;;
*)
    echo "get-data: unknown data set '$kind' (known: text, images, audio)" >&2
    exit 2
    ;;
esac
