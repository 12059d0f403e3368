#!/usr/bin/env bash
# Seeds for st-fuzz-zstd: zstd streams made by the zstd program, of one and of several frames, with
# and without the content size, and a model file st-train compressed itself.
#   seeds/zstd.sh BUILD OUTDIR
set -euo pipefail
build=$1 out=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in $(seq 300); do echo "line $i: the quick brown fox"; done > "$tmp/text"
zstd -q -c "$tmp/text" > "$out/one-frame.zst"
head -c 3000 /dev/urandom > "$tmp/random"
zstd -q -c "$tmp/random" > "$out/random.zst"
{ zstd -q -c "$tmp/text"; zstd -q -c "$tmp/random"; } > "$out/two-frames.zst"
zstd -q -c < "$tmp/text" > "$out/no-content-size.zst"
"$build/st-train" --layers 1 --d-model 8 --heads 2 --ctx 32 --stride 8 --summary 4 --batch 2 --steps 1 --eval-windows 1 \
    --device cpu -q -o "$out/model.st.zst" "$tmp/text"
