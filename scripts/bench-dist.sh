#!/usr/bin/env bash
# Data-parallel training on the GPUs of one host, measured against one GPU and against PyTorch DDP +
# FlexAttention (scripts/peer_train_ddp.py under torchrun) in the same run. PARTS (default all):
#   learn: same learning. STEPS (200) steps on TEXT at the same global batch and seed, on 1 GPU, on N,
#     and on N with --shard-optimizer; each step's loss within 1% of the 1-GPU run's (the largest
#     difference is printed). The small model of scripts/compare-gpu.sh (4 layers d 256, context 1024,
#     batch 16) at lr LR (2e-4) after 100 warm-up steps, with dropout 0.1 (every rank must draw one
#     process's masks). The runs give the same losses to 4 decimals until the first gradient-norm
#     spike (clipped, but of a different size in each run: the order of the gradients' sums,
#     amplified), which parts the curves. On 2 MB of gcide and 4 GPUs: lr 5e-4 after 50 warm-up
#     steps, a spike at step 54 (the loss 2.2x) and 1.35% apart at worst; lr 3e-4, step 93 and
#     1.05%; lr 2e-4 (the least spiky on 1 GPU), step 97 and within 0.93%.
#   scaling: the 12-layer d 512 n 16384 fixed model on random bytes, 4 windows per GPU (weak scaling)
#     and 4 in all (strong), median step time, tokens/s, peak and optimizer memory; the peer at N GPUs.
#   fault: one rank killed with SIGKILL; every rank gone within 60 s, the message, the checkpoint
#     evaluated and resumed on N GPUs, then on one.
#   scripts/bench-dist.sh [BUILD_DIR] TEXT        (GPUS: default 2; OUT: default runs/dist; LR: learn's, 2e-4)
# Prints JSON lines; logs go to OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
text=${2:?usage: bench-dist.sh BUILD_DIR TEXT}
n=${GPUS:-2}
steps=${STEPS:-200}
parts=${PARTS:-learn,scaling,fault}
out=${OUT:-runs/dist}
py=${PYTHON:-python3}
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
has() { [[ ",$parts," == *",$1,"* ]]; }
status=0
model=(--device cuda --layers 12 --d-model 512 --heads 8 --ctx 16384 --pattern fixed --stride 1024 --summary 128 --block 128 --pos 1d)
small=(--device cuda --layers 4 --d-model 256 --heads 4 --ctx 1024 --pattern fixed --mode merged --stride 128 --summary 16 --block 64 --pos 2d)

same_learning() {   # NAME ST-TRAIN-OPTIONS...: 1 GPU, N GPUs, N GPUs sharded; one JSON line for each of the two
    local name=$1
    shift
    local run=(--steps "$steps" --dropout 0.1 --eval-every 0 --eval-windows 8 --quiet "$@")
    "$build/st-train" "${run[@]}" --log "$out/$name-1.jsonl" -o "$tmp/l1.st" "$text" || status=1
    "$build/st-train" "${run[@]}" --gpus "$n" --log "$out/$name-$n.jsonl" -o "$tmp/ln.st" "$text" || status=1
    "$build/st-train" "${run[@]}" --gpus "$n" --shard-optimizer --log "$out/$name-$n-sharded.jsonl" -o "$tmp/lz.st" "$text" || status=1
    $py - "$out" "$name" "$n" <<'PY' || status=1
import json, sys
out, name, n = sys.argv[1:4]
def losses(f):
    return [json.loads(l)["loss"] for l in open(f"{out}/{f}") if '"loss"' in l]
one = losses(f"{name}-1.jsonl")
for f in (f"{name}-{n}.jsonl", f"{name}-{n}-sharded.jsonl"):
    other = losses(f)
    rel = [abs(a - b) / a for a, b in zip(one, other)]
    print(json.dumps(dict(impl="same-learning", run=f, steps=len(other), steps_1gpu=len(one), worst_relative=round(max(rel), 6),
                          worst_step=rel.index(max(rel)) + 1, last_loss=round(other[-1], 4), last_loss_1gpu=round(one[-1], 4),
                          within_1pct=len(other) == len(one) and max(rel) < 0.01)))
PY
}
if has learn; then
    echo "== same learning: $steps steps, 1 GPU, $n GPUs, $n GPUs with --shard-optimizer"
    same_learning learn "${small[@]}" --batch 16 --lr "${LR:-0.0002}" --warmup 100
fi

