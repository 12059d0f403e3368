#!/usr/bin/env bash
# Music at a context of 65,536 samples (5.5 s at 12 kHz), st against PyTorch: the same strided model and
# recipe, from the same initial weights on the same batches (scripts/train_torch.py draws st-train's
# windows; FlexAttention over the same sets). Prints one JSON line with each one's held-out bits per
# byte, their ratio and each one's training seconds; then times st-sample drawing 65,536 samples (kept
# in OUT as sample.bytes: `st-audio decode --rate 12000 -o sample.wav < sample.bytes` where libsndfile is).
#   scripts/compare-audio.sh [BUILD_DIR] TRAIN_BYTES VAL_BYTES
# The bytes are st-audio's (mono, 12 kHz, mu-law): scripts/get-data.sh audio, then
#   st-audio encode TRAINING-TRACKS... > train.bytes; st-audio encode HELD-OUT-TRACKS... > val.bytes
# (names ending in .zst are read compressed). Environment: DEVICE (cuda), STEPS (500), CTX (65536),
# OUT (runs/audio), PYTHON (python3), TORCH_ARGS (--device cuda --flex).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
train=${2:?usage: compare-audio.sh BUILD_DIR TRAIN_BYTES VAL_BYTES}
val=${3:?usage: compare-audio.sh BUILD_DIR TRAIN_BYTES VAL_BYTES}
device=${DEVICE:-cuda}
steps=${STEPS:-500}
ctx=${CTX:-65536}
out=${OUT:-runs/audio}
py=${PYTHON:-python3}
read -r -a torch_args <<< "${TORCH_ARGS:---device cuda --flex}"
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The paper's audio model, smaller: strided attention with a stride of sqrt(ctx), row and column positions.
stride=$($py -c "import math; print(math.isqrt($ctx))")
model=(--ctx "$ctx" --layers 8 --d-model 256 --heads 4 --pattern strided --stride "$stride" --block 128 --pos 2d)
recipe=(--batch 4 --lr 0.001 --warmup 100 --eval-windows 32)
"$build/st-train" --device "$device" "${model[@]}" "${recipe[@]}" --steps 0 --eval-windows 1 -q -o "$tmp/init.st" --val "$val" "$train"
t0=$SECONDS
"$build/st-train" --device "$device" "${model[@]}" "${recipe[@]}" --steps "$steps" --eval-every 0 -q --log "$out/st.jsonl" \
    -o "$out/music.st" --val "$val" "$train"
st_s=$((SECONDS - t0))
$py scripts/train_torch.py "${torch_args[@]}" --init "$tmp/init.st" --data "$train" --val "$val" "${recipe[@]}" --steps "$steps" \
    --log "$out/torch.jsonl" > "$out/torch.json" 2> >(tee "$out/torch.err" >&2)
$py - "$out" "$st_s" <<'PY'
import json, sys
out, st_s = sys.argv[1], float(sys.argv[2])
st_bits = [json.loads(l)["val_bits"] for l in open(f"{out}/st.jsonl") if "val_bits" in l][-1]
t = json.load(open(f"{out}/torch.json"))
print(json.dumps(dict(impl="compare-audio", steps=t["steps"], st_val_bits=round(st_bits, 4), torch_val_bits=t["val_bits"],
                      ratio=round(st_bits / t["val_bits"], 4), st_seconds=st_s, torch_train_seconds=t["train_s"])))
PY
t0=$(date +%s.%N)
"$build/st-sample" --device "$device" -n "$ctx" "$out/music.st" > "$out/sample.bytes"
t1=$(date +%s.%N)
$py -c "import json; print(json.dumps(dict(impl='st-sample', samples=$ctx, seconds=round($t1 - $t0, 2))))"
