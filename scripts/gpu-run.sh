#!/usr/bin/env bash
# Everything a CUDA build can show on a GPU machine, in one go: the [gpu] tests, st's attention,
# training-step and sampling benchmarks, and their PyTorch peers on the same card (scripts/peer_*.py,
# the machine's python3 with PyTorch and Triton), then the tables of st, peer and ratio.
#   scripts/gpu-run.sh [BUILD_DIR] [PARTS]
# BUILD_DIR: a `make gpu` build (default build-gpu). PARTS: a comma list of tests, attention, train,
# long, sample, dist (default: all; dist, scripts/bench-dist.sh on every GPU of the host, only where
# there are two or more). SEQS: attention lengths (default 4096,16384,65536); LONG: the long part's
# rows (262k,1m,16m,offload,longest,learn); LONG_PEERS=0 skips PyTorch's long runs; T1, T16: the sampling
# peer's tokens at batch 1 and 16 (default 4096 each);
# PEER_TIMEOUT: seconds a peer program may take (default 300). COMMIT: the commit the build was made
# from (default: git rev-parse --short HEAD here, where there is a .git; else unknown).
# OUT: where logs go (default runs/gpu). Every number is a median of timed runs after warm-up.
# Then, to put the run's tables into docs/PERF.md: scripts/gpu-table.py runs/gpu --perf docs/PERF.md
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
parts=${2:-tests,attention,train,long,sample,dist}
out=${OUT:-runs/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
has() { [[ ",$parts," == *",$1,"* ]]; }
py=python3
# A peer program under a time limit (PEER_TIMEOUT seconds, default 300): a compile that does not end
# costs its own rows of the table, not the rest of the run.
peer_py() {
    timeout "${PEER_TIMEOUT:-300}" $py "$@" && return 0
    local rc=$?
    echo "{\"impl\": \"peer\", \"error\": \"$(basename "$1") ended with status $rc (124: past PEER_TIMEOUT)\"}"
    return $rc
}
status=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
date +%F > "$out/date.txt"
commit=${COMMIT:-}   # for the tables: the build's commit, "with changes" where the tree differs from it
if [ -z "$commit" ] && [ -e .git ]; then
    commit=$(git rev-parse --short HEAD 2>/dev/null) && { git diff --quiet HEAD 2>/dev/null || commit+=" with changes"; }
fi
echo "${commit:-unknown}" > "$out/commit.txt"

if has tests; then
    echo "== [gpu] tests"
    if ! "$build/st-tests" "[gpu]" > "$out/tests.log" 2>&1; then
        status=1
        export ST_ATTENTION=mma   # what follows runs on the kernels that passed before
        echo "[gpu] tests FAILED: the benchmarks below run with ST_ATTENTION=mma"
    fi
    tail -n 4 "$out/tests.log"
fi

if has attention; then
    # Head size 64 (H 8) and 128 (H 4): the same tokens and FLOPs, different kernels.
    echo "== attention: st"
    { "$build/st-bench-attention" && H=4 D=128 "$build/st-bench-attention"; } | tee "$out/st_attention.jsonl" || status=1
    echo "== attention: PyTorch (SDPA, FlexAttention)"
    { peer_py scripts/peer_attention.py && H=4 D=128 peer_py scripts/peer_attention.py; } 2>>"$out/peers.err" |
        tee "$out/peer_attention.jsonl" || status=1
fi

# A training step, tokens/s and peak memory: on random bytes (the speed does not depend on the data),
# or on DATA where the loss must fall.
st_train() {   # NAME ST-TRAIN-OPTIONS... (its log stays in $out: a run cut off by a time limit still shows how far it got)
    local name=$1 data=${DATA:-$tmp/random.bin}
    shift
    [ -s "$tmp/random.bin" ] || head -c 40000000 /dev/urandom > "$tmp/random.bin"
    "$build/st-train" --device cuda "$@" --steps "${STEPS:-13}" --warmup "${WARMUP:-1}" --eval-every 0 --eval-windows 1 --quiet \
        --log "$out/$name.log" -o "$tmp/$name.st" "$data" || { echo "{\"impl\": \"st\", \"name\": \"$name\", \"error\": \"failed\"}"; return 1; }
    $py - "$out/$name.log" "$name" <<'PY'
import json, statistics, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
rows = steps[3:] or steps[1:]  # after warm-up: the first steps choose algorithms and fill caches
ms = statistics.median(r["ms"] for r in rows)
print(json.dumps(dict(impl="st", name=sys.argv[2], step_ms=round(ms, 2), tokens_per_s=round(rows[0]["tokens_per_s"] * rows[0]["ms"] / ms),
                      peak_gib=round(steps[-1]["peak_gib"], 2), losses=[round(r["loss"], 3) for r in steps], loss=round(steps[-1]["loss"], 3))))
PY
}
# Text to learn, for the runs whose loss must fall: gcide where it is there, else st's own sources, repeated.
text_data() {
    [ -s "$tmp/text.bin" ] && return
    { cat data/gcide.txt 2>/dev/null; for i in $(seq 1 800); do cat libst/*.cpp libst/*/*.cpp kernels/*.cu docs/*.md; done; } |
        head -c 80000000 > "$tmp/text.bin"
}
if has train; then
    echo "== training step: 12 layers, d 512, 8 heads, n 16384, batch 4, fixed"
    step12=(--layers 12 --d-model 512 --heads 8 --ctx 16384 --pattern fixed --stride 1024 --summary 128 --block 128 --pos 1d --batch 4)
    {
        ST_PROFILE=1 st_train step12 "${step12[@]}"
        # On a Hopper the default is the wgmma attention: the same step on the mma.sync kernels beside it.
        if [ "$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1)" = 9.0 ] && [ "${ST_ATTENTION:-}" != mma ]; then
            ST_PROFILE=1 ST_ATTENTION=mma st_train step12-mma "${step12[@]}"
        fi
    } | tee "$out/st_train.jsonl" || status=1
    echo "== training step: PyTorch (FlexAttention, fixed)"
    KINDS=fixed LAYERS=12 DMODEL=512 HEADS=8 SEQ=16384 BATCH=4 STRIDE_BLOCKS=8 POS=1d CKPT=0 peer_py scripts/peer_train.py \
        2>>"$out/peers.err" | tee "$out/peer_train.jsonl" || status=1
fi

if has long; then
    echo "== long sequences"
    long262k=(--layers 8 --d-model 512 --heads 8 --ctx 262144 --pattern fixed --stride 4096 --summary 128 --block 128 --pos 2d --batch 1)
    long1m=(--layers 4 --d-model 256 --heads 4 --ctx 1048576 --pattern fixed --stride 8192 --summary 128 --block 128 --pos 2d --batch 1)
    # LONG: the rows to run (default 262k,1m,16m,offload,longest,learn).
    rows=${LONG:-262k,1m,16m,offload,longest,learn}
    row() { [[ ",$rows," == *",$1,"* ]]; }
    # 16M tokens and past on text: the loss must fall. Strided with stride 4096 (the paper's sqrt(n));
    # the held-out part must hold one window.
    long16m=(--layers 4 --d-model 256 --heads 4 --pattern strided --stride 4096 --block 128 --pos 2d --batch 1 --recompute --lr 0.001)
    {
        if row 262k; then
            st_train long262k "${long262k[@]}"
            st_train long262k-rec "${long262k[@]}" --recompute   # beside the peer with activation checkpointing
        fi
        if row 1m; then
            st_train long1m "${long1m[@]}"
            st_train long1m-rec "${long1m[@]}" --recompute
        fi
        text_data
        row 16m && DATA=$tmp/text.bin STEPS=5 WARMUP=2 st_train long16m-rec "${long16m[@]}" --ctx 16777216 --val-frac 0.3
        row offload &&
            DATA=$tmp/text.bin STEPS=5 WARMUP=2 st_train long16m-off "${long16m[@]}" --ctx 16777216 --val-frac 0.3 --offload
        if row longest; then
            # The longest context --offload fits on this card, as st-train --plan finds it.
            longest=$("$build/st-train" --plan --device cuda "${long16m[@]}" --offload --ctx $((1 << 25)) |
                sed -n 's/.*the longest --ctx at --batch 1: \([0-9]*\).*/\1/p')
            DATA=$tmp/text.bin STEPS=3 WARMUP=2 st_train "longest-off-$longest" "${long16m[@]}" --ctx "$longest" --val-frac 0.45 --offload
        fi
        if row learn; then
            # The same learning with and without --recompute: 200 steps at n 65,536 from the same start. The
            # paper's chunk for text (l 128, c 32): with l 1024 the model stays at the unigram level for
            # longer than 200 steps, and its spikes part the two runs (kernels/dev/NOTES.md).
            learn=(--layers 4 --d-model 256 --heads 4 --ctx 65536 --pattern fixed --stride 128 --summary 32 --block 64 --pos 2d --batch 2 --lr 0.001)
            DATA=$tmp/text.bin STEPS=200 WARMUP=20 st_train learn64k "${learn[@]}"
            DATA=$tmp/text.bin STEPS=200 WARMUP=20 st_train learn64k-rec "${learn[@]}" --recompute
        fi
    } | tee "$out/st_long.jsonl" || status=1
    if [ "${LONG_PEERS:-1}" = 1 ]; then
        echo "== long sequences: PyTorch (FlexAttention, fixed)"
        {
            KINDS=fixed LAYERS=8 DMODEL=512 HEADS=8 SEQ=262144 BATCH=1 STRIDE_BLOCKS=32 POS=2d CKPT=0 peer_py scripts/peer_train.py
            KINDS=fixed LAYERS=8 DMODEL=512 HEADS=8 SEQ=262144 BATCH=1 STRIDE_BLOCKS=32 POS=2d CKPT=1 peer_py scripts/peer_train.py
            # at 1M the peer needs activation checkpointing (CKPT=1)
            KINDS=fixed LAYERS=4 DMODEL=256 HEADS=4 SEQ=1048576 BATCH=1 STRIDE_BLOCKS=64 POS=2d CKPT=1 peer_py scripts/peer_train.py
        } 2>>"$out/peers.err" | tee "$out/peer_long.jsonl" || status=1
    fi
fi

if has sample; then
    echo "== sampling: 12 layers, d 512, context 65536"
    head -c 40000000 /dev/urandom > "$tmp/random.bin"
    "$build/st-train" --device cuda --layers 12 --d-model 512 --heads 8 --ctx 65536 --pattern fixed --stride 1024 \
        --summary 128 --block 128 --pos 2d --batch 1 --steps 2 --warmup 1 --eval-every 0 --eval-windows 1 --quiet \
        -o "$tmp/sample.st" "$tmp/random.bin" || status=1
    sample_run() {   # BATCH BYTES: one JSON line with the wall time of st-sample
        local t0 t1
        t0=$(date +%s.%N)
        "$build/st-sample" --device cuda -b "$1" -n "$2" "$tmp/sample.st" > "$tmp/sample.out" || status=1
        t1=$(date +%s.%N)
        echo "{\"impl\": \"st\", \"batch\": $1, \"tokens\": $2, \"seconds\": $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'), \"bytes_out\": $(stat -c %s "$tmp/sample.out")}"
    }
    {
        for b in 1 4 8 16; do sample_run $b 4096; done   # 4: the last batch of fused products, 8: cuBLASLt's
        sample_run 1 65536
    } | tee "$out/st_sample.jsonl"
    "$build/st-bench-decode" | tee "$out/st_decode.jsonl" || status=1
    echo "== sampling: PyTorch (KV cache, SDPA)"
    LAYERS=12 DMODEL=512 HEADS=8 SEQ=65536 T1=${T1:-4096} T16=${T16:-4096} peer_py scripts/peer_sample.py 2>>"$out/peers.err" |
        tee "$out/peer_sample.jsonl" || status=1
fi

gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
if has dist && [ "$gpus" -ge 2 ]; then
    echo "== several GPUs: $gpus"
    head -c 8000000 data/gcide.txt > "$tmp/text.txt" 2>/dev/null ||   # text to learn; else st's own sources
        cat libst/*.cpp libst/*/*.cpp kernels/*.cu kernels/*.h docs/*.md man/* > "$tmp/text.txt"
    GPUS=$gpus OUT=$out/dist scripts/bench-dist.sh "$build" "$tmp/text.txt" | tee "$out/dist.jsonl" || status=1
fi

$py scripts/gpu-table.py "$out"
exit $status
