#!/usr/bin/env bash
# The demo's recipe in st and in PyTorch (scripts/train_torch.py), from the same initial weights,
# on the same data split, for the same steps: held-out bits per byte of each, and their ratio.
#   scripts/compare-demo.sh [BUILD_DIR]      (DEMO_STEPS as in scripts/demo.sh)
# ST_LOG=runs/demo.jsonl takes st's figure from a demo run just made instead of training st again
# (st's numbers do not depend on the thread count or the run: the same recipe gives the same bits).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
steps=${DEMO_STEPS:-800}
scripts/get-data.sh text >/dev/null
mkdir -p runs
model=(--layers 4 --d-model 128 --heads 4 --ctx 256 --pattern fixed --mode merged --stride 64 --summary 16 --block 32 --pos 2d)
recipe=(--batch 32 --steps "$steps" --lr 0.004 --lr-min 0.002 --warmup 50 --eval-windows 128)
"$build/st-train" "${model[@]}" "${recipe[@]}" --steps 0 --quiet -o runs/compare-init.st data/gcide.txt
st_log=${ST_LOG:-runs/compare-st.jsonl}
[ -n "${ST_LOG:-}" ] || "$build/st-train" "${model[@]}" "${recipe[@]}" --eval-every 100 --threads 2 --log "$st_log" -o runs/compare-st.st data/gcide.txt
st_bits=$(grep -o '"val_bits":[0-9.]*' "$st_log" | tail -1 | cut -d: -f2)
OMP_NUM_THREADS=2 /usr/bin/python3 scripts/train_torch.py --init runs/compare-init.st --data data/gcide.txt "${recipe[@]}" \
    --eval-every 100 --threads 2 --log runs/compare-torch.jsonl > runs/compare-torch.json
torch_bits=$(/usr/bin/python3 -c 'import json; print(json.load(open("runs/compare-torch.json"))["val_bits"])')
/usr/bin/python3 -c "s, t = $st_bits, $torch_bits; print(f'held-out bits per byte after $steps steps: st {s:.4f}, pytorch {t:.4f}, st/pytorch {s / t:.4f}')"
