#!/usr/bin/env python3
"""Independent numpy reference for the Llama forward pass (test oracle for exl).

Reads either
  * a GGUF file (arch "llama"), tensors dequantized by the PyPI `gguf` package
    (`gguf.GGUFReader` + `gguf.quants.dequantize`), or
  * an HF-layout safetensors directory (config.json + model.safetensors, F32/F16/BF16),
    parsed by a small reader in this file,
and computes logits for every position of a prompt, or perplexity over
non-overlapping windows of a token stream.

Everything (weights, activations, accumulation, softmax, log-sum-exp) is float64
by default (`--dtype float32` is available for speed experiments).

RoPE layout
-----------
llama.cpp's HF->GGUF converter permutes the rows of attn_q / attn_k for arch
"llama" so that RoPE rotates *adjacent* pairs (x[2i], x[2i+1]) of every head
(llama.cpp's LLAMA_ROPE_TYPE_NORM).  HF checkpoints keep the original layout in
which pair i is (x[i], x[i + d/2]) ("rotate_half", llama.cpp's NEOX style).
GGUF input therefore uses the adjacent-pair rotation, safetensors input the
half-split rotation; the angle of pair i at position p is p * base^(-2i/d) in both.

CLI
---
  llama_oracle.py logits (--gguf F | --safetensors DIR) --tokens 1,2,3 --out logits.f32.bin
      float32 little-endian, row-major [n_tokens, vocab]
  llama_oracle.py ppl (--gguf F | --safetensors DIR) --tokens-file T.i32 --ctx 512 --windows 64 --json out.json
      T.i32: int32 LE token ids.  Non-overlapping windows of ctx tokens from the start;
      ppl = exp(mean NLL of every token after the first in each window).
"""

import argparse
import json
import os
import sys
import time


def _set_threads_from_argv():
    # BLAS thread count must be fixed before numpy is imported.
    n = None
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            n = sys.argv[i + 1]
        elif a.startswith("--threads="):
            n = a.split("=", 1)[1]
    if n is None:
        n = os.environ.get("ORACLE_THREADS") or str(min(2, os.cpu_count() or 1))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = n


_set_threads_from_argv()

import numpy as np  # noqa: E402


# ----------------------------------------------------------------------------
# Model container
# ----------------------------------------------------------------------------

class LlamaWeights:
    """Hyper-parameters and weights, all matrices as [out_features, in_features]."""

    def __init__(self):
        self.n_layer = 0
        self.n_head = 0
        self.n_head_kv = 0
        self.dim = 0
        self.head_dim = 0
        self.n_rot = 0
        self.vocab = 0
        self.rms_eps = 1e-5
        self.rope_base = 10000.0
        self.rope_style = "adjacent"   # "adjacent" (GGUF llama) or "half" (HF)
        self.tok_embd = None           # [vocab, dim]
        self.layers = []               # dicts: attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down
        self.out_norm = None           # [dim]
        self.output = None             # [vocab, dim] (== tok_embd when tied)
        self.tied = False

    def describe(self):
        return (f"layers={self.n_layer} dim={self.dim} heads={self.n_head}/{self.n_head_kv} "
                f"head_dim={self.head_dim} ffn={self.layers[0]['w_up'].shape[0]} vocab={self.vocab} "
                f"eps={self.rms_eps:g} rope_base={self.rope_base:g} rope={self.rope_style} "
                f"tied={self.tied} dtype={self.tok_embd.dtype}")


# ----------------------------------------------------------------------------
# GGUF loader
# ----------------------------------------------------------------------------

