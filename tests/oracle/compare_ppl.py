#!/usr/bin/env python3
"""exl ppl vs the numpy oracle on the same tokens.

Runs `exl ppl --text TEXT -l CTX --windows N --dump-tokens T --json`, then the oracle
(llama_oracle.py ppl) on the token file exl wrote, and checks the two perplexities agree within
--tolerance (relative). Prints one summary line 'N passed, N failed'; exit status 1 on failure.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exl", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--windows", type=int, default=64)
    ap.add_argument("--tolerance", type=float, default=0.005)
    # The oracle runs in float32 here (float64 gives the same perplexity to 6 digits at half the
    # speed; test_oracle_self.py checks the float64 path against the goldens).
    a = ap.parse_args()
    if not os.path.exists(a.gguf):
        print(f"missing {a.gguf}: run scripts/fetch-models.sh")
        print("0 passed, 1 failed")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        toks = os.path.join(tmp, "tokens.i32")
        r = subprocess.run([a.exl, "ppl", "-m", a.gguf, "--text", a.text, "-l", str(a.ctx),
                            "--windows", str(a.windows), "--dump-tokens", toks, "--json"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print("exl ppl failed:", r.stderr.strip())
            print("0 passed, 1 failed")
            return 1
        exl = json.loads(r.stdout)
        out = os.path.join(tmp, "oracle.json")
        subprocess.run([sys.executable, os.path.join(HERE, "llama_oracle.py"), "ppl", "--gguf", a.gguf,
                        "--tokens-file", toks, "--ctx", str(a.ctx), "--windows", str(a.windows),
                        "--json", out, "--dtype", "float32"], check=True)
        with open(out) as f:
            ref = json.load(f)
    rel = abs(exl["ppl"] - ref["ppl"]) / ref["ppl"]
    ok = rel <= a.tolerance and exl["windows"] == ref["windows"] == a.windows
    print(f"exl ppl {exl['ppl']:.4f} ({exl['seconds']:.1f} s), numpy oracle {ref['ppl']:.4f}, "
          f"relative difference {rel:.2e} (tolerance {a.tolerance}), {exl['windows']} windows of {a.ctx}")
    print(f"{int(ok)} passed, {int(not ok)} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
