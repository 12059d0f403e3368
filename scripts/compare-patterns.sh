#!/usr/bin/env bash
# The comparison of the paper's Table 2 (Child et al. 2019, section 7) at small scale: one model and
# one recipe trained with dense, fixed, strided and local attention on each kind of data, held-out
# bits per byte (per dim for pictures) and wall time side by side, then each kind's curves drawn by
# st-plot against training time.
#   scripts/compare-patterns.sh [BUILD_DIR]
# Data (scripts/get-data.sh): TEXT (data/gcide.txt), IMAGES (data/fashion-mnist, its IDX files),
# AUDIO (mu-law bytes, e.g. st-audio encode data/music/*.ogg > music.bytes; none: the kind is skipped),
# AUDIO_VAL (held-out mu-law bytes, e.g. other tracks; none: st-train holds out AUDIO's tail).
# Environment: DEVICE (cuda), KINDS (text,images,audio), PATTERNS (dense,fixed,strided,local), STEPS
# (1000), LAYERS (8), DMODEL (256), HEADS (4), BATCH (16; pictures: IMAGE_BATCH, 128, about as many bytes a
# step as 16 windows of text), LR (0.001), CTX (8192, text and audio;
# pictures are 28x28x1), STRIDE (128, text and audio; pictures: one row), EVAL_WINDOWS (64; pictures:
# IMAGE_EVAL, 2000 test pictures, as one window of text holds ten pictures' bytes), OUT (runs/patterns),
# COMMIT (the commit BUILD_DIR was built from; default: this checkout's).
# Writes OUT/KIND-PATTERN.jsonl (st-train's logs), OUT/results.jsonl (a line a run), OUT/table.md
# (the table docs/PATTERNS.md holds) and OUT/KIND.png (st-plot).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
device=${DEVICE:-cuda}
kinds=${KINDS:-text,images,audio}
patterns=${PATTERNS:-dense,fixed,strided,local}
steps=${STEPS:-1000}
ctx=${CTX:-8192}
stride=${STRIDE:-128}
out=${OUT:-runs/patterns}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: > "$out/results.jsonl"

model=(--layers "${LAYERS:-8}" --d-model "${DMODEL:-256}" --heads "${HEADS:-4}" --block 64)
recipe=(--steps "$steps" --lr "${LR:-0.001}" --warmup $((steps / 20 + 1)) --eval-every $((steps / 10 + 1))
    --device "$device" -q)

# KIND PATTERN DATA ST-TRAIN-OPTIONS...: one run, its log and a result line.
run() {
    local kind=$1 pattern=$2 data=$3 t0 t1
    shift 3
    local log="$out/$kind-$pattern.jsonl"
    t0=$(date +%s.%N)
    "$build/st-train" "${model[@]}" "${recipe[@]}" --pattern "$pattern" "$@" --log "$log" -o "$tmp/$kind-$pattern.st" "$data"
    t1=$(date +%s.%N)
    python3 - "$log" "$kind" "$pattern" "$t0" "$t1" >> "$out/results.jsonl" <<'PY'
import json, sys
log, kind, pattern, t0, t1 = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
lines = [json.loads(l) for l in open(log) if l.strip()]
held = [l for l in lines if "val_bits" in l]
steps = [l for l in lines if "loss" in l]
print(json.dumps(dict(kind=kind, pattern=pattern, steps=len(steps), held_out_bits=held[-1]["val_bits"] if held else None,
                      seconds=round(t1 - t0, 1), step_ms=round(sorted(l["ms"] for l in steps)[len(steps) // 2], 2))))
PY
    tail -n 1 "$out/results.jsonl"
}

has() { [[ ",$kinds," == *",$1,"* ]]; }
for pattern in ${patterns//,/ }; do
    if has text; then
        # fixed: a summary of 16 positions a stride (the paper's c = 8 for stride 128, doubled for heads)
        run text "$pattern" "${TEXT:-data/gcide.txt}" --ctx "$ctx" --stride "$stride" --summary 16 --pos 2d \
            --batch "${BATCH:-16}" --eval-windows "${EVAL_WINDOWS:-64}"
    fi
    if has images; then
        dir=${IMAGES:-data/fashion-mnist}
        [ -s "$tmp/train.bin" ] || "$build/st-image" encode -q "$dir/train-images-idx3-ubyte.gz" > "$tmp/train.bin"
        [ -s "$tmp/test.bin" ] || "$build/st-image" encode -q "$dir/t10k-images-idx3-ubyte.gz" > "$tmp/test.bin"
        run images "$pattern" "$tmp/train.bin" --image 28x28x1 --stride 28 --summary 4 --val "$tmp/test.bin" \
            --batch "${IMAGE_BATCH:-128}" --eval-windows "${IMAGE_EVAL:-2000}"
    fi
    if has audio; then
        if [ -z "${AUDIO:-}" ]; then
            echo "compare-patterns: no AUDIO bytes given; the audio runs are skipped" >&2
        else
            run audio "$pattern" "$AUDIO" --ctx "$ctx" --stride "$stride" --summary 16 --pos 2d --batch "${BATCH:-16}" \
                --eval-windows "${EVAL_WINDOWS:-64}" ${AUDIO_VAL:+--val "$AUDIO_VAL"}
        fi
    fi
done

# The table: a row a pattern, a column a kind, each cell held-out bits and wall time; above it, where
# and from what it was measured.
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || true)
commit=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
python3 - "$out/results.jsonl" "$(date +%F)" "${card:-CPU}" "$commit" "$device" "$steps" > "$out/table.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
date, card, commit, device, steps = sys.argv[2:7]
print(f"{date}, {card} (--device {device}), commit {commit}, {steps} steps a run\n")
kinds = [k for k in ("text", "images", "audio") if any(r["kind"] == k for r in rows)]
patterns = [p for p in ("dense", "fixed", "strided", "local") if any(r["pattern"] == p for r in rows)]
unit = {"text": "bits per byte", "images": "bits per dim", "audio": "bits per byte"}
print("| pattern | " + " | ".join(f"{k}: held-out {unit[k]} (wall time)" for k in kinds) + " |")
print("|---" * (len(kinds) + 1) + "|")
for p in patterns:
    cells = []
    for k in kinds:
        r = next((r for r in rows if r["kind"] == k and r["pattern"] == p), None)
        cells.append(f"{r['held_out_bits']:.4f} ({r['seconds']:.0f} s)" if r and r["held_out_bits"] is not None else "")
    print(f"| {p} | " + " | ".join(cells) + " |")
PY
cat "$out/table.md"
for kind in ${kinds//,/ }; do
    logs=() labels=()
    for pattern in ${patterns//,/ }; do
        [ -s "$out/$kind-$pattern.jsonl" ] && logs+=("$out/$kind-$pattern.jsonl") && labels+=("$pattern")
    done
    [ ${#logs[@]} -gt 0 ] || continue
    unit=byte
    [ "$kind" = images ] && unit=dim
    "$build/st-plot" --against time --unit $unit --labels "$(IFS=,; echo "${labels[*]}")" \
        --title "$kind: the same model and steps" -o "$out/$kind.png" "${logs[@]}"
done
