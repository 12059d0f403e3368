#!/usr/bin/env python3
# The PyTorch peer of st-train's GPU step: one training step of the same pre-norm Sparse Transformer
# (byte vocabulary, GELU MLP 4d, learned 1-d or 2-d positions; the model of scripts/peer_train_ddp.py,
# on one GPU) with bf16 autocast, torch.compile and fused AdamW, the attention FlexAttention over
# st's fixed pattern at block 128 (own chunk of STRIDE_BLOCKS blocks and the last block of every
# earlier chunk) or dense causal SDPA. Random bytes: the speed does not depend on the data. After 3
# warm-up steps (compilation included), ITERS steps each between two CUDA events; after a first line
# {"torch", "device"}, one JSON line a kind:
#   {"impl": "torch_fixed"|"torch_dense", "layers", "d", "heads", "seq", "batch", "pos", "ckpt",
#    "params", "step_ms" (median), "tokens_per_s", "peak_gib" (torch.cuda.max_memory_allocated over
#    the timed steps), "warmup_s", "loss"}, or {"impl", ..., "error": "out of memory"}.
# Run on a GPU machine with a recent PyTorch and Triton (written for 2.11 and 3.6; scripts/gpu-run.sh runs it):
#   python3 scripts/peer_train.py
#   KINDS=fixed SEQ=1048576 LAYERS=4 DMODEL=256 HEADS=4 BATCH=1 STRIDE_BLOCKS=64 POS=2d CKPT=1 python3 scripts/peer_train.py
# Environment: LAYERS=12 DMODEL=512 HEADS=8 SEQ=16384 BATCH=4 STRIDE_BLOCKS=8 KINDS=fixed,dense
# POS=1d|2d (2d: row + column positions, the row STRIDE_BLOCKS blocks wide) CKPT=0|1 (activation
# checkpointing: each block recomputed in the backward) ITERS=10. Exits 1 if a kind failed.
import json
import os
import statistics
import sys

import torch

if not torch.cuda.is_available():
    sys.exit("peer_train.py: no CUDA GPU (torch.cuda.is_available() is false)")

import torch.nn.functional as F  # noqa: E402
from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_train_ddp import BS, CKPT, DM, ITERS, L, N, NH, NL, POS, B, V, Model, train_step, warm_up  # noqa: E402

KINDS = os.environ.get("KINDS", "fixed,dense").split(",")
DEV = "cuda"


def attention(kind):
    """The model's attention over (batch, heads, N, head size) q, k, v."""
    if kind == "dense":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def fixed(b, h, q_idx, kv_idx):
        qb, kb = q_idx // BS, kv_idx // BS
        return (q_idx >= kv_idx) & ((kb // L == qb // L) | (kb % L == L - 1))
    # _compile=True: without it create_block_mask holds all N x N pairs at once (out of memory from 262,144)
    block_mask = create_block_mask(fixed, None, None, N, N, device=DEV, BLOCK_SIZE=BS, _compile=True)
    return lambda q, k, v: flex_attention(q, k, v, block_mask=block_mask)


def config(kind):
    return dict(impl="torch_" + kind, layers=NL, d=DM, heads=NH, seq=N, batch=B, pos=POS, ckpt=CKPT)


def measure(kind):
    torch.manual_seed(0)
    model = Model().to(DEV)
    model.attn = attention(kind)
    step_fn = torch.compile(model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)
    idx, tgt = torch.randint(0, V, (2, B, N), device=DEV)

    def step():
        return train_step(step_fn, opt, idx, tgt)

    warmup_s = warm_up(step)
    torch.cuda.reset_peak_memory_stats()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(ITERS)]
    for e0, e1 in events:
        e0.record()
        loss = step()
        e1.record()
    torch.cuda.synchronize()
    ms = statistics.median(e0.elapsed_time(e1) for e0, e1 in events)
    return dict(config(kind), params=sum(p.numel() for p in model.parameters()), step_ms=round(ms, 2),
                tokens_per_s=round(B * N / ms * 1e3), peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                warmup_s=round(warmup_s, 1), loss=round(loss.item(), 3))


for kind in KINDS:
    if kind not in ("fixed", "dense"):
        sys.exit(f"peer_train.py: KINDS: {kind!r} is not fixed or dense")
if N % (L * BS if POS == "2d" else BS):
    sys.exit(f"peer_train.py: SEQ {N} is not a multiple of the block ({BS}) or of the 2-d row (STRIDE_BLOCKS x {BS})")
print(json.dumps(dict(torch=torch.__version__, device=torch.cuda.get_device_name())), flush=True)
failed = False
for kind in KINDS:
    try:
        print(json.dumps(measure(kind)), flush=True)
    except torch.cuda.OutOfMemoryError:
        failed = True
        print(json.dumps(dict(config(kind), error="out of memory")), flush=True)
    torch.cuda.empty_cache()  # the kind's memory, a failed one's freed with its exception
sys.exit(1 if failed else 0)
