#!/usr/bin/python3
"""Trains st's model with st-train's recipe in PyTorch, on the CPU (float32) or with --device cuda on
the GPU (bf16 autocast): the peer for the demo's and the GPU run's loss curves and for the CPU tokens/s
comparison. Prints {"val_bits", "steps", "tokens_per_s"} at the end,
or with --bench K the timing of K steps after 3 warm-up steps."""
import argparse
import contextlib
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_st import StModel, load_model, lr_at, make_optimizer, read_bytes  # noqa: E402

PROG = "train_torch"
WARMUP_STEPS = 3  # untimed steps before --bench measures


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("--init", metavar="MODEL.st", help="start from this st model's weights and config")
    p.add_argument("--config", metavar="JSON", help="model config when there is no --init (the paper's init)")
    p.add_argument("--data", required=True, metavar="FILE", help="training bytes (.zst read through zstd)")
    p.add_argument("--val-frac", type=float, default=0.05, help="held-out tail of the data (default 0.05)")
    p.add_argument("--val", metavar="FILE", help="held-out data (default: the last --val-frac of --data)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--lr-min", type=float, help="end of the cosine (default lr/10)")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--wd", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--eval-windows", type=int, default=64)
    p.add_argument("--eval-every", type=int, default=0, help="held-out bits every N steps (default: at the end only)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu (float32) or cuda (bf16 autocast, as a GPU user trains)")
    p.add_argument("--flex", action="store_true", help="FlexAttention over block masks (cuda, torch 2.5 or later): "
                   "long contexts, where dense (T, T) masks do not fit")
    p.add_argument("--seed", type=int, default=1, help="as st-train's --seed: the same seed draws the same batches")
    p.add_argument("--log", metavar="FILE", help="JSON lines: step, loss, bits, lr, tokens_per_s, ms")
    p.add_argument("--bench", type=int, metavar="K", help="time K steps after 3 warm-up steps, print JSON, exit")
    a = p.parse_args(argv)
    if (a.init is None) == (a.config is None):
        p.error("give exactly one of --init and --config")
    if not 0 < a.val_frac < 1:
        p.error("--val-frac must lie between 0 and 1")
    for name in ("steps", "batch", "eval_windows", "threads"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.bench is not None and a.bench < 1:
        p.error("--bench must be at least 1")
    if a.lr_min is None:
        a.lr_min = a.lr / 10
    return a


M64 = (1 << 64) - 1


def mix64(z):
    """splitmix64's finaliser, as libst/rng.h."""
    z = (z + 0x9e3779b97f4a7c15) & M64
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)


def st_window(seed, step, b, span):
    """st-train's window start for example b of a step: hash64(hash64(seed, step), b) mod span, so that
    both programs train on the same batches and differ only in their arithmetic."""
    h = mix64(seed ^ mix64(step))
    return mix64(h ^ mix64(b)) % span


def build_model(a):
    if a.init:
        return load_model(a.init)[0]
    model = StModel(json.loads(a.config))
    model.init_weights(torch.Generator().manual_seed(a.seed))
    return model


DEVICE = "cpu"


