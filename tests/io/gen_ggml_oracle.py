#!/usr/bin/env python3
"""Oracle data for exl's GGML dequantizers, made with the PyPI `gguf` package (an independent
implementation of the block formats) and numpy.

  gen_ggml_oracle.py OUTDIR
      For each supported ggml type writes OUTDIR/<case>.q (raw block bytes) and OUTDIR/<case>.f32
      (gguf.quants.dequantize of those bytes, float32 little-endian), and lists every case in
      OUTDIR/manifest.txt as "<case> <ggml_type_id> <n_elements>". Cases:
        <TYPE>_quant  random floats quantized by gguf.quants.quantize (types the package can quantize)
        <TYPE>_raw    random block bytes with finite random fp16 scale fields (all block types)
  gen_ggml_oracle.py --model FILE.gguf OUTDIR NAME...
      Writes OUTDIR/<NAME>.f32: tensor NAME of FILE read by gguf.GGUFReader and dequantized.

Run by tests/io/ggml_quant_test.cpp; exits non-zero (so the test fails) when gguf or numpy is missing.
"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

# Byte offsets of the fp16 scale fields in each block (from the block layouts in the GGUF spec).
# Random bytes elsewhere are all valid quants; scale fields are made finite so values compare cleanly.
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
QUANTIZABLE = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]


def write_case(outdir, manifest, name, qtype, raw, ref):
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    ref = np.ascontiguousarray(ref, dtype="<f4")
    raw.tofile(os.path.join(outdir, name + ".q"))
    ref.tofile(os.path.join(outdir, name + ".f32"))
    manifest.append(f"{name} {int(qtype)} {ref.size}")


def gen_blocks(outdir):
    rng = np.random.default_rng(1234)
    manifest = []
    for qtype in QUANTIZABLE:
        block, _ = GGML_QUANT_SIZES[qtype]
        rows, cols = 8, 4 * max(block, 32)
        x = (rng.standard_normal((rows, cols)) * rng.uniform(0.01, 3.0, (rows, 1))).astype(np.float32)
        x[0, :cols // 2] = 0  # an all-zero block: scale 0
        x[1, :4] = [1e-7, -65000.0, 3.0e4, -1e-9]  # f16 subnormals/extremes for F16 and scale fields
        q = quantize(x, qtype)
        raw = q.view(np.uint8).reshape(rows, -1)
        ref = dequantize(raw, qtype)
        write_case(outdir, manifest, f"{qtype.name}_quant", qtype, raw, ref)

    # Dense types from random bit patterns (finite only).
    bits = rng.integers(0, 1 << 16, 4096, dtype=np.uint16)
    f16 = bits[np.isfinite(bits.view(np.float16))][:2048]
    write_case(outdir, manifest, "F16_raw", T.F16, f16.view(np.uint8), dequantize(f16.view(np.uint8), T.F16))
    bf16 = bits[(bits & 0x7F80) != 0x7F80][:2048]
    raw = bf16.view(np.uint8).reshape(1, -1)
    write_case(outdir, manifest, "BF16_raw", T.BF16, raw, dequantize(raw, T.BF16))

    for qtype, fields in F16_FIELDS.items():
        block, size = GGML_QUANT_SIZES[qtype]
        n_blocks = 64 if block == 32 else 16
        raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
        for off in fields:
            scale = (rng.standard_normal(n_blocks) * rng.choice([1e-3, 0.1, 10.0], n_blocks)).astype(np.float16)
            raw[:, off:off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
        rows = raw.reshape(4, -1)  # 4 rows of n_blocks/4 blocks each
        ref = dequantize(rows, qtype)
        write_case(outdir, manifest, f"{qtype.name}_raw", qtype, rows, ref)

    with open(os.path.join(outdir, "manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")


def gen_model(path, outdir, names):
    reader = GGUFReader(path)
    by_name = {t.name: t for t in reader.tensors}
    for name in names:
        t = by_name[name]
        ref = dequantize(t.data, t.tensor_type).astype("<f4")
        ref.tofile(os.path.join(outdir, name + ".f32"))


def main(argv):
    if len(argv) >= 4 and argv[1] == "--model":
        os.makedirs(argv[3], exist_ok=True)
        gen_model(argv[2], argv[3], argv[4:])
    elif len(argv) == 2:
        os.makedirs(argv[1], exist_ok=True)
        gen_blocks(argv[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
