#!/usr/bin/python3
"""usage: check_parity.py MODEL GRADS [LOSS_TOL GRAD_TOL]

Parity of st's loss and gradients with an independent float64 PyTorch model (scripts/torch_st.py).
  MODEL  an st model file
  GRADS  what st wrote for the same model: "batch" (U8, (B, T+1)), "grad.NAME" for every parameter,
         metadata "loss"
  LOSS_TOL, GRAD_TOL  the bars (default 1e-5 and 1e-4, for st's float32 CPU engine; its GPU engine
         computes with bf16 activations and is held to bf16's)
The reference runs on the GPU when PyTorch sees one, else on the CPU.
Exit status: 0 when every check passes, 1 when one fails or a file is bad, 2 on a usage error."""
import math
import os
import sys


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from torch_st import load_model, load_st  # noqa: E402

LOSS_TOL = 1e-5  # relative error of the loss
GRAD_TOL = 1e-4  # ||g_st - g_ref|| / ||g_ref|| per tensor


def main(argv):
    prog = "check_parity"
    if argv[1:] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if len(argv) not in (3, 5):
        print(f"usage: {prog} MODEL GRADS [LOSS_TOL GRAD_TOL]", file=sys.stderr)
        return 2
    model_path, grads_path = argv[1], argv[2]
    loss_tol, grad_tol = (float(argv[3]), float(argv[4])) if len(argv) == 5 else (LOSS_TOL, GRAD_TOL)
    try:
        model, config, _ = load_model(model_path)
        _, gmeta, grads = load_st(grads_path)
        if "batch" not in grads or grads["batch"].dim() != 2:
            raise ValueError(f"{grads_path}: no 2-D 'batch' tensor")
        if "loss" not in gmeta:
            raise ValueError(f"{grads_path}: no 'loss' in the metadata")
        st_loss = float(gmeta["loss"])
    except ValueError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1

    if config.get("dropout", 0.0):
        print(f"{prog}: note: config dropout {config['dropout']} is ignored; st must run the parity batch without dropout")
    import torch
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model.double().eval().to(dev)  # float64 reference; no dropout
    batch = grads["batch"].long().to(dev)
    x, y = batch[:, :-1], batch[:, 1:]
    loss = model(x, y)
    loss.backward()
    ref = {name: p.grad.cpu() for name, p in model.named_parameters()}

    failed = []
    loss_err = abs(st_loss - loss.item()) / abs(loss.item())
    print(f"loss  st {st_loss:.9g}  ref {loss.item():.9g}  rel {loss_err:.3e}")
    if not loss_err < loss_tol:
        failed.append("loss")
    extra = sorted(n[5:] for n in grads if n.startswith("grad.") and n[5:] not in ref)
    if extra:
        print(f"grads for unknown parameters: {', '.join(extra)}")
        failed += extra
    # A tensor whose reference gradient is exactly 0 (e.g. everything below a zero head) is measured
    # against the whole gradient's norm instead of its own.
    total = math.sqrt(sum(g.pow(2).sum().item() for g in ref.values()))
    print(f"{'tensor':<28} {'shape':<14} {'rel err':>10} {'max |diff|':>11} {'max |ref|':>11}")
    for name, g_ref in ref.items():
        g_st = grads.get("grad." + name)
        if g_st is None or tuple(g_st.shape) != tuple(g_ref.shape):
            got = "missing" if g_st is None else f"shape {list(g_st.shape)}"
            print(f"{name:<28} {str(list(g_ref.shape)):<14} {got}")
            failed.append(name)
            continue
        diff = g_st.double() - g_ref
        norm = g_ref.norm().item()
        err = diff.norm().item() / (norm if norm > 0 else total if total > 0 else 1.0)
        ok = err < grad_tol
        print(f"{name:<28} {str(list(g_ref.shape)):<14} {err:10.3e} {diff.abs().max().item():11.3e} "
              f"{g_ref.abs().max().item():11.3e}{'' if ok else '  FAIL'}")
        if not ok:
            failed.append(name)
    if failed:
        print(f"FAIL: {len(failed)} of {len(ref) + 1} checks: {', '.join(failed)}")
        return 1
    print(f"PASS: loss and {len(ref)} gradients (loss rel < {loss_tol:g}, grad rel < {grad_tol:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
