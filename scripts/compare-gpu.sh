#!/usr/bin/env bash
# Same learning on the GPU: st-train --device cuda and PyTorch (scripts/train_torch.py, bf16 autocast)
# train the same model from the same initial weights on the same batches of text for STEPS steps
# (default 300); prints each one's mean training loss over the last 20 steps, held-out bits per byte,
# and the ratios.
#   scripts/compare-gpu.sh [BUILD_DIR] [DATA]       (DATA: default data/gcide.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
data=${2:-data/gcide.txt}
steps=${STEPS:-300}
out=${OUT:-runs/gpu}
py=${PYTHON:-python3}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
model=(--layers 4 --d-model 256 --heads 4 --ctx 1024 --pattern fixed --mode merged --stride 128 --summary 16 --block 64 --pos 2d)
recipe=(--batch 16 --steps "$steps" --lr 0.002 --warmup 50 --eval-windows 64)
"$build/st-train" --device cpu "${model[@]}" "${recipe[@]}" --steps 0 --quiet -o "$tmp/init.st" "$data"
"$build/st-train" --device cuda "${model[@]}" "${recipe[@]}" --eval-every 0 --quiet --log "$out/compare-st.jsonl" \
    -o "$tmp/st.st" "$data"
$py scripts/train_torch.py --device cuda --init "$tmp/init.st" --data "$data" "${recipe[@]}" \
    --log "$out/compare-torch.jsonl" > "$out/compare-torch.json"
$py - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def tail_loss(path):
    rows = [json.loads(l) for l in open(path) if '"loss"' in l]
    last = rows[-20:]
    return sum(r["loss"] for r in last) / len(last)
st_rows = [json.loads(l) for l in open(f"{out}/compare-st.jsonl")]
st_val = [r["val_bits"] for r in st_rows if "val_bits" in r][-1]
torch_val = json.load(open(f"{out}/compare-torch.json"))["val_bits"]
s, t = tail_loss(f"{out}/compare-st.jsonl"), tail_loss(f"{out}/compare-torch.jsonl")
print(json.dumps(dict(impl="compare", steps=len([r for r in st_rows if "loss" in r]), st_train_loss=round(s, 4), torch_train_loss=round(t, 4),
                      loss_ratio=round(s / t, 4), st_val_bits=round(st_val, 4), torch_val_bits=round(torch_val, 4),
                      val_ratio=round(st_val / torch_val, 4))))
PY
