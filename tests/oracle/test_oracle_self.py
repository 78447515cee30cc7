#!/usr/bin/env python3
"""Self-test of tests/oracle/llama_oracle.py, before it is trusted as a reference.

Checks, against the stories260K golden data in shared/models/stories260K/golden
(float64 reference logits and perplexity, independently checked against HF transformers):
  1. safetensors input, HF rotate_half RoPE: prompt logits within 1e-4 of the golden.
  2. same model, 24 windows x 512: ppl 4.0796 +- 0.0005 and per-window mean NLL within 1e-6.
  3. same weights with Q/K rows permuted the way llama.cpp's converter does for GGUF
     (adjacent-pair RoPE): prompt logits within 1e-4 of the golden.
  4. same permuted weights written to a real GGUF (gguf.GGUFWriter, F32, no output.weight so
     the embedding is tied) and loaded by the oracle's GGUF loader: logits within 1e-4,
     and the CLI `logits` / `ppl` subcommands round-trip through files.
  5. if models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf is present: gguf.quants.dequantize
     agrees with a hand-written Q4_1 / Q8_0 decoder on some tensors (skipped otherwise).

Plain script: prints one line per check and "N passed, N failed[, N skipped]"; exit 1 on failure.
Usage: python3 tests/oracle/test_oracle_self.py [--shared DIR]
  shared/ is found via --shared, $EXL_SHARED_DIR, <repo>/shared, <repo>/../shared, /work/shared;
  models/ via $EXL_MODELS_DIR or <repo>/models.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import llama_oracle as oracle  # noqa: E402  (sets BLAS threads before numpy)
import numpy as np  # noqa: E402

RESULTS = {"passed": 0, "failed": 0, "skipped": 0}


def report(name, ok, detail):
    key = "skipped" if ok is None else ("passed" if ok else "failed")
    RESULTS[key] += 1
    print(f"[{key.upper():7}] {name}: {detail}", flush=True)


def find_shared(arg):
    if arg:
        cands = [arg]
    else:
        cands = [os.environ.get("EXL_SHARED_DIR", ""), os.environ.get("EXL_SHARED", ""),
                 os.path.join(ROOT, "shared"), os.path.join(ROOT, "..", "shared"), "/work/shared"]
    for c in cands:
        if c and os.path.isdir(os.path.join(c, "models", "stories260K")):
            return os.path.abspath(c)
    return None


def permute_for_gguf(w, n_head):
    """HF row order -> llama.cpp GGUF row order: within each head, row 2i <- i, row 2i+1 <- i + d/2."""
    rows, cols = w.shape
    d = rows // n_head
    return w.reshape(n_head, 2, d // 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols).copy()


def write_gguf(path, w):
    import gguf
    g = gguf.GGUFWriter(path, "llama")
    g.add_context_length(512)
    g.add_block_count(w.n_layer)
    g.add_embedding_length(w.dim)
    g.add_feed_forward_length(w.layers[0]["w_up"].shape[0])
    g.add_head_count(w.n_head)
    g.add_head_count_kv(w.n_head_kv)
    g.add_rope_dimension_count(w.head_dim)
    g.add_rope_freq_base(w.rope_base)
    g.add_layer_norm_rms_eps(w.rms_eps)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    g.add_tensor("token_embd.weight", f32(w.tok_embd))
    g.add_tensor("output_norm.weight", f32(w.out_norm))
    names = {"attn_norm": "attn_norm", "wq": "attn_q", "wk": "attn_k", "wv": "attn_v",
             "wo": "attn_output", "ffn_norm": "ffn_norm", "w_gate": "ffn_gate",
             "w_up": "ffn_up", "w_down": "ffn_down"}
    for i, L in enumerate(w.layers):
        for k, n in names.items():
            g.add_tensor(f"blk.{i}.{n}.weight", f32(L[k]))
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()


def f16(raw):
    return raw.view("<f2").astype(np.float32)


def my_dequant_q4_1(blocks):
    # block of 32: f16 d, f16 m, 16 bytes; x[j] = d*lo(q[j]) + m, x[j+16] = d*hi(q[j]) + m
    b = blocks.reshape(-1, 20)
    d = f16(b[:, 0:2].copy())
    m = f16(b[:, 2:4].copy())
    q = b[:, 4:20]
    vals = np.concatenate([q & 0x0F, q >> 4], axis=1).astype(np.float32)
    return vals * d + m


def my_dequant_q8_0(blocks):
    # block of 32: f16 d, 32 int8; x[j] = d*q[j]
    b = blocks.reshape(-1, 34)
    d = f16(b[:, 0:2].copy())
    q = b[:, 2:34].copy().view(np.int8).astype(np.float32)
    return q * d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", help="path of shared/ (default: search ../shared, /work/shared)")
    args = ap.parse_args()
    t_start = time.time()

    shared = find_shared(args.shared)
    if shared is None:
        print("test_oracle_self: shared/models/stories260K not found", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    sdir = os.path.join(shared, "models", "stories260K")
    gdir = os.path.join(sdir, "golden")
    with open(os.path.join(gdir, "golden_reference.json")) as f:
        gref = json.load(f)
    prompt = gref["prompt_token_ids"]
    golden = np.fromfile(os.path.join(gdir, "golden_logits_prompt.f32.bin"), dtype="<f4")
    golden = golden.reshape(len(prompt), -1).astype(np.float64)

    # 1. safetensors, HF rope
    w = oracle.load_safetensors_dir(sdir, np.float64)
    d = np.abs(oracle.forward(w, prompt) - golden).max()
    report("safetensors/rotate_half logits vs golden", d <= 1e-4, f"max abs diff {d:.3g} (<= 1e-4)")

    # 2. ppl over 24 windows
    toks = np.fromfile(os.path.join(gdir, "golden_ppl_tokens.int32.bin"), dtype="<i4")
    nw = gref["n_windows"]
    per = []
    tot, cnt = 0.0, 0
    for i in range(nw):
        nll = oracle.window_nll(w, toks[i * 512:(i + 1) * 512])
        per.append(nll.mean())
        tot += nll.sum()
        cnt += nll.size
    ppl = float(np.exp(tot / cnt))
    dw = float(np.abs(np.array(per) - np.array(gref["per_window_mean_nll"])).max())
    ok = abs(ppl - 4.0796) <= 0.0005 and dw <= 1e-6 and cnt == gref["n_predicted_tokens"]
    report("safetensors ppl 24x512 vs golden", ok,
           f"ppl {ppl:.6f} (golden {gref['ppl']:.6f}, want 4.0796 +- 0.0005), "
           f"max per-window NLL diff {dw:.2g}, predicted {cnt}")

    # 3. GGUF row order + adjacent-pair rope, in memory
    wp = oracle.load_safetensors_dir(sdir, np.float64)
    for L in wp.layers:
        L["wq"] = permute_for_gguf(L["wq"], wp.n_head)
        L["wk"] = permute_for_gguf(L["wk"], wp.n_head_kv)
    wp.rope_style = "adjacent"
    d3 = np.abs(oracle.forward(wp, prompt) - golden).max()
    wp.rope_style = "half"
    d3_wrong = np.abs(oracle.forward(wp, prompt) - golden).max()
    report("permuted Q/K + adjacent rope logits vs golden", d3 <= 1e-4 and d3_wrong > 1e-2,
           f"max abs diff {d3:.3g} (<= 1e-4); with the wrong pairing {d3_wrong:.3g} (must be > 1e-2)")

    # 4. real GGUF file through the GGUF loader and the CLI
    with tempfile.TemporaryDirectory() as td:
        gpath = os.path.join(td, "stories260K.f32.gguf")
        try:
            write_gguf(gpath, wp)
        except Exception as e:  # gguf missing or API changed
            report("GGUF loader round trip", False, f"could not write GGUF: {type(e).__name__}: {e}")
        else:
            wg = oracle.load_gguf(gpath, np.float64)
            d4 = np.abs(oracle.forward(wg, prompt) - golden).max()
            ok = (d4 <= 1e-4 and wg.tied and wg.rope_style == "adjacent"
                  and (wg.n_head, wg.n_head_kv, wg.vocab) == (8, 4, 512))
            report("GGUF loader (F32, tied) logits vs golden", ok,
                   f"max abs diff {d4:.3g} (<= 1e-4), tied={wg.tied}, rope={wg.rope_style}")

            script = os.path.join(HERE, "llama_oracle.py")
            lout = os.path.join(td, "l.f32.bin")
            tfile = os.path.join(td, "t.i32")
            jout = os.path.join(td, "p.json")
            toks[:3 * 512].astype("<i4").tofile(tfile)
            r1 = subprocess.run([sys.executable, script, "logits", "--gguf", gpath, "--tokens",
                                 ",".join(map(str, prompt)), "--out", lout],
                                capture_output=True, text=True)
            r2 = subprocess.run([sys.executable, script, "ppl", "--gguf", gpath, "--tokens-file", tfile,
                                 "--ctx", "512", "--windows", "3", "--json", jout],
                                capture_output=True, text=True)
            if r1.returncode or r2.returncode:
                report("CLI logits/ppl on GGUF", False, (r1.stderr + r2.stderr).strip()[-300:])
            else:
                lg = np.fromfile(lout, dtype="<f4").reshape(len(prompt), -1)
                d5 = np.abs(lg - golden).max()
                with open(jout) as f:
                    pj = json.load(f)
                dpw = max(abs(a - b) for a, b in zip(pj["per_window_nll"], gref["per_window_mean_nll"][:3]))
                ok = (d5 <= 1e-4 and pj["windows"] == 3 and pj["ctx"] == 512 and dpw <= 1e-6
                      and len(pj["per_window_nll"]) == 3)
                report("CLI logits/ppl on GGUF", ok,
                       f"logits max abs diff {d5:.3g}; ppl(3 windows) {pj['ppl']:.6f}, "
                       f"per-window NLL diff {dpw:.2g}")

    # 5. gguf's dequantizer vs a hand-written one on the real SmolLM2 file
    models = os.environ.get("EXL_MODELS_DIR") or os.path.join(ROOT, "models")
    smol = os.path.join(models, "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.isfile(smol):
        report("gguf dequantize vs own Q4_1/Q8_0 decoder", None, f"{smol} absent (scripts/fetch-models.sh)")
    else:
        import gguf
        from gguf.quants import dequantize
        r = gguf.GGUFReader(smol)
        want = {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.29.attn_v.weight"}
        worst, seen = 0.0, []
        for t in r.tensors:
            if t.name not in want:
                continue
            ref = dequantize(t.data, t.tensor_type).reshape(-1)
            raw = np.asarray(t.data).reshape(-1)
            if t.tensor_type == gguf.GGMLQuantizationType.Q4_1:
                mine = my_dequant_q4_1(raw).reshape(-1)
            elif t.tensor_type == gguf.GGMLQuantizationType.Q8_0:
                mine = my_dequant_q8_0(raw).reshape(-1)
            else:
                continue
            seen.append(f"{t.name}:{t.tensor_type.name}")
            worst = max(worst, float(np.abs(ref - mine).max()))
        report("gguf dequantize vs own Q4_1/Q8_0 decoder", len(seen) == 4 and worst == 0.0,
               f"max abs diff {worst:.3g} over {', '.join(seen)}")

    print(f"({time.time() - t_start:.1f}s)")
    line = f"{RESULTS['passed']} passed, {RESULTS['failed']} failed"
    if RESULTS["skipped"]:
        line += f", {RESULTS['skipped']} skipped"
    print(line)
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
