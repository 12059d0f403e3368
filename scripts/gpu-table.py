#!/usr/bin/env python3
"""The tables of a scripts/gpu-run.sh run, from the JSON lines in its folder: st beside the PyTorch
peer of the same run, and the ratio (peer time / st time, or st tokens/s / peer tokens/s: above 1,
st is faster). One table a benchmark: attention, train, long, sample.
  scripts/gpu-table.py OUTDIR                       print the tables
  scripts/gpu-table.py OUTDIR --perf docs/PERF.md   put each table in place of the text between
      <!-- gpu-table:NAME --> and <!-- /gpu-table:NAME --> in that file; a benchmark the run did
      not measure keeps the table it had.
Each table's first row names the date (OUTDIR/date.txt, else today), the card (OUTDIR/device.txt),
the commit (--commit, else OUTDIR/commit.txt, else unknown) and the command."""
import argparse
import datetime
import json
import os
import sys

PROG = "gpu-table.py"
NAMES = ("attention", "train", "long", "sample")
HEADER = "| date | card | commit | command | case | st | peer | ratio |\n|---|---|---|---|---|---|---|---|"
# gpu-run.sh's st-train runs: what each is, and the peer run set beside it (length, checkpointing)
RUNS = {
    "step12": ("12 layers, d 512, 8 heads, n 16,384 x 4, fixed, 1-d positions", (16384, False)),
    "step12-mma": ("the same, st on its mma.sync attention (`ST_ATTENTION=mma`)", (16384, False)),
    "long262k": ("8 layers, d 512, 8 heads, n 262,144 x 1, fixed, 2-d positions", (262144, False)),
    "long262k-rec": ("the same, st with `--recompute`, the peer with activation checkpointing", (262144, True)),
    "long1m": ("4 layers, d 256, 4 heads, n 1,048,576 x 1, fixed, 2-d positions", (1048576, True)),
    "long1m-rec": ("the same, st with `--recompute`", (1048576, True)),
    "long16m-rec": ("4 layers, d 256, 4 heads, n 16,777,216 x 1, strided (stride 4096), 2-d positions, "
                    "`--recompute`, on text", None),
    "long16m-off": ("the same with `--offload`", None),
}


def run_label(name):
    """RUNS' entry for a gpu-run.sh run; longest-off-N: the longest length st-train --plan fits with --offload."""
    if name.startswith("longest-off-"):
        n = int(name.rsplit("-", 1)[1])
        return (f"the same at n {n:,}, the longest `st-train --plan` fits with `--offload`", None)
    return RUNS.get(name, (name or "?", None))


def rows(out, name):
    """The JSON objects of OUTDIR/NAME, one a line; other lines (logs, progress) are skipped."""
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return []
    res = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    res.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return res


