#!/usr/bin/python3
"""usage: check_parity.py MODEL GRADS

Parity of st's loss and gradients with an independent float64 PyTorch model (scripts/torch_st.py).
  MODEL  an st model file
  GRADS  what st wrote for the same model: "batch" (U8, (B, T+1)), "grad.NAME" for every parameter,
         metadata "loss"
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
    if len(argv) != 3:
        print(f"usage: {prog} MODEL GRADS", file=sys.stderr)
        return 2
    model_path, grads_path = argv[1], argv[2]
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
    model.double().eval()  # float64 reference; no dropout
    batch = grads["batch"].long()
    x, y = batch[:, :-1], batch[:, 1:]
    loss = model(x, y)
    loss.backward()
    ref = {name: p.grad for name, p in model.named_parameters()}

    failed = []
    loss_err = abs(st_loss - loss.item()) / abs(loss.item())
    print(f"loss  st {st_loss:.9g}  ref {loss.item():.9g}  rel {loss_err:.3e}")
    if not loss_err < LOSS_TOL:
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
        ok = err < GRAD_TOL
        print(f"{name:<28} {str(list(g_ref.shape)):<14} {err:10.3e} {diff.abs().max().item():11.3e} "
              f"{g_ref.abs().max().item():11.3e}{'' if ok else '  FAIL'}")
        if not ok:
            failed.append(name)
    if failed:
        print(f"FAIL: {len(failed)} of {len(ref) + 1} checks: {', '.join(failed)}")
        return 1
    print(f"PASS: loss and {len(ref)} gradients (loss rel < {LOSS_TOL:g}, grad rel < {GRAD_TOL:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
