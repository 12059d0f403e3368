#!/usr/bin/env python3
# The PyTorch peer of st-bench-attention: attention alone on one GPU, bf16, 65,536 tokens a batch
# (n x batch 4096 x 16, 16384 x 4, 65536 x 1), dense causal SDPA and FlexAttention (torch.compile'd,
# block masks from create_block_mask) over the block layouts that st-bench-attention times, at block
# 128, the diagonal blocks causal inside (qb, kb: query and key block; L: chunk in blocks, 4, 8, 16
# for n 4096, 16384, 65536):
#   causal:  kb <= qb
#   fixed:   kb <= qb and (kb // L == qb // L or kb % L == L - 1)
#   strided: kb <= qb and ((qb - kb) < L or (qb - kb) % L == 0)
# For each case the median ms of the forward (as in training: inputs that need gradients) and of the
# forward and backward, CUDA events, after warm-up, on random inputs; TFLOP/s counted on the unmasked
# (query, key) pairs only, the backward as 2.5 forwards. One JSON line a case (after a first line
# {"torch", "device"}):
#   {"impl": "flex"|"sdpa_causal", "n", "B", "H", "D", "kind", "L", "bs", "pairs", "fwd_ms",
#    "fwdbwd_ms", "fwd_tflops", "fwdbwd_tflops"}
# Run on a GPU machine with a recent PyTorch and Triton (written for 2.11 and 3.6; scripts/gpu-run.sh runs it):
#   python3 scripts/peer_attention.py
# Environment: SEQS=4096,16384,65536 KINDS=dense,causal,fixed,strided (dense: SDPA) H=8 D=64
import json
import math
import os
import statistics
import sys

import torch

if not torch.cuda.is_available():
    sys.exit("peer_attention.py: no CUDA GPU (torch.cuda.is_available() is false)")

import torch.nn.functional as F  # noqa: E402
from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: E402

H, D = int(os.environ.get("H", 8)), int(os.environ.get("D", 64))
SEQS = [int(n) for n in os.environ.get("SEQS", "4096,16384,65536").split(",")]
KINDS = os.environ.get("KINDS", "dense,causal,fixed,strided").split(",")
TOKENS, BS = 65536, 128
DEV = "cuda"

torch._dynamo.config.recompile_limit = 64  # one compilation a length and layout, forward and backward
flex = torch.compile(flex_attention, dynamic=False)


def chunk_blocks(n):
    """L, as st-bench-attention takes it."""
    return {4096: 4, 16384: 8, 65536: 16}.get(n, max(2, int(math.sqrt(n // BS))))


def layout(kind, L):
    """Whether query block qb reads key block kb (tensors of block indices)."""
    if kind == "causal":
        return lambda qb, kb: kb <= qb
    if kind == "fixed":  # the query's own chunk of L blocks, and the last block of every earlier chunk
        return lambda qb, kb: (kb <= qb) & ((kb // L == qb // L) | (kb % L == L - 1))
    # strided: the L blocks up to the query's, and every L-th block further back
    return lambda qb, kb: (kb <= qb) & (((qb - kb) < L) | ((qb - kb) % L == 0))


def unmasked_pairs(allowed, n):
    """(query, key) pairs the layout computes: whole blocks off the diagonal, causal halves on it."""
    nb = n // BS
    qb, kb = torch.arange(nb)[:, None], torch.arange(nb)[None, :]
    off_diagonal = int((allowed(qb, kb) & (kb < qb)).sum())
    return off_diagonal * BS * BS + nb * BS * (BS + 1) // 2


def median_ms(fn, warmup=10, reps=50):
    """Each run between two CUDA events, the median; the runs are queued back to back and waited for
    once, as a training loop runs them, so Python's time to launch them hides behind the GPU's work."""
    for _ in range(warmup):
        fn()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for e0, e1 in events:
        e0.record()
        fn()
        e1.record()
    torch.cuda.synchronize()
    return statistics.median(e0.elapsed_time(e1) for e0, e1 in events)


def measure(n, kind):
    B, L = TOKENS // n, chunk_blocks(n)
    allowed = layout("causal" if kind == "dense" else kind, L)
    if kind == "dense":
        impl = "sdpa_causal"

        def attend(q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        impl = "flex"

        def mask_mod(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & allowed(q_idx // BS, kv_idx // BS)
        # _compile=True: without it create_block_mask holds all n x n pairs at once (out of memory from 262,144)
        block_mask = create_block_mask(mask_mod, None, None, n, n, device=DEV, BLOCK_SIZE=BS, _compile=True)

        def attend(q, k, v):
            return flex(q, k, v, block_mask=block_mask)
    g = torch.Generator(device=DEV).manual_seed(n)
    q, k, v = (torch.randn(B, H, n, D, device=DEV, dtype=torch.bfloat16, generator=g).requires_grad_() for _ in range(3))
    dout = torch.randn(B, H, n, D, device=DEV, dtype=torch.bfloat16, generator=g)

    def fwdbwd():
        torch.autograd.grad(attend(q, k, v), (q, k, v), dout)  # the gradients returned, not accumulated
    fwd_ms, fwdbwd_ms = median_ms(lambda: attend(q, k, v)), median_ms(fwdbwd)
    pairs = unmasked_pairs(allowed, n)
    flops = 4 * pairs * D * B * H
    print(json.dumps(dict(impl=impl, n=n, B=B, H=H, D=D, kind=kind, L=L, bs=BS, pairs=pairs,
                          fwd_ms=round(fwd_ms, 4), fwdbwd_ms=round(fwdbwd_ms, 4),
                          fwd_tflops=round(flops / fwd_ms / 1e9, 1),
                          fwdbwd_tflops=round(3.5 * flops / fwdbwd_ms / 1e9, 1))), flush=True)


for kind in KINDS:
    if kind not in ("dense", "causal", "fixed", "strided"):
        sys.exit(f"peer_attention.py: KINDS: {kind!r} is not dense, causal, fixed or strided")
for n in SEQS:
    if n <= 0 or TOKENS % n or n % BS:
        sys.exit(f"peer_attention.py: SEQS: {n} does not divide {TOKENS} or is not a multiple of {BS}")
print(json.dumps(dict(torch=torch.__version__, device=torch.cuda.get_device_name())), flush=True)
for n in SEQS:
    for kind in KINDS:
        measure(n, kind)
