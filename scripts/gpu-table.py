#!/usr/bin/env python3
"""The table of a scripts/gpu-run.sh run: st, the PyTorch peer, and the ratio (peer time / st time,
or st tokens/s / peer tokens/s: above 1 means st is faster), from the JSON lines in the run folder."""
import json, os, sys

out = sys.argv[1] if len(sys.argv) > 1 else "runs/gpu"

def rows(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return []
    res = []
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            try:
                res.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return res

lines = []
st_att = {(r["impl"], r["kind"], r["n"]): r for r in rows("st_attention.jsonl") if r.get("impl") in ("st", "st-mma")}
peer_att = {}
for r in rows("flex.jsonl"):
    if r.get("impl") == "flex" and r.get("bs") == 128:
        peer_att[(r["kind"], r["n"])] = r
    if r.get("impl") == "sdpa_causal":
        peer_att[("causal-sdpa", r["n"])] = r
if st_att:
    lines.append("| attention | n x batch | st fwd ms | peer fwd ms | ratio | st fwd+bwd ms | peer fwd+bwd ms | ratio |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for (impl, kind, n), s in sorted(st_att.items(), key=lambda x: (x[0][2], x[0][1], x[0][0])):
        for peer_kind, label in ((kind, "flex " + kind), ("causal-sdpa", "sdpa") if kind == "causal" else (None, None)):
            p = peer_att.get((peer_kind, n))
            if not p:
                continue
            lines.append(f"| {impl} {kind} vs {label} | {n} x {s['B']} | {s['fwd_ms']:.3f} | {p['fwd_ms']:.3f} | {p['fwd_ms'] / s['fwd_ms']:.2f} "
                         f"| {s['fwdbwd_ms']:.3f} | {p['fwdbwd_ms']:.3f} | {p['fwdbwd_ms'] / s['fwdbwd_ms']:.2f} |")

def train_table(st_file, peer_file, title):
    st, peer = rows(st_file), [r for r in rows(peer_file) if "impl" in r]
    if not st:
        return
    lines.append("")
    lines.append(f"| {title} | st ms/step | st tokens/s | st peak GiB | peer ms/step | peer tokens/s | peer peak GiB | tokens/s ratio |")
    lines.append("|---|---|---|---|---|---|---|---|")
    bases = []   # a variant of a run ("step12-mma", "long1m-rec") is set against its base run's peer
    for s in st:
        base = str(s.get("name", "")).split("-")[0]
        if base not in bases:
            bases.append(base)
        i = bases.index(base)
        p = peer[i] if i < len(peer) else {}
        if "error" in s or "error" in p:
            lines.append(f"| {s.get('name')} | {s.get('step_ms', s.get('error'))} | {s.get('tokens_per_s', '')} | {s.get('peak_gib', '')} "
                         f"| {p.get('step_ms', p.get('error', ''))} | {p.get('tokens_per_s', '')} | {p.get('peak_gib', '')} | |")
            continue
        ratio = f"{s['tokens_per_s'] / p['tokens_per_s']:.2f}" if p else ""   # no peer run (LONG_PEERS=0)
        lines.append(f"| {s['name']} | {s['step_ms']} | {s['tokens_per_s']} | {s['peak_gib']} | {p.get('step_ms', '')} "
                     f"| {p.get('tokens_per_s', '')} | {p.get('peak_gib', '')} | {ratio} |")

train_table("st_train.jsonl", "torch_train.jsonl", "training step")
train_table("st_long.jsonl", "torch_long.jsonl", "long sequence")
st_s = rows("st_sample.jsonl")
peer_s = [r for r in rows("torch_sample.jsonl") if "tokens_per_s" in r]
if st_s:
    lines.append("")
    lines.append("| sampling | st seconds | st tokens/s | peer tokens/s | ratio |")
    lines.append("|---|---|---|---|---|")
    for s in st_s:
        p = next((r for r in peer_s if r["batch"] == s["batch"]), {})
        tps = s["batch"] * s["tokens"] / s["seconds"]
        ratio = f"{tps / p['tokens_per_s']:.1f}" if p else ""
        lines.append(f"| batch {s['batch']}, {s['tokens']} tokens | {s['seconds']:.1f} | {tps:.0f} | {p.get('tokens_per_s', '')} | {ratio} |")

dev = open(os.path.join(out, "device.txt")).read().strip() if os.path.exists(os.path.join(out, "device.txt")) else "?"
print(f"device: {dev}")
print("\n".join(lines))
