# The PyTorch peer for multi-GPU training throughput: the same pre-norm Sparse Transformer and training
# step as the single-GPU PyTorch reference (byte vocab 256, GELU MLP 4d, learned positions, bf16 autocast,
# torch.compile, fused AdamW lr 3e-4, FlexAttention "fixed" block mask with BLOCK 128), data-parallel with
# DistributedDataParallel over NCCL. Each rank trains on its own random bytes; BATCH is per GPU, so the
# global batch is BATCH * world. After 3 warm-up steps, ITERS steps are timed with CUDA events; rank 0
# prints one JSON line (step_ms, global tokens_per_s, its peak memory, warm-up seconds, last loss).
# Run (1 GPU gives the baseline with the same program):
#   torchrun --standalone --nproc_per_node 1 scripts/peer_train_ddp.py
#   torchrun --standalone --nproc_per_node 2 scripts/peer_train_ddp.py
# Knobs (env): LAYERS=12 DMODEL=512 HEADS=8 SEQ=16384 BATCH=4 STRIDE_BLOCKS=8 POS=1d|2d CKPT=0|1 ITERS=10
import json, os, time, torch, torch.nn as nn, torch.nn.functional as F, torch.utils.checkpoint
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.nn.attention.flex_attention import flex_attention, create_block_mask
torch.backends.cuda.matmul.allow_tf32 = True
NL, DM, NH, N, B, V = [int(os.environ.get(k, d)) for k, d in
                       [("LAYERS", 12), ("DMODEL", 512), ("HEADS", 8), ("SEQ", 16384), ("BATCH", 4), ("VOCAB", 256)]]
BS, L = 128, int(os.environ.get("STRIDE_BLOCKS", 8))
CKPT = os.environ.get("CKPT", "0") == "1"
POS = os.environ.get("POS", "1d")
ITERS, WARMUP, IMPL = int(os.environ.get("ITERS", 10)), 3, "torch_ddp_fixed"
class Block(nn.Module):
    def __init__(s):
        super().__init__()
        s.ln1, s.ln2 = nn.LayerNorm(DM), nn.LayerNorm(DM)
        s.qkv, s.proj = nn.Linear(DM, 3 * DM), nn.Linear(DM, DM)
        s.fc, s.out = nn.Linear(DM, 4 * DM), nn.Linear(4 * DM, DM)
    def forward(s, x, attn):
        b, n, _ = x.shape
        q, k, v = s.qkv(s.ln1(x)).view(b, n, 3, NH, DM // NH).permute(2, 0, 3, 1, 4)
        x = x + s.proj(attn(q, k, v).transpose(1, 2).reshape(b, n, DM))
        return x + s.out(F.gelu(s.fc(s.ln2(x))))
class Model(nn.Module):
    def __init__(s):
        super().__init__()
        s.emb = nn.Embedding(V, DM)
        if POS == "2d":
            W = L * BS
            s.row, s.col = nn.Parameter(torch.zeros(N // W, 1, DM)), nn.Parameter(torch.zeros(1, W, DM))
        else:
            s.pos = nn.Parameter(torch.zeros(N, DM))
        s.blocks = nn.ModuleList(Block() for _ in range(NL))
        s.lnf, s.head = nn.LayerNorm(DM), nn.Linear(DM, V)
        s.attn = None  # the attention function, set before wrapping, so forward takes tensors only
    def forward(s, idx, tgt):
        x = s.emb(idx) + ((s.row + s.col).reshape(N, DM) if POS == "2d" else s.pos)
        for blk in s.blocks:
            x = torch.utils.checkpoint.checkpoint(blk, x, s.attn, use_reentrant=False) if CKPT else blk(x, s.attn)
        return F.cross_entropy(s.head(s.lnf(x)).float().view(-1, V), tgt.reshape(-1))
def train_step(fn, opt, idx, tgt):
    """One step: the loss under bf16 autocast, its backward and an AdamW update; returns the loss."""
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = fn(idx, tgt)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss
def warm_up(step):
    """WARMUP steps (compilation included) and the seconds they took."""
    t0 = time.perf_counter()
    for _ in range(WARMUP):
        step()
    torch.cuda.synchronize()
    return time.perf_counter() - t0
def main():
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # NVLink multicast stays off
    dist.init_process_group("nccl")
    rank, world, local = dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    torch.cuda.set_device(local)
    dev = torch.device("cuda", local)
    try:
        def mm(b, h, q, kv):
            qb, kb = q // BS, kv // BS
            return (q >= kv) & ((kb // L == qb // L) | (kb % L == L - 1))
        bm = create_block_mask(mm, None, None, N, N, device=dev, BLOCK_SIZE=BS, _compile=True)
        torch.manual_seed(0)  # every rank builds the same weights (DDP broadcasts rank 0's anyway)
        m = Model().to(dev)
        m.attn = lambda q, k, v: flex_attention(q, k, v, block_mask=bm)
        params = sum(p.numel() for p in m.parameters())
        ddp = DDP(m, device_ids=[local])
        compiled = torch.compile(ddp)
        opt = torch.optim.AdamW(ddp.parameters(), lr=3e-4, fused=True)
        g = torch.Generator(device=dev)
        g.manual_seed(1000 + rank)  # each rank its own data
        i = torch.randint(0, V, (B, N), device=dev, generator=g)
        t = torch.randint(0, V, (B, N), device=dev, generator=g)
        step = lambda: train_step(compiled, opt, i, t)
        warmup_s = warm_up(step)
        torch.cuda.reset_peak_memory_stats()
        dist.barrier()
        torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(ITERS):
            loss = step()
        e1.record()
        torch.cuda.synchronize()
        dist.barrier()
        torch.cuda.synchronize()
        step_ms = e0.elapsed_time(e1) / ITERS
        if rank == 0:
            print(json.dumps({"impl": IMPL, "world": world, "layers": NL, "d": DM, "heads": NH, "seq": N,
                              "batch_per_gpu": B, "params": params, "step_ms": round(step_ms, 3),
                              "tokens_per_s": round(B * N * world / (step_ms / 1e3), 1),
                              "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
                              "warmup_s": round(warmup_s, 2), "loss": round(loss.item(), 4)}), flush=True)
    except torch.OutOfMemoryError:
        if rank == 0:
            print(json.dumps({"impl": IMPL, "error": "out of memory"}), flush=True)
        if world > 1:
            os._exit(1)  # a peer may be waiting in a collective: exiting lets torchrun end them all
    dist.destroy_process_group()
if __name__ == "__main__":
    main()
