#!/usr/bin/python3
# Times PyTorch's CPU float32 GEMMs (OpenBLAS sgemm in Debian's python3-torch) on the same shapes, in the
# same order and with the same method as kernels/dev/bench_gemm_cpu.cpp (st-bench-gemm-cpu), so the two
# tables can be read side by side.
# Usage: kernels/dev/bench_gemm_cpu.py [--bt 4096] [--widths 128,256,512] [--threads 2] [--runs 21]
import argparse
import os
import statistics
import sys
import time


def layer_shapes(d):
    # (layer, out features N, in features K) of one transformer block plus the 256-way output head.
    return [("qkv", 3 * d, d), ("attn.proj", d, d), ("fc", 4 * d, d), ("fc.proj", d, 4 * d), ("head", 256, d)]


def median_seconds(fn, runs):
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bt", type=int, default=4096, help="tokens per batch (rows of x)")
    ap.add_argument("--widths", default="128,256,512", help="model widths d, comma separated")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=21, help="timed runs per shape (median reported)")
    args = ap.parse_args()

    # OpenBLAS-pthread keeps its own pool sized at load time; torch.set_num_threads sizes the OpenMP one.
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bt = args.bt
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, BT={bt}, median of {args.runs}")
    print(f"{'op':<5} {'layer':<10} {'M':>6} {'N':>6} {'K':>6}  {'ms':>9} {'GFLOP/s':>8}")
    total_flops = total_s = 0.0
    for d in (int(s) for s in args.widths.split(",")):
        for layer, n, k in layer_shapes(d):
            x = torch.randn(bt, k)
            w = torch.randn(n, k) * 0.05
            dy = torch.randn(bt, n)
            y = torch.empty(bt, n)
            dx = torch.empty(bt, k)
            dw = torch.zeros(n, k)
            cases = [
                ("fwd", (bt, n, k), lambda: torch.mm(x, w.t(), out=y)),
                ("dx", (bt, k, n), lambda: torch.mm(dy, w, out=dx)),
                ("dW", (n, k, bt), lambda: dw.addmm_(dy.t(), x)),
            ]
            for op, (m, nn, kk), fn in cases:
                s = median_seconds(fn, args.runs)
                flops = 2.0 * m * nn * kk
                total_flops += flops
                total_s += s
                print(f"{op:<5} {layer:<10} {m:>6} {nn:>6} {kk:>6}  {s * 1e3:>9.3f} {flops / s * 1e-9:>8.1f}")
    print(f"all shapes: {total_flops / total_s * 1e-9:.1f} GFLOP/s")


if __name__ == "__main__":
    sys.exit(main())
