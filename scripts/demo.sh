#!/usr/bin/env bash
# The demo: fetch the gcide dictionary, train a Sparse Transformer on it, print its held-out bits per
# byte and a sample. Where st-train finds a GPU that the model fits, a 12-layer model for about 4
# minutes (an H100 or H200); else a small model on the CPU (about 9 minutes on 2 cores).
#   scripts/demo.sh [BUILD_DIR]      (make demo runs it after building)
# DEMO_DEVICE=cpu keeps it on the CPU; DEMO_STEPS changes the steps of either recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
scripts/get-data.sh text
mkdir -p runs
# The recipes (docs/PERF.md records what each reaches; the CPU one beside PyTorch trained the same way).
cpu=(--layers 4 --d-model 128 --heads 4 --ctx 256 --pattern fixed --mode merged --stride 64 --summary 16
     --block 32 --pos 2d --batch 32 --steps ${DEMO_STEPS:-800} --lr 0.004 --lr-min 0.002 --warmup 50 --eval-every 100 --eval-windows 128)
# Dictionary entries are short: a context of 2,048 with a chunk of 64 serves them, and spends the
# time on steps rather than on long attention. The model sees gcide about five times: dropout keeps
# it from learning the training part by heart (kernels/dev/NOTES.md has the recipes tried).
gpu=(--layers 12 --d-model 512 --heads 8 --ctx 2048 --pattern fixed --mode merged --stride 64 --summary 16
     --block 64 --pos 2d --batch 32 --steps ${DEMO_STEPS:-3000} --lr 0.0015 --warmup 150 --dropout 0.1 --eval-every 500
     --eval-windows 256)
recipe=("${cpu[@]}" --device cpu)
why="DEMO_DEVICE=cpu"
if [ "${DEMO_DEVICE:-auto}" != cpu ]; then
    # st-train itself says whether there is a GPU this build can use, and whether the model fits it.
    if plan=$("$build/st-train" --plan --device cuda "${gpu[@]}" 2>&1); then
        card=$(sed -n 's/.* on \(.*\)$/\1/p' <<< "$plan" | head -n 1)
        if grep -q "fits: yes" <<< "$plan"; then
            recipe=("${gpu[@]}" --device cuda)
            why="a GPU: $card"
        else
            why="the GPU recipe does not fit $card"
        fi
    else
        why="no GPU here: $(tail -n 1 <<< "$plan" | sed 's/^st-train: //')"
    fi
fi
if [ "${recipe[-1]}" = cuda ]; then
    echo "demo: 12 layers, d 512, context 2048, on $why: about 4 minutes of training on an H100 or H200"
else
    echo "demo: 4 layers, d 128, context 256, on the CPU ($why): about 9 minutes on 2 cores"
fi
"$build/st-train" "${recipe[@]}" --log runs/demo.jsonl -o runs/demo.st data/gcide.txt
echo
echo "A sample (temperature 0.8), primed with a headword:"
printf 'Transformer \\Trans*form"er\\, n.' > runs/prime.txt
"$build/st-sample" runs/demo.st --prime runs/prime.txt --echo -n 600 --temperature 0.8 --seed 7
echo
