# An independent PyTorch model of st: the .st (safetensors) reader and writer, the Sparse Transformer
# with st's parameter names, the allowed-key masks written from the paper's sets (Child et al. 2019, section 4), and st-train's recipe
# (AdamW groups, learning-rate schedule). Used by tests/parity/check_parity.py and scripts/train_torch.py.
import json
import math
import os
import subprocess

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# safetensors dtype name -> (numpy dtype of the stored bytes, torch dtype of the loaded tensor)
_DTYPES = {
    "F32": (np.float32, torch.float32),
    "F64": (np.float64, torch.float64),
    "BF16": (np.int16, torch.bfloat16),  # read as raw 16-bit words, then reinterpreted
    "I32": (np.int32, torch.int32),
    "U8": (np.uint8, torch.uint8),
}
_TORCH_TO_ST = {t: name for name, (_, t) in _DTYPES.items()}

CONFIG_DEFAULTS = {"ff_mult": 4, "vocab": 256, "pattern": "dense", "mode": "interleaved",
                   "stride": 128, "summary": 32, "block": 64, "pos": "1d", "dropout": 0.0}

# Only these 2-D weights get weight decay (st-train's recipe); embeddings, LayerNorms and biases do not.
DECAY_SUFFIXES = ("attn.qkv.weight", "attn.proj.weight", "mlp.fc.weight", "mlp.proj.weight", "head.weight")


def read_bytes(path):
    """The whole file; a name ending in .zst is decompressed with the zstd tool. Errors are ValueError."""
    try:
        if path.endswith(".zst"):
            r = subprocess.run(["zstd", "-dcq", "--", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if r.returncode:
                raise ValueError(f"{path}: zstd: {r.stderr.decode(errors='replace').strip()}")
            return r.stdout
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{path}: {e.strerror}") from None


def load_st(path):
    """Reads a safetensors file -> (config dict, metadata dict, {name: tensor})."""
    raw = read_bytes(path)
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    n = int.from_bytes(raw[:8], "little")
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} runs past the end of the file ({len(raw)} bytes)")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
        metadata = header.pop("__metadata__", {}) or {}
        config = json.loads(metadata["config"]) if "config" in metadata else {}
    except (ValueError, AttributeError) as e:
        raise ValueError(f"{path}: bad header: {e}") from None
    data = memoryview(raw)[8 + n:]
    tensors = {}
    for name, info in header.items():
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
            raise ValueError(f"{path}: tensor {name}: needs dtype, shape and data_offsets")
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name}: dtype {info['dtype']} is not supported")
        np_dtype, torch_dtype = _DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        if end > len(data) or end - begin != count * np.dtype(np_dtype).itemsize:
            raise ValueError(f"{path}: tensor {name}: data_offsets {begin}..{end} do not fit shape {list(shape)}")
        arr = np.frombuffer(data[begin:end], dtype=np.dtype(np_dtype).newbyteorder("<")).reshape(shape)
        t = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True))
        if torch_dtype == torch.bfloat16:
            t = t.view(torch.bfloat16)
        tensors[name] = t
    return config, metadata, tensors


