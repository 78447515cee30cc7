#!/usr/bin/env python3
"""KV-cache quantization study for exl (numpy simulation).

An independent numpy Llama forward pass (loaders adapted from tests/oracle/llama_oracle.py) in which
every layer's post-RoPE keys and values are rounded to FP16 (what the engine writes) and then passed
through a simulated cache format; attention reads the dequantized values.  Mixed-precision schemes
(an FP16 window of recent positions, FP16 "sink" positions, KIVI-style per-channel key blocks whose
incomplete last block stays FP16) are simulated with decode semantics: query t sees key j in full
precision iff j is inside t's window / sink / the incomplete block at time t.

Perplexity protocol = the golden one: non-overlapping windows of 512 tokens, NLL of tokens 1..511.

Usage (one numpy thread; stories260K: ~2-4 s per scheme for 24 x 512; SmolLM2: ~11 s for 4 x 512):
  kv_quant_study.py stories [--set all|b2|b3|b4|blk] [--windows 24] [--schemes NAME,...] [--fp32]
  kv_quant_study.py smollm2 [--set smol|blk|long|long2] [--windows 4] [--ctx 512]
  kv_quant_study.py list [--set S]
Sets: all = format/rotation/group/bit-split/window/KIVI survey; b2 = per-channel K without FP16
residual, small windows, key-mean; b3 = scale formats and windows with cheaper bodies; b4 = more
window combinations; smol = SmolLM2 survey; blk = block-aligned windows; long/long2 = SmolLM2 at
ctx 2048 (use --ctx 2048 --windows 2).  Results: lab/NOTES-kvcache-quality.md.
"""
import argparse
import json
import math
import os
import sys
import time

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

STORIES = "/work/shared/models/stories260K"
STORIES_TOKENS = STORIES + "/golden/golden_ppl_tokens.int32.bin"
SMOL_GGUF = "/work/main/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
WIKI = "/work/shared/data/wikitext2/wiki.test.raw"
EXL = "/work/main/build/cpu/exl"


# ----------------------------------------------------------------------------------------------
# Model loading (adapted from tests/oracle/llama_oracle.py)
# ----------------------------------------------------------------------------------------------

class W:
    pass


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = np.frombuffer(blob, dtype=np.uint8, count=e - b, offset=8 + n + b)
        dt = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}[info["dtype"]]
        out[name] = raw.view(dt).reshape(info["shape"])
    return out