if has scaling; then
    echo "== scaling: st"
    head -c 40000000 /dev/urandom > "$tmp/random.bin"
    speed() {   # NAME ST-TRAIN-OPTIONS...: one JSON line, medians over the steps after the third
        local name=$1
        shift
        "$build/st-train" "${model[@]}" "$@" --steps 13 --warmup 1 --eval-every 0 --eval-windows 1 --quiet \
            --log "$out/$name.jsonl" -o "$tmp/$name.st" "$tmp/random.bin" || { echo "{\"impl\": \"st\", \"name\": \"$name\", \"error\": \"failed\"}"; return 1; }
        $py - "$out/$name.jsonl" "$name" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l][3:]
ms = statistics.median(r["ms"] for r in rows)
tok = rows[0]["tokens_per_s"] * rows[0]["ms"] / ms
print(json.dumps(dict(impl="st", name=sys.argv[2], step_ms=round(ms, 2), tokens_per_s=round(tok), peak_gib=round(rows[-1]["peak_gib"], 2),
                      optimizer_gib=round(rows[-1].get("optimizer_gib", 0), 3))))
PY
    }
    {
        speed st-1gpu --batch 4
        speed "st-${n}gpu" --batch $((4 * n)) --gpus "$n"
        speed "st-${n}gpu-sharded" --batch $((4 * n)) --gpus "$n" --shard-optimizer
        speed "st-${n}gpu-strong" --batch 4 --gpus "$n"
    } | tee "$out/st-scaling.jsonl" || status=1
    echo "== scaling: PyTorch DDP + FlexAttention"
    timeout 300 $py -m torch.distributed.run --standalone --nproc_per_node "$n" scripts/peer_train_ddp.py 2>> "$out/peer.err" |
        tee "$out/peer-scaling.jsonl" || status=1
    $py - "$out" "$n" <<'PY'
import json, sys
out, n = sys.argv[1], sys.argv[2]
st = {r["name"]: r for r in map(json.loads, open(f"{out}/st-scaling.jsonl")) if "tokens_per_s" in r}
peer = {r["world"]: r for r in map(json.loads, open(f"{out}/peer-scaling.jsonl")) if "tokens_per_s" in r}
one, many = st.get("st-1gpu"), st.get(f"st-{n}gpu")
res = dict(impl="scaling", gpus=int(n))
if one and many:
    res.update(st_1gpu=one["tokens_per_s"], st_ngpu=many["tokens_per_s"], st_speedup=round(many["tokens_per_s"] / one["tokens_per_s"], 3))
if int(n) in peer:
    res.update(peer_ngpu=round(peer[int(n)]["tokens_per_s"]))
    if many:
        res.update(st_over_peer=round(many["tokens_per_s"] / peer[int(n)]["tokens_per_s"], 3))
print(json.dumps(res))
PY
fi

if has fault; then
    echo "== a killed rank"
    "$build/st-train" "${small[@]}" --batch 16 --eval-every 0 --eval-windows 2 --quiet --steps 1000000 --save-every 20 --gpus "$n" -o "$tmp/k.st" "$text" 2> "$out/kill.err" &
    job=$!
    for _ in $(seq 600); do [ -s "$tmp/k.st" ] && break; sleep 0.1; done
    victim=
    for p in $(pgrep -P $job); do tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx RANK=1 && victim=$p; done
    start=$(date +%s.%N)
    [ -n "$victim" ] && kill -9 "$victim"
    wait $job
    code=$?
    took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    "$build/st-eval" --device cuda "$tmp/k.st" "$text" > "$out/kill-eval.txt" 2>&1 && eval_ok=true || eval_ok=false
    "$build/st-train" --device cuda --resume "$tmp/k.st" --gpus "$n" --steps 10000000 --stop-after 5 --quiet -o "$tmp/k.st" "$text" 2>> "$out/kill.err" &&
        resume_ok=true || resume_ok=false
    # The same checkpoint goes on with one GPU: a run resumes on another count.
    "$build/st-train" --device cuda --resume "$tmp/k.st" --steps 10000000 --stop-after 5 --quiet -o "$tmp/k.st" "$text" 2>> "$out/kill.err" &&
        resume_1gpu_ok=true || resume_1gpu_ok=false
    msg=$(grep -m1 "stopped" "$out/kill.err" | tr -d '"')
    echo "{\"impl\": \"fault\", \"victim\": \"${victim:-none}\", \"status\": $code, \"seconds\": $took, \"message\": \"$msg\", \"eval_ok\": $eval_ok, \"resume_ok\": $resume_ok, \"resume_1gpu_ok\": $resume_1gpu_ok}"
fi
exit $status