def first_line(out, name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        return f.readline().strip()


def peer_failure(out, name):
    """What gpu-run.sh wrote where a peer program failed or ran out of time, for the empty cells."""
    return next((r["error"] for r in rows(out, name) if r.get("impl") == "peer" and "error" in r), "")


def attention(out):
    st = {(r["impl"], r["kind"], r["n"], r["D"]): r for r in rows(out, "st_attention.jsonl")
          if r.get("impl") in ("st", "st-mma")}
    peer = {}
    for r in rows(out, "peer_attention.jsonl"):
        if r.get("impl") == "flex" and r.get("bs") == 128:
            peer[(r["kind"], r["n"], r["D"])] = r
        elif r.get("impl") == "sdpa_causal":
            peer[("sdpa", r["n"], r["D"])] = r
    failure = peer_failure(out, "peer_attention.jsonl")

    def ms(r):
        return f"{r['fwd_ms']:.3f} / {r['fwdbwd_ms']:.3f}"
    cases = []
    for D in sorted({d for impl, k, n, d in st}):
        for kind, peer_kind, label in (("fixed", "fixed", "FlexAttention"), ("strided", "strided", "FlexAttention"),
                                       ("causal", "causal", "FlexAttention"), ("causal", "sdpa", "SDPA")):
            for n in sorted(n for impl, k, n, d in st if impl == "st" and k == kind and d == D):
                s, mma, p = st[("st", kind, n, D)], st.get(("st-mma", kind, n, D)), peer.get((peer_kind, n, D))
                cases.append((f"{kind}, {n} x {s['B']}, D {D}", ms(s) + (f" (mma.sync {ms(mma)})" if mma else ""),
                              f"{label} {ms(p)}" if p else failure,
                              f"{p['fwd_ms'] / s['fwd_ms']:.2f} / {p['fwdbwd_ms'] / s['fwdbwd_ms']:.2f}" if p else ""))
    return cases


def step(r):
    if "error" in r:
        return r["error"]
    return (f"{r['step_ms']:.2f} ms, {r['tokens_per_s']:,.0f} tokens/s, {r['peak_gib']:.2f} GiB"
            + (", activation checkpointing" if r.get("ckpt") else ""))


def training(out, st_file, peer_file):
    peer = {(r["seq"], bool(r.get("ckpt"))): r for r in rows(out, peer_file) if r.get("impl") == "torch_fixed"}
    failure = peer_failure(out, peer_file)
    st = rows(out, st_file)
    cases = []
    for s in st:
        if s.get("name", "").startswith("learn"):
            continue
        label, key = run_label(s.get("name", ""))
        p = peer.get(key) if key else None
        ratio = f"{s['tokens_per_s'] / p['tokens_per_s']:.2f}" if p and "error" not in s and "error" not in p else ""
        cell = step(s)
        if key is None and "losses" in s:  # no peer: the losses say it learns
            cell += ", losses " + " ".join(f"{x:.3f}" for x in s["losses"])
        cases.append((label, cell, step(p) if p else (failure if key else "not run"), ratio))
    # The same learning with and without --recompute (gpu-run.sh's learn64k runs).
    runs = {s.get("name"): s for s in st if "losses" in s}
    a, b = runs.get("learn64k"), runs.get("learn64k-rec")
    if a and b and len(a["losses"]) == len(b["losses"]):
        worst = max(abs(x - y) / y for x, y in zip(b["losses"], a["losses"]))
        cases.append((f"the same learning: {len(a['losses'])} steps, 4 layers, d 256, n 65,536 x 2, fixed l 128 c 32, on text, "
                      "`--recompute` against not",
                      f"every step's loss within {100 * worst:.2f}%; last {b['losses'][-1]:.3f} against "
                      f"{a['losses'][-1]:.3f}", "", ""))
    return cases


def sampling(out):
    peer = {r["batch"]: r for r in rows(out, "peer_sample.jsonl") if "tokens_per_s" in r}
    failure = peer_failure(out, "peer_sample.jsonl")
    cases = []
    for s in rows(out, "st_sample.jsonl"):
        tps = s["batch"] * s["tokens"] / s["seconds"]
        p = peer.get(s["batch"])
        peer_cell = f"{p['seconds']:.2f} s for {p['tokens']:,} tokens a sequence, {p['tokens_per_s']:,.0f} tokens/s" if p else failure
        cases.append((f"batch {s['batch']}, {s['tokens']:,} tokens a sequence", f"{s['seconds']:.2f} s, {tps:,.0f} tokens/s",
                      peer_cell, f"{tps / p['tokens_per_s']:.2f}" if p else ""))
    return cases


def tables(out, commit):
    """NAME -> the markdown table, for each benchmark the run measured."""
    date = first_line(out, "date.txt") or datetime.date.today().isoformat()
    card = first_line(out, "device.txt").split(",")[0].strip() or "unknown"
    commit = commit or first_line(out, "commit.txt") or "unknown"
    torch = next((r["torch"] for f in ("peer_attention.jsonl", "peer_train.jsonl", "peer_long.jsonl", "peer_sample.jsonl")
                  for r in rows(out, f) if "torch" in r), None)
    cases = {"attention": attention(out), "train": training(out, "st_train.jsonl", "peer_train.jsonl"),
             "long": training(out, "st_long.jsonl", "peer_long.jsonl"), "sample": sampling(out)}
    res = {}
    for name in NAMES:
        if not cases[name]:
            continue
        command = f"`scripts/gpu-run.sh build-gpu {name}`" + (f", PyTorch {torch}" if torch else "")
        lines = [HEADER]
        for i, case in enumerate(cases[name]):
            run = (date, card, commit, command) if i == 0 else ("", "", "", "")
            lines.append("| " + " | ".join(run + case) + " |")
        res[name] = "\n".join(lines)
    return res


def rewrite(path, new):
    """Each table of `new` in place of its markers' text in the file at `path`."""
    with open(path) as f:
        text = f.read()
    for name, table in new.items():
        begin, end = f"<!-- gpu-table:{name} -->", f"<!-- /gpu-table:{name} -->"
        i, j = text.find(begin), text.find(end)
        if i < 0 or j < i:
            sys.exit(f"{PROG}: {path}: no {begin} ... {end}")
        text = text[:i + len(begin)] + "\n\n" + table + "\n\n" + text[j:]   # blank lines: markdown sees a table
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir", nargs="?", default="runs/gpu", help="a gpu-run.sh run's folder (default runs/gpu)")
    p.add_argument("--perf", metavar="FILE", help="rewrite the tables between the markers in FILE (docs/PERF.md)")
    p.add_argument("--commit", help="the commit the run's build was made from (default: OUTDIR/commit.txt)")
    a = p.parse_args()
    if not os.path.isdir(a.outdir):
        sys.exit(f"{PROG}: {a.outdir}: no such folder")
    new = tables(a.outdir, a.commit)
    if a.perf:
        if not new:
            sys.exit(f"{PROG}: {a.outdir}: no st figures to write")
        rewrite(a.perf, new)
        print(f"{a.perf}: {', '.join(new)} rewritten")
        return
    for name, table in new.items():
        print(f"{name}\n{table}\n")


if __name__ == "__main__":
    main()
