#!/usr/bin/env bash
# Fashion-MNIST, st against PyTorch: the same image model and recipe, from the same initial weights on
# the same batches (scripts/train_torch.py draws st-train's pictures), st-train on DEVICE and PyTorch
# with bf16 autocast on the GPU. Prints one JSON line: each one's test bits per dim over all 10,000
# test pictures, their ratio and each one's training seconds. Then, with the st model, the figures
# for docs/: completions (st-complete) and learned attention (st-viz-attn), into OUT.
#   scripts/compare-images.sh [BUILD_DIR] [DATA_DIR]
# DATA_DIR holds Fashion-MNIST's IDX files (scripts/get-data.sh images). Environment: DEVICE (cuda),
# STEPS (3000), OUT (runs/images), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
dir=${2:-data/fashion-mnist}
device=${DEVICE:-cuda}
steps=${STEPS:-3000}
out=${OUT:-runs/images}
py=${PYTHON:-python3}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$build/st-image" encode -q "$dir/train-images-idx3-ubyte.gz" > "$tmp/train.bin"
"$build/st-image" encode -q "$dir/t10k-images-idx3-ubyte.gz" > "$tmp/test.bin"
model=(--image 28x28x1 --layers 8 --d-model 256 --heads 4 --block 64)   # strided, one row as the stride
recipe=(--batch 64 --lr 0.001 --warmup 200 --eval-windows 10000)
"$build/st-train" --device cpu "${model[@]}" "${recipe[@]}" --steps 0 --eval-windows 1 -q -o "$tmp/init.st" --val "$tmp/test.bin" \
    "$tmp/train.bin"   # the initial weights only (one held-out picture, not 10,000 on the CPU)
seconds() { local t0=$SECONDS; "$@"; echo $((SECONDS - t0)); }
st_s=$(seconds "$build/st-train" --device "$device" "${model[@]}" "${recipe[@]}" --steps "$steps" --eval-every 0 -q \
    --log "$out/st.jsonl" -o "$out/fashion.st" --val "$tmp/test.bin" "$tmp/train.bin")
"$build/st-eval" --device "$device" --batch 64 "$out/fashion.st" "$tmp/test.bin" | tee "$out/st-eval.txt"
$py scripts/train_torch.py --device "${TORCH_DEVICE:-cuda}" --init "$tmp/init.st" --data "$tmp/train.bin" --val "$tmp/test.bin" \
    "${recipe[@]}" --steps "$steps" --log "$out/torch.jsonl" > "$out/torch.json"
$py - "$out" "$st_s" <<'PY'
import json, sys
out, st_s = sys.argv[1], float(sys.argv[2])
st_bits = float(open(f"{out}/st-eval.txt").read().split()[0])
t = json.load(open(f"{out}/torch.json"))
print(json.dumps(dict(impl="compare-images", steps=t["steps"], st_test_bits_per_dim=st_bits, torch_test_bits_per_dim=t["val_bits"],
                      ratio=round(st_bits / t["val_bits"], 4), st_seconds=st_s, torch_train_seconds=t["train_s"])))
PY
# The pictures for docs/: completions of the first 8 test pictures; 100 completions of whole pictures
# (784 bytes each), timed by st-complete on the device; what the model attends to from one pixel.
"$build/st-complete" --device "$device" --records --count 8 -k 5 --keep 0.5 -o "$out/completions.png" \
    "$out/fashion.st" "$tmp/test.bin" 2>&1 | tee "$out/complete.txt"
"$build/st-complete" --device "$device" --records --count 25 -k 4 --keep 0 -o "$out/complete100.png" \
    "$out/fashion.st" "$tmp/test.bin" 2>&1 | tee -a "$out/complete.txt"
"$build/st-viz-attn" --input "$tmp/test.bin" --record 0 --pixel 14,14 -o "$out/attention.png" "$out/fashion.st"
"$build/st-viz-attn" -o "$out/pattern.png" "$out/fashion.st"
