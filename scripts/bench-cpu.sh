#!/usr/bin/env bash
# CPU training speed: st-train against the same model in PyTorch (scripts/train_torch.py: same
# weights, batch and recipe, float32, the same thread count), alternating runs in one go.
#   scripts/bench-cpu.sh [BUILD_DIR] [STEPS]     (THREADS=2 by default)
# Prints tokens/s of each run and the ratio st / PyTorch of the means.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
K=${2:-10}
threads=${THREADS:-2}
scripts/get-data.sh text >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 4000000 data/gcide.txt > "$tmp/data.txt"
model=(--layers 4 --d-model 128 --heads 4 --ctx 256 --pattern fixed --mode merged --stride 64 --summary 16 --block 32 --pos 2d)
# The demo config's initial weights, for PyTorch to start from.
"$build/st-train" "${model[@]}" --steps 0 --eval-windows 1 --quiet -o "$tmp/init.st" "$tmp/data.txt"
st_run() {
    "$build/st-train" "${model[@]}" --batch 32 --steps $((K + 3)) --eval-every 0 --eval-windows 1 --threads "$threads" \
        --quiet --log "$tmp/st.jsonl" -o "$tmp/st.st" "$tmp/data.txt"
    # tokens/s over the steps after the first 3, as PyTorch's --bench counts them
    /usr/bin/python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if "\"loss\"" in l][3:]; print(round(sum(x["tokens_per_s"] for x in r)/len(r)))' "$tmp/st.jsonl"
}
torch_run() {
    OMP_NUM_THREADS=$threads /usr/bin/python3 scripts/train_torch.py --init "$tmp/init.st" --data "$tmp/data.txt" --batch 32 \
        --threads "$threads" --bench "$K" | /usr/bin/python3 -c 'import json,sys; print(round(json.loads(sys.stdin.read().strip().splitlines()[-1])["tokens_per_s"]))'
}
st_all=() torch_all=()
for round in 1 2; do
    s=$(st_run); t=$(torch_run)
    echo "round $round: st $s tokens/s, pytorch $t tokens/s"
    st_all+=("$s"); torch_all+=("$t")
done
/usr/bin/python3 - "${st_all[@]}" "${torch_all[@]}" <<'PY'
import sys
v = list(map(float, sys.argv[1:])); n = len(v) // 2
s, t = sum(v[:n]) / n, sum(v[n:]) / n
print(f"st {s:.0f} tokens/s, pytorch {t:.0f} tokens/s, ratio st/pytorch {s / t:.2f}")
PY
