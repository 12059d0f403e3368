#!/usr/bin/env python3
# The PyTorch peer of st-sample on the GPU: incremental sampling as a PyTorch user writes it. The
# blocks of scripts/peer_train_ddp.py's model in bf16, eager, one learned position a token; a KV
# cache allocated once for the whole run, one token a step through SDPA over the cached prefix (all
# of it: a dense prefix), multinomial sampling at temperature 1. Random weights: the speed does not
# depend on them. Seconds (perf_counter around the whole loop, after a warm-up run) and tokens/s at
# batch 1 for T1 tokens and at batch 16 for T16 steps; after a first line {"torch", "device"}, one
# JSON line each:
#   {"impl": "torch_sdpa_kvcache", "layers", "d", "heads", "batch", "tokens" (a sequence's),
#    "seconds", "tokens_per_s" (all sequences')}
# Run on a GPU machine with a recent PyTorch and Triton (written for 2.11 and 3.6; scripts/gpu-run.sh runs it):
#   python3 scripts/peer_sample.py
# Environment: LAYERS=12 DMODEL=512 HEADS=8 SEQ=65536 (the positions: T1 and T16 at most SEQ)
# T1=4096 T16=4096
import json
import os
import sys
import time
from functools import partial

import torch

if not torch.cuda.is_available():
    sys.exit("peer_sample.py: no CUDA GPU (torch.cuda.is_available() is false)")

import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_train_ddp import DM, NH, NL, V, Block  # noqa: E402

N, T1, T16 = (int(os.environ.get(k, d)) for k, d in (("SEQ", 65536), ("T1", 4096), ("T16", 4096)))
HD = DM // NH
DEV = "cuda"


class Sampler(nn.Module):
    def __init__(s):
        super().__init__()
        s.emb, s.pos = nn.Embedding(V, DM), nn.Parameter(torch.randn(N, DM) * 0.01)
        s.blocks = nn.ModuleList(Block() for _ in range(NL))
        s.lnf, s.head = nn.LayerNorm(DM), nn.Linear(DM, V)


def cached_attention(q, k, v, k_cache, v_cache, t):
    """Token t's new key and value into the caches (batch, NH, steps, HD), then q over keys 0..t."""
    k_cache[:, :, t:t + 1], v_cache[:, :, t:t + 1] = k, v
    # flash or memory-efficient: the cuDNN backend builds a new graph for every prefix length
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
        return F.scaled_dot_product_attention(q, k_cache[:, :, :t + 1], v_cache[:, :, :t + 1])


@torch.no_grad()
def sample(m, batch, steps):
    """Seconds to draw `steps` tokens for each of `batch` sequences."""
    caches = [[torch.empty(batch, NH, steps, HD, device=DEV, dtype=torch.bfloat16) for _ in range(2)] for _ in range(NL)]
    tok = torch.zeros(batch, 1, dtype=torch.long, device=DEV)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for t in range(steps):
        x = m.emb(tok) + m.pos[t]  # (batch, 1, DM)
        for blk, (k_cache, v_cache) in zip(m.blocks, caches):
            x = blk(x, partial(cached_attention, k_cache=k_cache, v_cache=v_cache, t=t))
        probs = torch.softmax(m.head(m.lnf(x))[:, -1].float(), -1)
        tok = torch.multinomial(probs, 1)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


if not (0 < T1 <= N and 0 < T16 <= N):
    sys.exit(f"peer_sample.py: T1 ({T1}) and T16 ({T16}) must lie between 1 and SEQ ({N})")
torch.manual_seed(0)
model = Sampler().to(DEV, torch.bfloat16).eval()
print(json.dumps(dict(torch=torch.__version__, device=torch.cuda.get_device_name())), flush=True)
for batch, steps in ((1, T1), (16, T16)):
    sample(model, batch, min(64, steps))  # warm-up: the kernels' first launches
    s = sample(model, batch, steps)
    print(json.dumps(dict(impl="torch_sdpa_kvcache", layers=NL, d=DM, heads=NH, batch=batch, tokens=steps,
                          seconds=round(s, 2), tokens_per_s=round(batch * steps / s))), flush=True)
