#!/usr/bin/python3
"""usage: selftest.py

Checks the PyTorch side of the parity test on files it makes itself, no st needed: the masks against
the paper's sets (Child et al. 2019, section 4) enumerated one pair at a time, attention against a per-query loop, the safetensors
round trip (.zst too), and check_parity.py passing on its own float32 gradients and failing on
perturbed ones. Exit 0 when all pass."""
import contextlib
import importlib.util
import io
import itertools
import math
import os
import subprocess
import sys
import tempfile

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "scripts"))
import torch_st  # noqa: E402
from torch_st import StModel, allowed_mask, load_st, lr_at, save_st  # noqa: E402

_spec = importlib.util.spec_from_file_location("check_parity", os.path.join(here, "check_parity.py"))
check_parity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_parity)
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def paper_set(cfg, layer, head, i):
    """A_i as the paper writes it, one j at a time."""
    l, c = cfg["stride"], cfg.get("summary", 32)
    S = [j for j in range(i + 1)]
    if cfg["pattern"] == "dense":
        return set(S)
    a1 = {j for j in S if max(0, i - l) <= j}
    if cfg["pattern"] == "local":
        return a1
    if cfg["pattern"] == "strided":
        a2 = {j for j in S if (i - j) % l == 0}
    else:
        a1 = {j for j in S if j // l == i // l}
        sub = (head // 2 if cfg["mode"] == "multihead" else head) % (l // c)
        a2 = {j for j in S if l - (sub + 1) * c <= j % l < l - sub * c}
    if cfg["mode"] == "merged":
        return a1 | a2
    pick = layer if cfg["mode"] == "interleaved" else head
    return a1 if pick % 2 == 0 else a2


def base(**kw):
    return {"n_layer": 2, "d_model": 16, "n_head": 4, "n_ctx": 40, "stride": 8, "summary": 2, **kw}


def test_masks():
    T = 37
    for pattern, mode in itertools.product(("dense", "local", "strided", "fixed"),
                                           ("interleaved", "merged", "multihead")):
        cfg = base(pattern=pattern, mode=mode)
        ok = all(set(allowed_mask(cfg, r, hd, T)[i].nonzero().flatten().tolist()) == paper_set(cfg, r, hd, i)
                 for r in range(2) for hd in range(4) for i in range(T))
        check(ok, f"mask {pattern}/{mode} = the paper's sets (T {T}, l 8, c 2)")


def test_attention():
    torch.manual_seed(1)
    for pattern, mode in (("fixed", "multihead"), ("strided", "interleaved"), ("fixed", "merged")):
        cfg = base(pattern=pattern, mode=mode)
        m = StModel(cfg).double()
        m.init_weights()
        T, H, Dh = 29, 4, 4
        x = torch.randn(2, T, 16, dtype=torch.float64)
        for r in range(2):
            got = m.attend(m.h[r].attn, x, m.layer_masks(T)[r])
            q, k, v = m.h[r].attn.qkv(x).split(16, dim=-1)
            out = torch.zeros(2, T, 16, dtype=torch.float64)
            for b, hd, i in itertools.product(range(2), range(H), range(T)):
                js = sorted(paper_set(cfg, r, hd, i))
                if not js:
                    continue
                cols = slice(hd * Dh, (hd + 1) * Dh)
                s = torch.stack([q[b, i, cols] @ k[b, j, cols] for j in js]) / math.sqrt(Dh)
                out[b, i, cols] = torch.softmax(s, 0) @ v[b, js, cols]
            want = m.h[r].attn.proj(out)
            check(torch.allclose(got, want, atol=1e-12), f"attention {pattern}/{mode} layer {r} = per-query loop")


def test_positions():
    for pos, extra, want in (("1d", {}, lambda i: {"wpe": i}),
                             ("2d", {}, lambda i: {"row": i // 8, "col": i % 8}),
                             ("image", {"image": [2, 4, 5]},
                              lambda i: {"row": (i // 5) // 4, "col": (i // 5) % 4, "chan": i % 5})):
        cfg = base(pos=pos, **extra)
        rows = torch_st.position_rows(cfg, 40)
        ok = all({k: int(v[i]) for k, v in rows.items()} == want(i) for i in range(40))
        check(ok, f"position rows for pos {pos}")


def test_roundtrip(tmp):
    t = {"a": torch.randn(3, 5), "b": torch.randn(7, dtype=torch.float64), "c": torch.randn(2, 3).bfloat16(),
         "d": torch.arange(-4, 5, dtype=torch.int32).view(3, 3), "e": torch.arange(10, dtype=torch.uint8)}
    path = os.path.join(tmp, "rt.st")
    save_st(path, t, {"config": '{"n_layer": 1}', "step": "12"})
    subprocess.run(["zstd", "-qf", path, "-o", path + ".zst"], check=True)
    for p in (path, path + ".zst"):
        cfg, meta, back = load_st(p)
        ok = cfg == {"n_layer": 1} and meta["step"] == "12" and set(back) == set(t) and all(
            back[k].dtype == v.dtype and torch.equal(back[k], v)
            for k, v in t.items())
        check(ok, f"safetensors round trip {os.path.basename(p)}")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    check(n % 8 == 0, "header padded to 8 bytes")


def test_schedule():
    check(lr_at(0, 1.0, 0.1, 10, 110) == 0.1 and lr_at(9, 1.0, 0.1, 10, 110) == 1.0, "warm-up is linear to lr")
    check(lr_at(10, 1.0, 0.1, 10, 110) == 1.0 and abs(lr_at(60, 1.0, 0.1, 10, 110) - 0.55) < 1e-12
          and abs(lr_at(110, 1.0, 0.1, 10, 110) - 0.1) < 1e-12, "cosine from lr to lr_min")
    m = StModel(base())
    opt = torch_st.make_optimizer(m, 1e-3, 0.01)
    decayed = {n for n, p in m.named_parameters() if any(p is q for q in opt.param_groups[0]["params"])}
    want = {n for n in m.state_dict() if n.endswith(("qkv.weight", "attn.proj.weight", "fc.weight",
                                                     "mlp.proj.weight")) or n == "head.weight"}
    check(decayed == want and opt.param_groups[1]["weight_decay"] == 0.0, "weight decay on the 2-D linear weights only")


def write_st_grads(tmp, cfg, seed, perturb=True):
    """Plays st: a model file and a float32 gradients file for one batch."""
    torch.manual_seed(seed)
    m = StModel(cfg)
    m.init_weights()
    if perturb:  # off the init point (head 0), so that every gradient is nonzero
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn_like(p))
    model_path = os.path.join(tmp, "model.st")
    save_st(model_path, m.state_dict(), {"format": "st-model", "config": cfg, "step": "0"})
    batch = torch.randint(0, 256, (3, cfg["n_ctx"] + 1), dtype=torch.uint8)
    loss = m(batch[:, :-1], batch[:, 1:])
    loss.backward()
    grads = {"batch": batch, **{"grad." + n: p.grad for n, p in m.named_parameters()}}
    return model_path, grads, {"loss": repr(loss.item()), "config": cfg}


def run_check(model_path, grads_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = check_parity.main(["check_parity", model_path, grads_path])
    return rc, out.getvalue()


def test_parity(tmp):
    for cfg in (base(pattern="fixed", mode="multihead", pos="2d", n_ctx=48),
                base(pattern="strided", mode="interleaved", pos="image", image=[3, 4, 4], n_ctx=48, n_layer=3),
                base(pattern="dense", n_ctx=33)):
        model_path, grads, meta = write_st_grads(tmp, cfg, 7)
        grads_path = os.path.join(tmp, "grads.st")
        save_st(grads_path, grads, meta)
        rc, out = run_check(model_path, grads_path)
        c = torch_st.full_config(cfg)
        check(rc == 0, f"check_parity passes on float32 grads ({c['pattern']}/{c['mode']}/{c['pos']}): "
              + out.strip().splitlines()[-1])

        name = "grad.h.1.attn.qkv.weight"
        bad = dict(grads)
        bad[name] = grads[name] * (1 + 1e-3)
        save_st(grads_path, bad, meta)
        rc, out = run_check(model_path, grads_path)
        check(rc == 1 and "qkv.weight" in out.strip().splitlines()[-1], "fails on one gradient off by 1e-3")

        save_st(grads_path, grads, {**meta, "loss": repr(float(meta["loss"]) * (1 + 1e-4))})
        rc, out = run_check(model_path, grads_path)
        check(rc == 1 and "loss" in out.strip().splitlines()[-1], "fails on a loss off by 1e-4")

        bad = {k: v for k, v in grads.items() if k != "grad.wte"}
        save_st(grads_path, bad, meta)
        rc, out = run_check(model_path, grads_path)
        check(rc == 1 and "wte" in out.strip().splitlines()[-1], "fails on a missing gradient")

    # At init the head is 0, so every gradient below it is exactly 0 in both implementations.
    model_path, grads, meta = write_st_grads(tmp, base(pattern="fixed", mode="merged"), 3, perturb=False)
    save_st(grads_path, grads, meta)
    rc, out = run_check(model_path, grads_path)
    check(rc == 0, "check_parity passes at init, where all but the head's gradients are 0")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        test_masks()
        test_attention()
        test_positions()
        test_roundtrip(tmp)
        test_schedule()
        test_parity(tmp)
    print(f"{'FAIL' if failures else 'PASS'}: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
