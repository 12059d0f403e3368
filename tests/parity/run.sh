#!/usr/bin/env bash
# Parity with an independent implementation: for several configs, st writes a model file and its
# loss and gradients on one batch; the PyTorch model (scripts/torch_st.py) loads the file and
# recomputes both in float64 (loss within 1e-5 relative, each gradient within 1e-4).
#   run.sh BUILD_DIR [cuda]
# With cuda, st's GPU engine computes the loss and gradients (bf16 activations: loss within 5e-3,
# gradients within 3e-2) and PyTorch runs on the GPU; the models are wider (the GPU kernels take head
# sizes of 32, 64 or 128).
set -u
build=${1:?usage: run.sh BUILD_DIR [cuda]}
device=${2:-cpu}
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-/usr/bin/python3}
tols=()
if ! $py -c "import torch" 2>/dev/null; then
    echo "torch parity: python3-torch is missing (scripts/install-deps.sh installs it)" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
base='"n_layer":2,"d_model":32,"n_head":4,"ff_mult":4,"vocab":256,"summary":4,"block":32,"dropout":0'
if [ "$device" = cuda ]; then
    base='"n_layer":2,"d_model":128,"n_head":4,"ff_mult":4,"vocab":256,"summary":4,"block":64,"dropout":0'
    tols=(5e-3 3e-2)
fi
configs=(
  '{'"$base"',"n_ctx":96,"pattern":"fixed","mode":"merged","stride":16,"pos":"2d"}'
  '{'"$base"',"n_ctx":96,"pattern":"fixed","mode":"interleaved","stride":16,"pos":"1d"}'
  '{'"$base"',"n_ctx":96,"pattern":"strided","mode":"merged","stride":8,"pos":"2d"}'
  '{'"$base"',"n_ctx":96,"pattern":"strided","mode":"multihead","stride":12,"pos":"2d"}'
  '{'"$base"',"n_ctx":64,"pattern":"dense","mode":"merged","stride":16,"pos":"1d"}'
  '{'"$base"',"n_ctx":48,"pattern":"strided","mode":"interleaved","stride":12,"pos":"image","image":[4,4,3]}'
  '{'"$base"',"n_ctx":80,"pattern":"local","mode":"merged","stride":20,"pos":"2d"}'
)
passed=0 failed=0
for c in "${configs[@]}"; do
    rm -f "$tmp"/*
    if "$build/st-parity-dump" "$c" "$tmp" "$device" && OMP_NUM_THREADS=2 $py "$here/check_parity.py" "$tmp/model.st" "$tmp/grads.st" "${tols[@]}" > "$tmp/log" 2>&1; then
        passed=$((passed + 1)); echo "ok    $c"
    else
        failed=$((failed + 1)); echo "FAIL  $c"; cat "$tmp/log"
    fi
done
echo "torch parity: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