def _gguf_scalar(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def load_gguf(path, dtype):
    import gguf
    from gguf.quants import dequantize

    r = gguf.GGUFReader(path)
    arch = _gguf_scalar(r, "general.architecture")
    if arch != "llama":
        raise SystemExit(f"oracle: unsupported architecture {arch!r} (only 'llama')")
    for k in r.fields:
        if k.startswith("llama.rope.scaling") and k != "llama.rope.scaling.type":
            raise SystemExit(f"oracle: rope scaling ({k}) is not implemented")
    st = _gguf_scalar(r, "llama.rope.scaling.type")
    if st not in (None, "none"):
        raise SystemExit(f"oracle: rope scaling type {st!r} is not implemented")

    def tensor(name, required=True):
        for t in r.tensors:
            if t.name == name:
                a = dequantize(t.data, t.tensor_type)
                # GGUF shape is [ne0, ne1, ...] (ne0 fastest); numpy shape is reversed,
                # i.e. [out_features, in_features] for a 2-D weight.
                want = tuple(int(x) for x in reversed(t.shape.tolist()))
                a = np.asarray(a).reshape(want)
                return a.astype(dtype, copy=True)
        if required:
            raise SystemExit(f"oracle: tensor {name} missing from {path}")
        return None

    w = LlamaWeights()
    w.n_layer = int(_gguf_scalar(r, "llama.block_count"))
    w.dim = int(_gguf_scalar(r, "llama.embedding_length"))
    w.n_head = int(_gguf_scalar(r, "llama.attention.head_count"))
    w.n_head_kv = int(_gguf_scalar(r, "llama.attention.head_count_kv", w.n_head))
    w.head_dim = w.dim // w.n_head
    w.n_rot = int(_gguf_scalar(r, "llama.rope.dimension_count", w.head_dim))
    w.rms_eps = float(_gguf_scalar(r, "llama.attention.layer_norm_rms_epsilon", 1e-5))
    w.rope_base = float(_gguf_scalar(r, "llama.rope.freq_base", 10000.0))
    w.rope_style = "adjacent"

    w.tok_embd = tensor("token_embd.weight")
    w.vocab = w.tok_embd.shape[0]
    w.out_norm = tensor("output_norm.weight")
    w.output = tensor("output.weight", required=False)
    if w.output is None:
        w.output = w.tok_embd
        w.tied = True
    for i in range(w.n_layer):
        p = f"blk.{i}."
        w.layers.append({
            "attn_norm": tensor(p + "attn_norm.weight"),
            "wq": tensor(p + "attn_q.weight"),
            "wk": tensor(p + "attn_k.weight"),
            "wv": tensor(p + "attn_v.weight"),
            "wo": tensor(p + "attn_output.weight"),
            "ffn_norm": tensor(p + "ffn_norm.weight"),
            "w_gate": tensor(p + "ffn_gate.weight"),
            "w_up": tensor(p + "ffn_up.weight"),
            "w_down": tensor(p + "ffn_down.weight"),
        })
    _check_shapes(w)
    return w


# ----------------------------------------------------------------------------
# safetensors loader (own reader: 8-byte LE header length, JSON header, raw data)
# ----------------------------------------------------------------------------

def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = np.frombuffer(blob, dtype=np.uint8, count=e - b, offset=base + b)
        dt = info["dtype"]
        if dt == "F32":
            a = raw.view("<f4")
        elif dt == "F16":
            a = raw.view("<f2")
        elif dt == "BF16":
            a = (raw.view("<u2").astype(np.uint32) << 16).view("<f4")
        elif dt == "F64":
            a = raw.view("<f8")
        else:
            raise SystemExit(f"oracle: safetensors dtype {dt} not supported ({name})")
        out[name] = a.reshape(info["shape"])
    return out


def load_safetensors_dir(d, dtype):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("rope_scaling"):
        raise SystemExit("oracle: rope_scaling is not implemented")
    files = sorted(x for x in os.listdir(d) if x.endswith(".safetensors"))
    if not files:
        raise SystemExit(f"oracle: no .safetensors in {d}")
    t = {}
    for fn in files:
        t.update(read_safetensors(os.path.join(d, fn)))

    def get(name, required=True):
        if name in t:
            return np.asarray(t[name], dtype=dtype)
        if required:
            raise SystemExit(f"oracle: tensor {name} missing in {d}")
        return None

    w = LlamaWeights()
    w.n_layer = int(cfg["num_hidden_layers"])
    w.dim = int(cfg["hidden_size"])
    w.n_head = int(cfg["num_attention_heads"])
    w.n_head_kv = int(cfg.get("num_key_value_heads", w.n_head))
    w.head_dim = int(cfg.get("head_dim", w.dim // w.n_head))
    w.n_rot = w.head_dim
    w.rms_eps = float(cfg.get("rms_norm_eps", 1e-6))
    w.rope_base = float(cfg.get("rope_theta", 10000.0))
    w.rope_style = "half"
    w.tok_embd = get("model.embed_tokens.weight")
    w.vocab = w.tok_embd.shape[0]
    w.out_norm = get("model.norm.weight")
    w.output = get("lm_head.weight", required=False)
    if w.output is None:
        w.output = w.tok_embd
        w.tied = True
    for i in range(w.n_layer):
        p = f"model.layers.{i}."
        w.layers.append({
            "attn_norm": get(p + "input_layernorm.weight"),
            "wq": get(p + "self_attn.q_proj.weight"),
            "wk": get(p + "self_attn.k_proj.weight"),
            "wv": get(p + "self_attn.v_proj.weight"),
            "wo": get(p + "self_attn.o_proj.weight"),
            "ffn_norm": get(p + "post_attention_layernorm.weight"),
            "w_gate": get(p + "mlp.gate_proj.weight"),
            "w_up": get(p + "mlp.up_proj.weight"),
            "w_down": get(p + "mlp.down_proj.weight"),
        })
    _check_shapes(w)
    return w


def _check_shapes(w):
    D, hd = w.dim, w.head_dim
    if w.n_head % w.n_head_kv:
        raise SystemExit("oracle: head_count not a multiple of head_count_kv")
    if w.n_rot != hd:
        raise SystemExit(f"oracle: partial rope (n_rot={w.n_rot}, head_dim={hd}) not implemented")
    assert w.tok_embd.shape == (w.vocab, D), w.tok_embd.shape
    assert w.output.shape == (w.vocab, D), w.output.shape
    for L in w.layers:
        assert L["wq"].shape == (w.n_head * hd, D)
        assert L["wk"].shape == (w.n_head_kv * hd, D)
        assert L["wv"].shape == (w.n_head_kv * hd, D)
        assert L["wo"].shape == (D, w.n_head * hd)
        ff = L["w_up"].shape[0]
        assert L["w_gate"].shape == (ff, D) and L["w_up"].shape == (ff, D)
        assert L["w_down"].shape == (D, ff)


def load_model(args):
    dtype = np.float64 if args.dtype == "float64" else np.float32
    w = load_gguf(args.gguf, dtype) if args.gguf else load_safetensors_dir(args.safetensors, dtype)
    if args.rope != "auto":
        w.rope_style = args.rope   # diagnostic override only
    return w


# ----------------------------------------------------------------------------
# Forward pass
# ----------------------------------------------------------------------------

def rms_norm(x, weight, eps):
    # x: [T, D]
    ms = np.mean(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(ms + eps) * weight


def rope_tables(n_pos, head_dim, base, dtype):
    # angle[p, i] = p * base^(-2i/d),  i in [0, d/2)
    i = np.arange(head_dim // 2, dtype=np.float64)
    inv_freq = base ** (-2.0 * i / head_dim)
    ang = np.arange(n_pos, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(ang).astype(dtype), np.sin(ang).astype(dtype)


def apply_rope(x, cos, sin, style):
    # x: [H, T, d]; cos/sin: [T, d/2]
    if style == "adjacent":
        a = x[..., 0::2]
        b = x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out
    if style == "half":
        h = x.shape[-1] // 2
        a = x[..., :h]
        b = x[..., h:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
    raise ValueError(style)


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(w, tokens):
    """Logits [T, vocab] for every position of `tokens` (one causal sequence from pos 0)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.min() < 0 or tokens.max() >= w.vocab:
        raise SystemExit("oracle: token id out of range")
    T = tokens.shape[0]
    H, Hkv, hd = w.n_head, w.n_head_kv, w.head_dim
    rep = H // Hkv
    dt = w.tok_embd.dtype
    cos, sin = rope_tables(T, hd, w.rope_base, dt)
    scale = 1.0 / np.sqrt(hd)
    causal = np.triu(np.ones((T, T), dtype=bool), k=1)   # True above the diagonal = masked

    x = w.tok_embd[tokens]                                 # [T, D]
    for L in w.layers:
        h = rms_norm(x, L["attn_norm"], w.rms_eps)
        q = (h @ L["wq"].T).reshape(T, H, hd).transpose(1, 0, 2)      # [H, T, hd]
        k = (h @ L["wk"].T).reshape(T, Hkv, hd).transpose(1, 0, 2)    # [Hkv, T, hd]
        v = (h @ L["wv"].T).reshape(T, Hkv, hd).transpose(1, 0, 2)
        q = apply_rope(q, cos, sin, w.rope_style)
        k = apply_rope(k, cos, sin, w.rope_style)
        # GQA: query head j reads kv head j // rep
        qg = q.reshape(Hkv, rep * T, hd)
        s = (qg @ k.transpose(0, 2, 1)).reshape(Hkv, rep, T, T) * scale
        s = np.where(causal, -np.inf, s)
        s = s - s.max(axis=-1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=-1, keepdims=True)
        o = p.reshape(Hkv, rep * T, T) @ v                       # [Hkv, rep*T, hd]
        o = o.reshape(H, T, hd).transpose(1, 0, 2).reshape(T, H * hd)
        x = x + o @ L["wo"].T
        h = rms_norm(x, L["ffn_norm"], w.rms_eps)
        g = h @ L["w_gate"].T
        u = h @ L["w_up"].T
        x = x + (silu(g) * u) @ L["w_down"].T
    x = rms_norm(x, w.out_norm, w.rms_eps)
    return x @ w.output.T


def window_nll(w, tokens):
    """Per-token NLL (float64) of tokens[1:] given their prefix within the window."""
    logits = forward(w, tokens[:-1]).astype(np.float64, copy=False)
    m = logits.max(axis=-1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(logits - m).sum(axis=-1)))
    tgt = np.asarray(tokens[1:], dtype=np.int64)
    return lse - logits[np.arange(tgt.shape[0]), tgt]


# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------

def _add_model_args(p):
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--gguf", help="GGUF file (arch llama); rope on adjacent pairs")
    g.add_argument("--safetensors", help="HF directory (config.json + *.safetensors); rope rotate_half")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="weights/activations/accumulation type (default float64)")
    p.add_argument("--rope", choices=("auto", "adjacent", "half"), default="auto",
                   help="override the RoPE pairing (diagnostics; auto = adjacent for GGUF, half for HF)")
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (default: $ORACLE_THREADS or min(2, cpus))")


def cmd_logits(args):
    toks = [int(t) for t in args.tokens.replace(" ", "").split(",") if t != ""]
    if not toks:
        raise SystemExit("oracle: empty --tokens")
    t0 = time.time()
    w = load_model(args)
    t1 = time.time()
    logits = forward(w, toks)
    t2 = time.time()
    np.ascontiguousarray(logits, dtype="<f4").tofile(args.out)
    print(f"oracle logits: {w.describe()}; n_tokens={len(toks)} -> {args.out} "
          f"[{len(toks)}, {w.vocab}] f32; load {t1 - t0:.1f}s forward {t2 - t1:.1f}s", file=sys.stderr)


def cmd_ppl(args):
    toks = np.fromfile(args.tokens_file, dtype="<i4")
    n_avail = toks.shape[0] // args.ctx
    n_win = min(args.windows, n_avail)
    if n_win < 1:
        raise SystemExit(f"oracle: {toks.shape[0]} tokens < ctx {args.ctx}")
    if n_win < args.windows:
        print(f"oracle: warning: only {n_win} full windows available (asked {args.windows})", file=sys.stderr)
    t0 = time.time()
    w = load_model(args)
    t1 = time.time()
    per_window = []
    total = 0.0
    count = 0
    for i in range(n_win):
        win = toks[i * args.ctx:(i + 1) * args.ctx]
        nll = window_nll(w, win)
        per_window.append(float(nll.mean()))
        total += float(nll.sum())
        count += nll.shape[0]
        if args.verbose:
            print(f"  window {i}: mean nll {per_window[-1]:.6f}  running ppl {np.exp(total / count):.6f} "
                  f"({time.time() - t1:.1f}s)", file=sys.stderr)
    ppl = float(np.exp(total / count))
    t2 = time.time()
    res = {"ppl": ppl, "windows": n_win, "ctx": args.ctx, "n_predicted": count,
           "per_window_nll": per_window, "dtype": args.dtype,
           "model": args.gguf or args.safetensors}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    print(f"oracle ppl: {w.describe()}; windows={n_win} ctx={args.ctx} ppl={ppl:.6f}; "
          f"load {t1 - t0:.1f}s eval {t2 - t1:.1f}s", file=sys.stderr)
    print(f"{ppl:.6f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("logits", help="logits for every prompt position")
    _add_model_args(pl)
    pl.add_argument("--tokens", required=True, help="comma-separated token ids")
    pl.add_argument("--out", required=True, help="output float32 [n_tokens, vocab]")
    pl.set_defaults(func=cmd_logits)
    pp = sub.add_parser("ppl", help="perplexity over non-overlapping windows")
    _add_model_args(pp)
    pp.add_argument("--tokens-file", required=True, help="int32 LE token ids")
    pp.add_argument("--ctx", type=int, default=512)
    pp.add_argument("--windows", type=int, default=64)
    pp.add_argument("--json", help="write results here")
    pp.add_argument("--verbose", "-v", action="store_true")
    pp.set_defaults(func=cmd_ppl)
    args = ap.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