def save_st(path, tensors, metadata):
    """Writes {name: tensor} and {str: str} metadata as safetensors, through a temporary file and rename."""
    header, chunks, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        if t.dtype not in _TORCH_TO_ST:
            raise ValueError(f"{path}: tensor {name}: dtype {t.dtype} cannot be written")
        arr = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()
        blob = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _TORCH_TO_ST[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        chunks.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned, as safetensors writes it
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            for blob in chunks:
                f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def full_config(config):
    """The config with st's defaults filled in, checked for what the model needs."""
    c = {**CONFIG_DEFAULTS, **config}
    for key in ("n_layer", "d_model", "n_head", "n_ctx"):
        if key not in c:
            raise ValueError(f"config: '{key}' is missing")
    if c["d_model"] % c["n_head"]:
        raise ValueError(f"config: d_model {c['d_model']} is not a multiple of n_head {c['n_head']}")
    if c["pattern"] not in ("dense", "local", "fixed", "strided"):
        raise ValueError(f"config: unknown pattern '{c['pattern']}'")
    if c["mode"] not in ("interleaved", "merged", "multihead"):
        raise ValueError(f"config: unknown mode '{c['mode']}'")
    if c["pos"] not in ("1d", "2d", "image"):
        raise ValueError(f"config: unknown pos '{c['pos']}'")
    if c["pattern"] == "fixed" and not 1 <= c["summary"] <= c["stride"]:
        raise ValueError(f"config: summary {c['summary']} must lie in 1..stride ({c['stride']})")
    if c["pos"] == "image" and len(c.get("image", [])) != 3:
        raise ValueError("config: pos 'image' needs \"image\": [H, W, C]")
    return c


def allowed(config, layer, head, i, j):
    """True where query i may attend to key j (Child et al. 2019, section 4), for broadcastable index tensors i,
    j; head is an int or an index tensor (FlexAttention's mask_mod passes tensors)."""
    c = full_config(config)
    l = c["stride"]
    causal = j <= i
    local = causal & (j >= i - l)
    if c["pattern"] == "dense":
        return causal
    if c["pattern"] == "local":
        return local
    if c["pattern"] == "strided":
        a1, a2 = local, causal & ((i - j) % l == 0)
    else:
        k = head // 2 if c["mode"] == "multihead" else head  # only odd heads use A2 in multihead
        sub = k % (l // c["summary"])
        lo, hi = l - (sub + 1) * c["summary"], l - sub * c["summary"]
        a1 = causal & (j // l == i // l)
        a2 = causal & (j % l >= lo) & (j % l < hi)
    if c["mode"] == "merged":
        return a1 | a2
    first = (layer if c["mode"] == "interleaved" else head) % 2 == 0
    return torch.where(torch.as_tensor(first), a1, a2)


def allowed_mask(config, layer, head, T):
    """(T, T) bool, [i, j] true when query i may attend to key j."""
    return allowed(config, layer, head, torch.arange(T).view(T, 1), torch.arange(T).view(1, T))


def position_tables(config):
    """{table name: number of rows} of the factorized position embedding."""
    c = full_config(config)
    if c["pos"] == "1d":
        return {"wpe": c["n_ctx"]}
    if c["pos"] == "2d":
        return {"row": -(-c["n_ctx"] // c["stride"]), "col": c["stride"]}
    h, w, ch = c["image"]
    return {"row": h, "col": w, "chan": ch}


def position_rows(config, T):
    """{table name: (T,) row index of each position} for positions 0..T-1."""
    c = full_config(config)
    i = torch.arange(T)
    if c["pos"] == "1d":
        return {"wpe": i}
    if c["pos"] == "2d":
        return {"row": i // c["stride"], "col": i % c["stride"]}
    _, w, ch = c["image"]
    return {"row": i // ch // w, "col": i // ch % w, "chan": i % ch}


class Attention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)


class Mlp(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.fc = nn.Linear(d, f)
        self.proj = nn.Linear(f, d)


class Block(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = Attention(d)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = Mlp(d, f)


class StModel(nn.Module):
    """st's model; state_dict() names and shapes are exactly those of an st model file."""

    def __init__(self, config):
        super().__init__()
        self.config = full_config(config)
        c = self.config
        d, f = c["d_model"], c["ff_mult"] * c["d_model"]
        self.wte = nn.Parameter(torch.zeros(c["vocab"], d))
        tables = position_tables(c)
        if c["pos"] == "1d":
            self.wpe = nn.Parameter(torch.zeros(tables["wpe"], d))
        else:
            self.wpe = nn.ParameterDict({k: nn.Parameter(torch.zeros(n, d)) for k, n in tables.items()})
        self.h = nn.ModuleList(Block(d, f) for _ in range(c["n_layer"]))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        self.head = nn.Linear(d, c["vocab"], bias=False)
        self._masks = {}
        self.flex = False   # FlexAttention over block masks instead of dense (T, T) masks: long sequences on a GPU

    def init_weights(self, generator=None):
        """The paper's init, as st does it (Child et al. 2019, section 5)."""
        c = self.config
        d = c["d_model"]
        normal = lambda p, std: p.data.normal_(0.0, std, generator=generator)
        with torch.no_grad():
            normal(self.wte, 0.125 / math.sqrt(d))
            tables = [self.wpe] if isinstance(self.wpe, nn.Parameter) else list(self.wpe.values())
            for t in tables:
                normal(t, 0.125 / math.sqrt(d * len(tables)))
            for b in self.h:
                for lin, scale in ((b.attn.qkv, 1.0), (b.attn.proj, 1 / math.sqrt(2 * c["n_layer"])),
                                   (b.mlp.fc, 1.0), (b.mlp.proj, 1 / math.sqrt(2 * c["n_layer"]))):
                    normal(lin.weight, scale * 0.125 / math.sqrt(lin.in_features))
                    lin.bias.zero_()
                for ln in (b.ln1, b.ln2):
                    ln.weight.fill_(1.0)
                    ln.bias.zero_()
            self.ln_f.weight.fill_(1.0)
            self.ln_f.bias.zero_()
            self.head.weight.zero_()

    def layer_masks(self, T, device="cpu"):
        """Per layer, (H or 1, T, T) bool allowed sets on device; equal masks are built once and shared."""
        if (T, device) not in self._masks:
            c, distinct, masks = self.config, [], []
            for r in range(c["n_layer"]):
                heads = torch.stack([allowed_mask(c, r, hd, T) for hd in range(c["n_head"])])
                if all(torch.equal(heads[0], m) for m in heads[1:]):
                    heads = heads[:1]
                same = next((m for m in distinct if torch.equal(m, heads)), None)
                if same is None:
                    distinct.append(heads)
                masks.append(heads if same is None else same)
            # one length at a time: the masks are T^2 per distinct pattern
            self._masks = {(T, device): [m.to(device) for m in masks]}
        return self._masks[(T, device)]

    def embed(self, x):
        T = x.shape[1]
        if T > self.config["n_ctx"]:
            raise ValueError(f"sequence length {T} exceeds n_ctx {self.config['n_ctx']}")
        rows = position_rows(self.config, T)
        if isinstance(self.wpe, nn.Parameter):
            pos = self.wpe[rows["wpe"].to(x.device)]
        else:
            pos = sum(self.wpe[k][idx.to(x.device)] for k, idx in rows.items())
        return self.wte[x.long()] + pos

    def flex_masks(self, T, device):
        """Per layer, FlexAttention's block mask of the same sets (built lazily, never T x T). A layer's
        sets depend on it only through its parity in interleaved mode: one mask (and one compiled
        kernel) per parity, not per layer, which would recompile flex_attention for every layer."""
        from torch.nn.attention.flex_attention import create_block_mask
        if (T, device, "flex") not in self._masks:
            c = self.config
            kinds = 2 if full_config(c)["mode"] == "interleaved" else 1
            made = [create_block_mask(lambda b, h, q, kv, r=r: allowed(c, r, h, q, kv), None, c["n_head"], T, T, device=device,
                                      BLOCK_SIZE=128, _compile=True) for r in range(min(kinds, c["n_layer"]))]
            self._masks = {(T, device, "flex"): [made[r % kinds] for r in range(c["n_layer"])]}
        return self._masks[(T, device, "flex")]

    def attend(self, attn, x, mask):
        B, T, d = x.shape
        H = self.config["n_head"]
        q, k, v = attn.qkv(x).view(B, T, 3, H, d // H).permute(2, 0, 3, 1, 4)  # each (B, H, T, Dh)
        if self.flex:   # mask is a block mask; rows with no allowed key come out 0, as st's
            return attn.proj(_flex_attention()(q, k, v, block_mask=mask).transpose(1, 2).reshape(B, T, d))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // H)  # (B, H, T, T)
        # A query with no allowed key (fixed A2 before the first summary cell) gets output 0:
        # fill with the lowest finite value, not -inf, so its softmax and gradient stay finite.
        blocked = ~mask
        p = torch.softmax(scores.masked_fill(blocked, torch.finfo(scores.dtype).min), dim=-1)
        p = p.masked_fill(blocked, 0.0)
        return attn.proj((p @ v).transpose(1, 2).reshape(B, T, d))

    def forward(self, x, y=None):
        """x (B, T) bytes -> logits (B, T, vocab); with targets y, the mean cross-entropy in nats."""
        drop = self.config["dropout"]
        h = self.embed(x)
        masks = self.flex_masks(x.shape[1], x.device) if self.flex else self.layer_masks(x.shape[1], x.device)
        for b, mask in zip(self.h, masks):
            h = h + F.dropout(self.attend(b.attn, b.ln1(h), mask), drop, self.training)
            m = b.mlp.proj(F.gelu(b.mlp.fc(b.ln2(h)), approximate="tanh"))
            h = h + F.dropout(m, drop, self.training)
        logits = self.head(self.ln_f(h))
        if y is None:
            return logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1).long())


_FLEX = []


def _flex_attention():
    """flex_attention compiled once (uncompiled it falls back to a dense computation)."""
    if not _FLEX:
        from torch.nn.attention.flex_attention import flex_attention
        _FLEX.append(torch.compile(flex_attention))
    return _FLEX[0]


def load_model(path):
    """An st model file -> (StModel with its weights, config, metadata)."""
    config, metadata, tensors = load_st(path)
    if not config:
        raise ValueError(f"{path}: no 'config' in the metadata")
    model = StModel(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ValueError(f"{path}: missing tensors: {', '.join(missing)}")
    for name, t in expected.items():
        if tuple(tensors[name].shape) != tuple(t.shape):
            raise ValueError(f"{path}: tensor {name} has shape {list(tensors[name].shape)}, "
                             f"the config needs {list(t.shape)}")
    model.load_state_dict({k: tensors[k].float() for k in expected})
    return model, config, metadata


def lr_at(step, lr, lr_min, warmup, steps):
    """st-train's schedule at 0-based step: linear warm-up, then cosine from lr down to lr_min."""
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * p))


def make_optimizer(model, lr, wd):
    """AdamW as st-train sets it up: decay only on the linear layers' 2-D weights."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        (decay if name.endswith(DECAY_SUFFIXES) else rest).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), eps=1e-8)
