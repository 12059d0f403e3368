#!/usr/bin/env bash
# The demo: fetch the gcide dictionary, train a small Sparse Transformer on the CPU (about 9
# minutes on 2 cores), print its held-out bits per byte and a sample.
#   scripts/demo.sh [BUILD_DIR]      (make demo runs it after building)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
scripts/get-data.sh text
mkdir -p runs
# The demo recipe (docs/PERF.md records what it reaches, beside PyTorch trained the same way).
recipe=(--layers 4 --d-model 128 --heads 4 --ctx 256 --pattern fixed --mode merged --stride 64 --summary 16
        --block 32 --pos 2d --batch 32 --steps ${DEMO_STEPS:-800} --lr 0.004 --lr-min 0.002 --warmup 50 --eval-every 100 --eval-windows 128)
"$build/st-train" "${recipe[@]}" --log runs/demo.jsonl -o runs/demo.st data/gcide.txt
echo
echo "A sample (temperature 0.8), primed with a headword:"
printf 'Transformer \\Trans*form"er\\, n.' > runs/prime.txt
"$build/st-sample" runs/demo.st --prime runs/prime.txt --echo -n 600 --temperature 0.8 --seed 7
echo
