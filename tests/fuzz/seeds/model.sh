#!/usr/bin/env bash
# Seeds for st-fuzz-model and st-fuzz-safetensors: small model files made by st-train (with and without
# optimizer state, each position kind), as a program loading a model meets them.
#   seeds/model.sh BUILD OUTDIR
set -euo pipefail
build=$1 out=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in $(seq 200); do echo "seed line $i of some text for a tiny model to learn"; done > "$tmp/text"
common=(--layers 1 --d-model 8 --heads 2 --ctx 32 --stride 8 --summary 4 --block 32 --batch 2 --steps 1 --eval-windows 1 --device cpu -q)
"$build/st-train" "${common[@]}" --pos 2d -o "$out/model-2d.st" "$tmp/text"
"$build/st-train" "${common[@]}" --pos 1d --pattern strided -o "$out/model-1d.st" "$tmp/text"
head -c 1920 /dev/urandom > "$tmp/pixels"   # 40 pictures of 4x4x3
"$build/st-train" "${common[@]}" --image 4x4x3 -o "$out/model-image.st" "$tmp/pixels"