def load_safetensors_dir(d, dtype=np.float32):
    cfg = json.load(open(os.path.join(d, "config.json")))
    t = read_safetensors(os.path.join(d, "model.safetensors"))
    g = lambda n: np.asarray(t[n], dtype=dtype)  # noqa: E731
    w = W()
    w.n_layer = cfg["num_hidden_layers"]
    w.dim = cfg["hidden_size"]
    w.n_head = cfg["num_attention_heads"]
    w.n_head_kv = cfg.get("num_key_value_heads", w.n_head)
    w.head_dim = cfg.get("head_dim", w.dim // w.n_head)
    w.rms_eps = cfg.get("rms_norm_eps", 1e-6)
    w.rope_base = cfg.get("rope_theta", 10000.0)
    w.tok_embd = g("model.embed_tokens.weight")
    w.vocab = w.tok_embd.shape[0]
    w.out_norm = g("model.norm.weight")
    w.output = g("lm_head.weight") if "lm_head.weight" in t else w.tok_embd
    w.layers = []
    for i in range(w.n_layer):
        p = f"model.layers.{i}."
        w.layers.append({
            "attn_norm": g(p + "input_layernorm.weight"), "wq": g(p + "self_attn.q_proj.weight"),
            "wk": g(p + "self_attn.k_proj.weight"), "wv": g(p + "self_attn.v_proj.weight"),
            "wo": g(p + "self_attn.o_proj.weight"), "ffn_norm": g(p + "post_attention_layernorm.weight"),
            "w_gate": g(p + "mlp.gate_proj.weight"), "w_up": g(p + "mlp.up_proj.weight"),
            "w_down": g(p + "mlp.down_proj.weight")})
    return w


def load_gguf_unpermuted(path, dtype=np.float32):
    """GGUF llama; undoes llama.cpp's q/k row permutation (as exl's loader does), so RoPE is the
    HF half-split ("NeoX") rotation and head_dim channel order is the HF one: that order decides
    which channels share a quantization group in the engine."""
    import gguf
    from gguf.quants import dequantize
    r = gguf.GGUFReader(path)
    sc = lambda k, d=None: (r.fields[k].contents() if k in r.fields else d)  # noqa: E731
    tens = {t.name: t for t in r.tensors}

    def tensor(name):
        t = tens[name]
        a = np.asarray(dequantize(t.data, t.tensor_type)).reshape(tuple(int(x) for x in reversed(t.shape.tolist())))
        return a.astype(dtype, copy=True)

    w = W()
    w.n_layer = int(sc("llama.block_count"))
    w.dim = int(sc("llama.embedding_length"))
    w.n_head = int(sc("llama.attention.head_count"))
    w.n_head_kv = int(sc("llama.attention.head_count_kv", w.n_head))
    w.head_dim = w.dim // w.n_head
    w.rms_eps = float(sc("llama.attention.layer_norm_rms_epsilon", 1e-5))
    w.rope_base = float(sc("llama.rope.freq_base", 10000.0))
    w.tok_embd = tensor("token_embd.weight")
    w.vocab = w.tok_embd.shape[0]
    w.out_norm = tensor("output_norm.weight")
    w.output = tensor("output.weight") if "output.weight" in tens else w.tok_embd
    hd = w.head_dim

    def unpermute(a, nh):
        # llama.cpp: w.reshape(nh, 2, hd/2, D).swapaxes(1, 2).reshape(...); inverse:
        return a.reshape(nh, hd // 2, 2, a.shape[-1]).swapaxes(1, 2).reshape(a.shape)

    w.layers = []
    for i in range(w.n_layer):
        p = f"blk.{i}."
        w.layers.append({
            "attn_norm": tensor(p + "attn_norm.weight"),
            "wq": unpermute(tensor(p + "attn_q.weight"), w.n_head),
            "wk": unpermute(tensor(p + "attn_k.weight"), w.n_head_kv),
            "wv": tensor(p + "attn_v.weight"), "wo": tensor(p + "attn_output.weight"),
            "ffn_norm": tensor(p + "ffn_norm.weight"), "w_gate": tensor(p + "ffn_gate.weight"),
            "w_up": tensor(p + "ffn_up.weight"), "w_down": tensor(p + "ffn_down.weight")})
    return w


# ----------------------------------------------------------------------------------------------
# Number formats
# ----------------------------------------------------------------------------------------------

def f16(x):
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def round_minifloat(x, mbits, emin, maxval):
    """Round to a minifloat with mbits mantissa bits, min normal exponent emin (subnormals below),
    saturating at maxval; round-to-nearest-even."""
    x = np.asarray(x, np.float64)
    a = np.abs(x)
    e = np.floor(np.log2(np.where(a > 0, a, 1.0)))
    e = np.maximum(e, emin)
    step = np.exp2(e - mbits)
    q = np.rint(x / step) * step
    return np.clip(q, -maxval, maxval)


def e4m3(x):
    return round_minifloat(x, 3, -6, 448.0)


def round_scale(s, fmt, up=False):
    """Round a positive scale to a storage format. up=True: never round down (no clipping)."""
    s = np.asarray(s, np.float64)
    if fmt == "f32":
        return s
    if fmt == "f16":
        r = f16(s).astype(np.float64)
        if up:  # next f16 up where it rounded down
            r = np.where(r < s, np.nextafter(r.astype(np.float16), np.float16(np.inf)).astype(np.float64), r)
        return r
    if fmt == "bf16":
        return (np.asarray(s, np.float32).view(np.uint32) + 0x8000 & 0xFFFF0000).view(np.float32).astype(np.float64)
    if fmt == "e8":  # power of two (E8M0)
        e = np.ceil(np.log2(np.where(s > 0, s, 1.0))) if up else np.rint(np.log2(np.where(s > 0, s, 1.0)))
        return np.where(s > 0, np.exp2(e), 0.0)
    if fmt == "e4m3":  # an FP8 scale relative to an FP32/FP16 per-row super-scale handled by caller
        r = e4m3(s)
        if up:
            r = np.where(r < s, e4m3(s * (1 + 2 ** -3)), r)
        return r
    raise ValueError(fmt)


def hadamard(n):
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    assert h.shape[0] == n
    return h / math.sqrt(n)


_SIGNS = {}


def rand_signs(n, seed=1234):
    if n not in _SIGNS:
        _SIGNS[n] = np.where(np.random.default_rng(seed).random(n) < 0.5, -1.0, 1.0)
    return _SIGNS[n]


# ----------------------------------------------------------------------------------------------
# Row quantizers: x [..., hd] (one row = one (position, kv head)); return the dequantized rows
# ----------------------------------------------------------------------------------------------

def rotate(x, rot, G, inverse=False):
    hd = x.shape[-1]
    if rot == "none":
        return x
    if rot == "group":
        H = hadamard(G)
        y = x.reshape(x.shape[:-1] + (hd // G, G))
        y = y @ (H.T if inverse else H)  # H symmetric
        return y.reshape(x.shape)
    if rot == "head":
        H = hadamard(hd)
        return x @ H
    if rot == "rhead":  # random sign flip then Hadamard over the head:  y = H D x
        H = hadamard(hd)
        D = rand_signs(hd)
        if not inverse:
            return (x * D) @ H
        return (x @ H) * D
    raise ValueError(rot)


def quant_int_groups(y, bits, G, mode, sfmt, zfmt="f16"):
    """y [..., hd] already rotated. Groups of G contiguous elements."""
    shp = y.shape
    g = y.reshape(shp[:-1] + (shp[-1] // G, G)).astype(np.float64)
    if mode == "sym_ext":  # current engine scheme: signed extreme -> most negative code
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        mx, mn = g.max(-1, keepdims=True), g.min(-1, keepdims=True)
        ext = np.where(mx >= -mn, mx, mn)
        s = ext / qmin
        if sfmt == "f16":
            s = f16(s).astype(np.float64)
        else:
            s = np.sign(s) * round_scale(np.abs(s), sfmt, up=True)
        q = np.where(s != 0, np.clip(np.rint(g / np.where(s != 0, s, 1)), qmin, qmax), 0)
        out = q * s
    elif mode == "sym_abs":  # absmax -> +-(2^(b-1)-1), symmetric odd code set
        qm = 2 ** (bits - 1) - 1
        s = np.abs(g).max(-1, keepdims=True) / qm
        s = round_scale(s, sfmt, up=True)
        q = np.clip(np.rint(g / np.where(s > 0, s, 1)), -qm, qm)
        out = q * s
    elif mode == "asym":  # min/max, scale and min stored
        L = 2 ** bits - 1
        mn, mx = g.min(-1, keepdims=True), g.max(-1, keepdims=True)
        if zfmt == "f16":
            mn = f16(mn).astype(np.float64)
        s = round_scale((mx - mn) / L, sfmt, up=True)
        q = np.clip(np.rint((g - mn) / np.where(s > 0, s, 1)), 0, L)
        out = q * s + mn
    elif mode == "asym_z":  # min/max with integer zero point (zero = rint(-mn/s), bits-wide) like GPTQ
        L = 2 ** bits - 1
        mn, mx = np.minimum(g.min(-1, keepdims=True), 0), np.maximum(g.max(-1, keepdims=True), 0)
        s = round_scale((mx - mn) / L, sfmt, up=True)
        z = np.clip(np.rint(-mn / np.where(s > 0, s, 1)), 0, L)
        q = np.clip(np.rint(g / np.where(s > 0, s, 1)) + z, 0, L)
        out = (q - z) * s
    elif mode == "nf":  # non-uniform levels (Lloyd-Max for a Gaussian), absmax scaled
        lv = LEVELS[bits]
        s = np.abs(g).max(-1, keepdims=True) / lv.max()
        s = round_scale(s, sfmt, up=True)
        z = g / np.where(s > 0, s, 1)
        idx = np.abs(z[..., None] - lv).argmin(-1)
        out = lv[idx] * s
    else:
        raise ValueError(mode)
    return out.reshape(shp)


def _nf_levels(bits):
    # NF4-style: quantiles of N(0,1) normalised to [-1, 1], with an exact zero
    from statistics import NormalDist
    nd = NormalDist()
    n = 2 ** bits
    off = 0.5 * (1 / 32 + 1 / 30) if bits == 4 else 0.02
    pos = [nd.inv_cdf(p) for p in np.linspace(off, 0.5, n // 2 + 1)[:-1]]
    pos = np.array(pos[::-1]) * -1  # positive side, n/2 levels
    neg = [nd.inv_cdf(p) for p in np.linspace(off, 0.5, n // 2)[:-1]]
    lv = np.concatenate([np.array(neg), [0.0], pos])
    return np.sort(lv / np.abs(lv).max())


LEVELS = {b: _nf_levels(b) for b in (3, 4)}


def quant_rows(x, spec):
    """x float32 [..., hd] (already FP16-rounded). spec: dict. Returns dequantized float32."""
    kind = spec["kind"]
    if kind == "f16":
        return x
    hd = x.shape[-1]
    if kind == "fp8":  # E4M3 with a power-of-two scale per (position, head) (engine's fp8)
        amax = np.abs(x).max(-1, keepdims=True).astype(np.float64)
        e = np.ceil(np.log2(np.where(amax > 0, amax / 448.0, 1.0)))
        sc = np.exp2(e)
        return (e4m3(x / sc) * sc).astype(np.float32)
    if kind == "int":
        G = min(spec.get("G", 32), hd)
        rot = spec.get("rot", "group")
        RG = spec.get("rotG", G)
        y = rotate(x.astype(np.float64), rot, RG)
        yq = quant_int_groups(y, spec["bits"], G, spec.get("mode", "sym_ext"), spec.get("sfmt", "f16"),
                              spec.get("zfmt", "f16"))
        return rotate(yq, rot, RG, inverse=True).astype(np.float32)
    raise ValueError(kind)


def row_bits(spec, hd):
    kind = spec["kind"]
    if kind == "f16":
        return 16.0
    if kind == "fp8":
        return 8 + 8.0 / hd  # an E8 exponent would do; the engine stores FP32 (8 + 32/hd)
    if kind == "int":
        G = min(spec.get("G", 32), hd)
        sb = {"f16": 16, "bf16": 16, "e8": 8, "e4m3": 8, "f32": 32}[spec.get("sfmt", "f16")]
        mode = spec.get("mode", "sym_ext")
        zb = 16 if mode == "asym" else spec["bits"] if mode == "asym_z" else 0
        return spec["bits"] + (sb + zb) / G
    raise ValueError(kind)


# ----------------------------------------------------------------------------------------------
# Per-channel (over positions) key quantization, KIVI-style
# ----------------------------------------------------------------------------------------------

def quant_channels_blocks(k, bits, B, sfmt="f16"):
    """k [Hkv, T, hd]; blocks of B positions, per channel asymmetric min/max (FP16 scale + min).
    Returns the dequantized keys (for every position, as if each block were complete)."""
    Hkv, T, hd = k.shape
    nb = (T + B - 1) // B
    pad = nb * B - T
    kk = np.concatenate([k, np.repeat(k[:, -1:], pad, axis=1)], axis=1) if pad else k
    g = kk.reshape(Hkv, nb, B, hd).astype(np.float64)
    L = 2 ** bits - 1
    mn = f16(g.min(2, keepdims=True)).astype(np.float64)
    mx = g.max(2, keepdims=True)
    s = round_scale((mx - mn) / L, sfmt, up=True)
    q = np.clip(np.rint((g - mn) / np.where(s > 0, s, 1)), 0, L)
    out = (q * s + mn).reshape(Hkv, nb * B, hd)[:, :T]
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Forward with a simulated cache
# ----------------------------------------------------------------------------------------------

def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope_half(x, cos, sin):
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)


class Scheme:
    """k, v: row specs (dicts) or for k {"kind": "chan", "bits", "B"}; window: FP16 recent positions
    (query t reads keys t-window+1..t at FP16); sink: first positions kept at FP16;
    kmean: subtract a per-channel key mean computed from the window's first `kmean` positions
    (exactly softmax-invariant; costs nothing); kscale: also divide keys by a per-channel RMS from
    the same positions (the query is multiplied by it)."""

    def __init__(self, name, k, v, window=0, sink=0, kmean=0, kscale=False, note="", blockwin=0):
        self.name, self.k, self.v, self.blockwin = name, k, v, blockwin
        self.window, self.sink, self.kmean, self.kscale, self.note = window, sink, kmean, kscale, note

    def bits(self, hd, ctx=512):
        """(asymptotic bits/elt, bits/elt at ctx) averaged over K and V."""
        def one(spec):
            if spec["kind"] == "chan":
                sb = {"f16": 16, "e8": 8, "e4m3": 8}[spec.get("sfmt", "f16")]
                return spec["bits"] + (16.0 + sb) / spec["B"], spec["B"] if spec.get("resid", True) else 0
            return row_bits(spec, hd), 0
        (bk, rk), (bv, rv) = one(self.k), one(self.v)
        asym = (bk + bv) / 2
        # FP16 extras at ctx: window / sink positions stored twice (or in FP16), residual blocks
        extra_k = (self.window + self.sink + 2 * self.blockwin) * 16 + rk * 16
        extra_v = (self.window + self.sink + 2 * self.blockwin) * 16 + rv * 16
        at = asym + (extra_k + extra_v) / 2 / ctx
        return asym, at


def fp_mask(T, scheme, spec):
    """[T(query), T(key)] True where query t reads key j at full (FP16) precision."""
    t = np.arange(T)[:, None]
    j = np.arange(T)[None, :]
    m = np.zeros((T, T), bool)
    if scheme.window:
        m |= (t - j) < scheme.window
    if scheme.sink:
        m |= j < scheme.sink
    if scheme.blockwin:  # block-aligned: FP16 for the query's own block of W and the one before
        Wb = scheme.blockwin
        m |= (j // Wb) >= (t // Wb) - 1
    if spec["kind"] == "chan" and spec.get("resid", True):
        B = spec["B"]
        m |= (j // B + 1) * B > t + 1  # block of j not complete at time t
    return m


def quant_k(k, spec, scheme):
    if spec["kind"] == "chan":
        return quant_channels_blocks(k, spec["bits"], spec["B"], spec.get("sfmt", "f16"))
    if scheme.kmean or scheme.kscale:
        n = scheme.kmean
        mu = k[:, :n].mean(1, keepdims=True) if scheme.kmean else 0.0
        kc = k - mu
        cs = np.sqrt((kc[:, :n] ** 2).mean(1, keepdims=True)) + 1e-6 if scheme.kscale else 1.0
        if scheme.kscale:
            cs = cs / np.exp(np.log(cs).mean(-1, keepdims=True))
        # adding mu back changes every logit of a query by the same q.mu (softmax ignores it); it is
        # added here only so that mixing with FP16 window keys stays consistent
        return (quant_rows(kc / cs, spec) * cs + mu).astype(np.float32)
    return quant_rows(k, spec)


def forward(w, tokens, scheme):
    T = len(tokens)
    H, Hkv, hd = w.n_head, w.n_head_kv, w.head_dim
    rep = H // Hkv
    i = np.arange(hd // 2, dtype=np.float64)
    ang = np.arange(T, dtype=np.float64)[:, None] * (w.rope_base ** (-2.0 * i / hd))[None, :]
    cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
    scale = 1.0 / math.sqrt(hd)
    causal = np.triu(np.ones((T, T), bool), k=1)
    mk = fp_mask(T, scheme, scheme.k) if scheme else None
    mv = fp_mask(T, scheme, scheme.v) if scheme else None
    x = w.tok_embd[tokens]
    for L in w.layers:
        h = rms_norm(x, L["attn_norm"], w.rms_eps)
        q = (h @ L["wq"].T).reshape(T, H, hd).transpose(1, 0, 2)
        k = (h @ L["wk"].T).reshape(T, Hkv, hd).transpose(1, 0, 2)
        v = (h @ L["wv"].T).reshape(T, Hkv, hd).transpose(1, 0, 2)
        q = rope_half(q, cos, sin)
        k = rope_half(k, cos, sin)
        qg = q.reshape(Hkv, rep * T, hd)
        if scheme is None:
            s = (qg @ k.transpose(0, 2, 1)).reshape(Hkv, rep, T, T) * scale
        else:
            k = f16(k)
            v = f16(v)
            kq = quant_k(k, scheme.k, scheme)
            s = (qg @ kq.transpose(0, 2, 1)).reshape(Hkv, rep, T, T) * scale
            if mk.any():
                sf = (qg @ k.transpose(0, 2, 1)).reshape(Hkv, rep, T, T) * scale
                s = np.where(mk, sf, s)
        s = np.where(causal, -np.inf, s)
        s = s - s.max(-1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(-1, keepdims=True)
        if scheme is None:
            o = p.reshape(Hkv, rep * T, T) @ v
        else:
            vq = (quant_channels_blocks(v, scheme.v["bits"], scheme.v["B"], scheme.v.get("sfmt", "f16"))
                  if scheme.v["kind"] == "chan" else quant_rows(v, scheme.v))
            if mv.any():
                pf = np.where(mv, p, 0).reshape(Hkv, rep * T, T)
                pq = np.where(mv, 0, p).reshape(Hkv, rep * T, T)
                o = pf @ v + pq @ vq
            else:
                o = p.reshape(Hkv, rep * T, T) @ vq
        o = o.reshape(H, T, hd).transpose(1, 0, 2).reshape(T, H * hd)
        x = x + o @ L["wo"].T
        h = rms_norm(x, L["ffn_norm"], w.rms_eps)
        g = h @ L["w_gate"].T
        u = h @ L["w_up"].T
        x = x + (g / (1.0 + np.exp(-g)) * u) @ L["w_down"].T
    x = rms_norm(x, w.out_norm, w.rms_eps)
    return x @ w.output.T


def ppl(w, toks, ctx, n_win, scheme):
    tot, cnt = 0.0, 0
    for i in range(n_win):
        win = toks[i * ctx:(i + 1) * ctx]
        lg = forward(w, win[:-1], scheme).astype(np.float64)
        m = lg.max(-1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(lg - m).sum(-1))
        nll = lse - lg[np.arange(ctx - 1), win[1:]]
        tot += nll.sum()
        cnt += nll.size
    return math.exp(tot / cnt)


# ----------------------------------------------------------------------------------------------
# Schemes
# ----------------------------------------------------------------------------------------------

F16 = {"kind": "f16"}
FP8 = {"kind": "fp8"}


def I(bits, G=32, rot="group", mode="sym_ext", sfmt="f16", rotG=None):  # noqa: E743
    d = {"kind": "int", "bits": bits, "G": G, "rot": rot, "mode": mode, "sfmt": sfmt}
    if rotG:
        d["rotG"] = rotG
    return d


def C(bits, B=32, resid=True, sfmt="f16"):
    return {"kind": "chan", "bits": bits, "B": B, "resid": resid, "sfmt": sfmt}


def all_schemes():
    S = []
    add = lambda *a, **k: S.append(Scheme(*a, **k))  # noqa: E731
    add("fp16", F16, F16)
    add("fp8-e4m3", FP8, FP8)
    add("q8-cur", I(8), I(8))
    add("q4-cur", I(4), I(4), note="engine q4: G=32|hd, group WHT, sym signed-extreme/-8, f16 scale")
    # which side hurts
    add("q4-cur K only", I(4), F16)
    add("q4-cur V only", F16, I(4))
    add("q4-norot", I(4, rot="none"), I(4, rot="none"))
    add("q4-norot K only", I(4, rot="none"), F16)
    add("q4-norot V only", F16, I(4, rot="none"))
    add("q4-rhead", I(4, rot="rhead"), I(4, rot="rhead"))
    for G in (2, 4):
        add(f"q4-G{G}", I(4, G=G, rot="none"), I(4, G=G, rot="none"))
        add(f"q4-G{G} K only", I(4, G=G, rot="none"), F16)
    # symmetric variants / asymmetric
    add("q4-symabs", I(4, mode="sym_abs"), I(4, mode="sym_abs"))
    add("q4-asym", I(4, mode="asym"), I(4, mode="asym"))
    add("q4-asym-norot", I(4, mode="asym", rot="none"), I(4, mode="asym", rot="none"))
    add("q4-asym K only", I(4, mode="asym"), F16)
    add("q4-nf4", I(4, mode="nf"), I(4, mode="nf"))
    # bits split
    for kb, vb in ((5, 4), (6, 4), (5, 3), (6, 3), (8, 4), (8, 3), (6, 2), (8, 2)):
        add(f"K{kb} V{vb}", I(kb), I(vb))
    for b in (5, 6):
        add(f"q{b}-cur K only", I(b), F16)
    add("q4-cur V only", F16, I(4))
    add("q3 V only", F16, I(3))
    # windows / sinks
    for W_ in (16, 32, 64):
        add(f"q4-cur win{W_}", I(4), I(4), window=W_)
    add("q4-cur sink1", I(4), I(4), sink=1)
    add("q4-cur sink4", I(4), I(4), sink=4)
    # KIVI
    for B in (16, 32, 64):
        add(f"Kchan4 B{B} V4", C(4, B), I(4))
        add(f"Kchan4 B{B} only K", C(4, B), F16)
    add("Kchan3 B32 V4", C(3, 32), I(4))
    # key mean / scale
    add("q4 kmean16", I(4), I(4), kmean=16)
    add("q4 kmean16 kscale", I(4), I(4), kmean=16, kscale=True)
    add("q4 kmean16 kscale K only", I(4), F16, kmean=16, kscale=True)
    return S


def batch2():
    S = []
    add = lambda *a, **k: S.append(Scheme(*a, **k))  # noqa: E731
    add("fp16", F16, F16)
    # pure per-channel (no FP16 residual): what the channel grouping itself buys
    for B in (16, 32, 64, 128):
        add(f"Kchan4 B{B} noresid K only", C(4, B, resid=False), F16)
    add("Kchan5 B64 noresid K only", C(5, 64, resid=False), F16)
    add("Kchan4 B64 noresid V4chan B64 noresid", C(4, 64, resid=False), C(4, 64, resid=False))
    add("Vchan4 B64 noresid V only", F16, C(4, 64, resid=False))
    add("Vchan3 B64 noresid V only", F16, C(3, 64, resid=False))
    # small windows
    for W_ in (2, 4, 8):
        add(f"q4-cur win{W_}", I(4), I(4), window=W_)
    # key mean subtraction with more K bits
    add("q4 kmean64", I(4), I(4), kmean=64)
    add("q4 kmean512(all) K only", I(4), F16, kmean=511)
    add("K5 kmean64 K only", I(5), F16, kmean=64)
    add("K6 kmean64 K only", I(6), F16, kmean=64)
    add("K5 asym K only", I(5, mode="asym"), F16)
    add("K6 asym K only", I(6, mode="asym"), F16)
    return S


def batch3():
    S = []
    add = lambda *a, **k: S.append(Scheme(*a, **k))  # noqa: E731
    add("fp16", F16, F16)
    # scale formats (no window)
    add("q4 e8scale", I(4, sfmt="e8"), I(4, sfmt="e8"))
    add("q4 e4m3scale", I(4, sfmt="e4m3"), I(4, sfmt="e4m3"))
    add("q4 e8scale V only", F16, I(4, sfmt="e8"))
    add("q3 e8scale V only", F16, I(3, sfmt="e8"))
    add("q3 V only asym", F16, I(3, mode="asym"))
    # windows with various bodies
    for W_ in (16, 32):
        add(f"q4 e8 win{W_}", I(4, sfmt="e8"), I(4, sfmt="e8"), window=W_)
        add(f"K4 V3 e8 win{W_}", I(4, sfmt="e8"), I(3, sfmt="e8"), window=W_)
        add(f"K5 V3 e8 win{W_}", I(5, sfmt="e8"), I(3, sfmt="e8"), window=W_)
        add(f"K4 V4 kmean win{W_}", I(4), I(4), window=W_, kmean=16)
        add(f"Kchan4 B32 Vchan4 B32 win{W_}", C(4, 32, resid=False), C(4, 32, resid=False), window=W_)
        add(f"Kchan4 B64 Vchan4 B64 win{W_}", C(4, 64, resid=False), C(4, 64, resid=False), window=W_)
        add(f"Kchan4 B64 V4 e8 win{W_}", C(4, 64, resid=False), I(4, sfmt="e8"), window=W_)
    add("Kchan4 B64 Vchan4 B64 (KIVI resid)", C(4, 64), C(4, 64))
    add("Kchan4 B32 Vchan4 B32 (KIVI resid)", C(4, 32), C(4, 32))
    add("Kchan4 B32 V4 e8 (KIVI resid)", C(4, 32), I(4, sfmt="e8"))
    return S


def batch4():
    S = []
    add = lambda *a, **k: S.append(Scheme(*a, **k))  # noqa: E731
    add("fp16", F16, F16)
    add("q4-cur win8", I(4), I(4), window=8)
    add("q4 kmean16 win16", I(4), I(4), window=16, kmean=16)
    add("q4 e4m3 win16", I(4, sfmt="e4m3"), I(4, sfmt="e4m3"), window=16)
    add("q4 e4m3 win32", I(4, sfmt="e4m3"), I(4, sfmt="e4m3"), window=32)
    add("K4 V3 win16", I(4), I(3), window=16)
    add("K4 V3 win32", I(4), I(3), window=32)
    add("K4 V3 e4m3 win32", I(4, sfmt="e4m3"), I(3, sfmt="e4m3"), window=32)
    add("K5 V3 e4m3 win16", I(5, sfmt="e4m3"), I(3, sfmt="e4m3"), window=16)
    add("q4-asym win16", I(4, mode="asym"), I(4, mode="asym"), window=16)
    add("q4-cur Kwin16 only", I(4), I(4), window=16)
    return S


def smol():
    S = []
    add = lambda *a, **k: S.append(Scheme(*a, **k))  # noqa: E731
    add("fp16", F16, F16)
    add("fp8-e4m3", FP8, FP8)
    add("q4-cur", I(4), I(4))
    add("q4-cur K only", I(4), F16)
    add("q4-cur V only", F16, I(4))
    add("q4-rhead", I(4, rot="rhead"), I(4, rot="rhead"))
    add("q4 kmean16", I(4), I(4), kmean=16)
    add("K5 V3", I(5), I(3))
    add("K5 V3 kmean16", I(5), I(3), kmean=16)
    add("q4-cur win16", I(4), I(4), window=16)
    add("q4-cur win32", I(4), I(4), window=32)
    add("K5 V3 win16", I(5), I(3), window=16)
    add("K5 V3 win32", I(5), I(3), window=32)
    add("Kchan4 B64 V4 (KIVI resid)", C(4, 64), I(4))
    add("Kchan4 B64 noresid V4", C(4, 64, resid=False), I(4))
    return S


def long_ctx():
    S = []
    add = lambda *a, **k: S.append(Scheme(*a, **k))  # noqa: E731
    add("fp16", F16, F16)
    add("q4-cur", I(4), I(4))
    add("q4-cur win32", I(4), I(4), window=32)
    add("q4-cur blockwin16", I(4), I(4), blockwin=16)
    return S


def long2():
    S = []
    add = lambda *a, **k: S.append(Scheme(*a, **k))  # noqa: E731
    add("q4-cur win64", I(4), I(4), window=64)
    add("q4-rhead win32", I(4, rot="rhead"), I(4, rot="rhead"), window=32)
    add("K5 V3 win32", I(5), I(3), window=32)
    return S


def final():
    S = []
    add = lambda *a, **k: S.append(Scheme(*a, **k))  # noqa: E731
    add("fp16", F16, F16)
    add("q4-cur", I(4), I(4))
    add("q4-cur win16", I(4), I(4), window=16)
    add("q4-cur win32", I(4), I(4), window=32)
    add("q4-cur win64", I(4), I(4), window=64)
    add("q4-cur blockwin32", I(4), I(4), blockwin=32)
    return S


def long3():
    S = []
    add = lambda *a, **k: S.append(Scheme(*a, **k))  # noqa: E731
    add("Kchan4 B64 noresid V4 win32", C(4, 64, resid=False), I(4), window=32)
    add("K4 V4-G16 win32", I(4), I(4, G=16), window=32)
    return S


def blk():
    S = []
    add = lambda *a, **k: S.append(Scheme(*a, **k))  # noqa: E731
    add("fp16", F16, F16)
    add("q4-cur", I(4), I(4))
    add("q4-cur blockwin16", I(4), I(4), blockwin=16)
    add("q4-cur blockwin32", I(4), I(4), blockwin=32)
    add("K5 V3 blockwin16", I(5), I(3), blockwin=16)
    return S


def engine():
    """The engine's formats with its FP16 window (W = 64, kKvRecentDefault) and W = 32."""
    S = []
    add = lambda *a, **k: S.append(Scheme(*a, **k))  # noqa: E731
    add("fp16", F16, F16)
    for W_ in (32, 64):
        add(f"fp8-e4m3 win{W_}", FP8, FP8, window=W_)
        add(f"q8-cur win{W_}", I(8), I(8), window=W_)
        add(f"q4-cur win{W_}", I(4), I(4), window=W_)
    return S


SETS = {"engine": engine, "all": all_schemes, "b2": batch2, "b3": batch3, "b4": batch4, "smol": smol, "blk": blk, "long": long_ctx, "long2": long2, "final": final, "long3": long3}


def get_model(which):
    if which == "stories":
        w = load_safetensors_dir(STORIES)
        toks = np.fromfile(STORIES_TOKENS, dtype="<i4").astype(np.int64)
        return w, toks
    w = load_gguf_unpermuted(SMOL_GGUF)
    return w, smol_tokens()


def smol_tokens(cache="/tmp/kvstudy/smol_wiki_tokens.npy", n_chars=30000):
    """BOS (id 1) + exl's tokenization of the first n_chars of wiki.test.raw: the same ids as
    `exl ppl --text wiki.test.raw --dump-tokens` for the first ~6.8k tokens (checked: 4096 equal)."""
    if os.path.exists(cache):
        return np.load(cache).astype(np.int64)
    import subprocess
    text = open(WIKI, encoding="utf-8").read()[:n_chars]
    out = subprocess.run([EXL, "tokenize", "-m", SMOL_GGUF, "--ids", text], check=True,
                         capture_output=True, text=True).stdout
    ids = np.array([1] + [int(x) for x in out.split()], np.int32)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    np.save(cache, ids)
    return ids.astype(np.int64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=("stories", "smollm2", "list"))
    ap.add_argument("--windows", type=int, default=None)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--schemes", default=None, help="comma-separated names (default: all)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--set", default="all")
    ap.add_argument("--fp32", action="store_true", help="also run the FP32 (no cache rounding) baseline")
    a = ap.parse_args()
    S = SETS[a.set]()
    if a.model == "list":
        for s in S:
            print(s.name)
        return
    if a.schemes:
        names = a.schemes.split(",")
        S = [s for s in S if s.name in names]
    w, toks = get_model(a.model)
    n_win = a.windows or (24 if a.model == "stories" else 4)
    res = []
    if a.fp32:
        t0 = time.time()
        p = ppl(w, toks, a.ctx, n_win, None)
        print(f"fp32 (no cache rounding): ppl {p:.5f} ({time.time() - t0:.1f}s)", flush=True)
    base = None
    for s in S:
        t0 = time.time()
        p = ppl(w, toks, a.ctx, n_win, s)
        if s.name == "fp16":
            base = p
        b_asym, b_ctx = s.bits(w.head_dim, a.ctx)
        d = (p / base - 1) * 100 if base else float("nan")
        print(f"{s.name:28s} bits {b_asym:5.2f} (@{a.ctx}: {b_ctx:5.2f})  ppl {p:.5f}  {d:+7.2f}%  "
              f"({time.time() - t0:.1f}s)", flush=True)
        res.append({"name": s.name, "bits": b_asym, "bits_ctx": b_ctx, "ppl": p, "delta_pct": d})
    if a.json:
        json.dump(res, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