def autocast():
    """bf16 autocast on the GPU (what a PyTorch user trains with), nothing on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if DEVICE.startswith("cuda") else contextlib.nullcontext()


def frame_records(data, n_ctx, name):
    """st's libst/records.h: each picture of n_ctx bytes preceded by a start byte 0, so that the window at
    k * (n_ctx + 1) is picture k, its first byte predicted from the start byte."""
    if len(data) == 0 or len(data) % n_ctx:
        raise ValueError(f"{name}: {len(data)} bytes is not a whole number of pictures of {n_ctx} bytes")
    pics = data.reshape(-1, n_ctx)
    return np.concatenate([np.zeros((len(pics), 1), np.uint8), pics], axis=1).reshape(-1)


def eval_offsets(n, n_ctx, windows, records):
    """st's evaluation windows: spread evenly over the bytes, or whole pictures (all of them when
    `windows` is at least their number)."""
    if records:
        count = n // (n_ctx + 1)
        if windows >= count:
            return [k * (n_ctx + 1) for k in range(count)]
        return [0] if windows == 1 else [k * (count - 1) // (windows - 1) * (n_ctx + 1) for k in range(windows)]
    last = n - n_ctx - 1
    return [0] if windows == 1 else [k * last // (windows - 1) for k in range(windows)]


def eval_bits(model, val, n_ctx, windows, batch, records=False):
    """Mean cross-entropy in bits over the held-out windows (eval_offsets)."""
    offsets = eval_offsets(len(val), n_ctx, windows, records)
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(offsets), batch):
            w = torch.from_numpy(np.stack([val[o:o + n_ctx + 1] for o in offsets[i:i + batch]])).to(DEVICE)
            with autocast():
                total += model(w[:, :-1], w[:, 1:]).item() * len(w)
    model.train()
    return total / len(offsets) / math.log(2)


def gemm_gflops(n=512, reps=20):
    """float32 GEMM rate at the set thread count: tells OpenBLAS (tens of GFLOP/s a core) from the
    reference BLAS (a few), without which the comparison would mean nothing."""
    x, y = torch.randn(n, n), torch.randn(n, n)
    x @ y
    t0 = time.perf_counter()
    for _ in range(reps):
        x @ y
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def main(argv):
    global DEVICE
    a = parse_args(argv)
    DEVICE = a.device
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    try:
        model = build_model(a)
        data = np.frombuffer(read_bytes(a.data), dtype=np.uint8)
    except ValueError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    n_ctx = model.config["n_ctx"]
    records = model.config["pos"] == "image"   # pictures: whole records, as st-train reads them
    try:
        if records:
            if a.val:
                train, val = data, np.frombuffer(read_bytes(a.val), dtype=np.uint8)
            else:
                count = len(data) // n_ctx
                nval = min(max(int(count * a.val_frac), 1), count - 1)
                cut = len(data) - nval * n_ctx - len(data) % n_ctx
                train, val = data[:cut], data[cut:]
            train, val = frame_records(train, n_ctx, a.data), frame_records(val, n_ctx, a.val or a.data)
        elif a.val:
            train, val = data, np.frombuffer(read_bytes(a.val), dtype=np.uint8)
        else:
            nval = int(len(data) * a.val_frac)
            train, val = data[:len(data) - nval], data[len(data) - nval:]
    except ValueError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    if len(train) < n_ctx + 1 or len(val) < n_ctx + 1:
        print(f"{PROG}: {a.data}: {len(data)} bytes leave {len(train)} to train and {len(val)} held out; "
              f"each needs at least n_ctx + 1 = {n_ctx + 1}", file=sys.stderr)
        return 1

    model.to(DEVICE)
    model.flex = a.flex
    steps = WARMUP_STEPS + a.bench if a.bench else a.steps
    opt = make_optimizer(model, a.lr, a.wd)
    log = open(a.log, "w") if a.log else None
    model.train()
    tokens = a.batch * n_ctx
    train_s = 0.0
    for step in range(steps):
        t0 = time.perf_counter()
        if records:
            offsets = [st_window(a.seed, step, b, len(train) // (n_ctx + 1)) * (n_ctx + 1) for b in range(a.batch)]
        else:
            offsets = [st_window(a.seed, step, b, len(train) - n_ctx) for b in range(a.batch)]
        w = torch.from_numpy(np.stack([train[o:o + n_ctx + 1] for o in offsets])).to(DEVICE)
        lr = lr_at(step, a.lr, a.lr_min, a.warmup, steps)
        for g in opt.param_groups:
            g["lr"] = lr
        with autocast():
            loss = model(w[:, :-1], w[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        loss = loss.item()   # waits for the GPU
        dt = time.perf_counter() - t0
        if not a.bench or step >= WARMUP_STEPS:
            train_s += dt
        rec = {"step": step, "loss": round(loss, 6), "bits": round(loss / math.log(2), 6), "lr": lr,
               "tokens_per_s": round(tokens / dt, 1), "ms": round(dt * 1e3, 3)}
        if not a.bench and (step + 1 == steps or a.eval_every and (step + 1) % a.eval_every == 0):
            val_bits = eval_bits(model, val, n_ctx, a.eval_windows, a.batch, records)
            rec["val_bits"] = round(val_bits, 6)
            print(json.dumps(rec), file=sys.stderr, flush=True)
        if log:
            log.write(json.dumps(rec) + "\n")
            log.flush()
    if log:
        log.close()

    if a.bench:
        params = sum(p.numel() for p in model.parameters())
        print(json.dumps({"impl": "torch_cpu", "torch": torch.__version__, "threads": a.threads, "batch": a.batch,
                          "n_ctx": n_ctx, "params": params, "steps": a.bench,
                          "ms_per_step": round(train_s / a.bench * 1e3, 2),
                          "tokens_per_s": round(tokens * a.bench / train_s, 1),
                          "gemm_gflops": round(gemm_gflops(), 1)}))
        return 0
    print(json.dumps({"val_bits": round(val_bits, 6), "steps": steps, "train_s": round(train_s, 2),
                      "tokens_per_s": round(tokens * steps / train_s, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
