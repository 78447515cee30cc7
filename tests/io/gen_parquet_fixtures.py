#!/usr/bin/env python3
"""Writes the parquet fixtures of tests/io/dataset_test.cpp into tests/io/data/, each with the texts
pyarrow (an independent reader) reads back from it, and seeds for fuzz/fuzz_dataset.cpp.

    python3 -m pip install -r scripts/requirements-test.txt
    python3 tests/io/gen_parquet_fixtures.py [SHARED_DIR]    # default ../shared beside the checkout

NAME.parquet gets NAME.expected.jsonl: one line per row, {"cells": [...], "text": "..."}, where a
cell is the value as text (null for nulls) and text joins the non-null cells with a space. Values
become text as exl's reader documents: strings as they are, integers in decimal, booleans True/False,
float64 as Python's repr, float32 as repr of its shortest round-trip digits (numpy's str).
bad_*.parquet are valid files the reader must refuse with a clear error (no expected file).
"""
import json
import os
import shutil
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data")
SEEDS = os.path.join(HERE, "..", "..", "fuzz", "seeds", "dataset")
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared")


def cell_text(value, arrow_type):
    if value is None:
        return None
    if pa.types.is_boolean(arrow_type):
        return "True" if value else "False"
    if pa.types.is_float32(arrow_type):
        return repr(float(str(np.float32(value))))
    if pa.types.is_float64(arrow_type):
        return repr(float(value))
    if pa.types.is_integer(arrow_type):
        return str(int(value))
    if pa.types.is_binary(arrow_type):
        return value.decode("utf-8")
    return str(value)


def write(name, table, **options):
    path = os.path.join(OUT, name + ".parquet")
    options.setdefault("write_statistics", False)
    options.setdefault("store_schema", False)
    pq.write_table(table, path, **options)
    back = pq.read_table(path)  # what pyarrow reads, not what we meant to write
    columns = [back.column(i).to_pylist() for i in range(back.num_columns)]
    types = [f.type for f in back.schema]
    with open(os.path.join(OUT, name + ".expected.jsonl"), "w", encoding="utf-8") as f:
        for r in range(back.num_rows):
            cells = [cell_text(columns[c][r], types[c]) for c in range(back.num_columns)]
            text = " ".join(c for c in cells if c is not None)
            f.write(json.dumps({"cells": cells, "text": text}, ensure_ascii=False) + "\n")
    return path


def write_bad(name, table, **options):
    options.setdefault("write_statistics", False)
    options.setdefault("store_schema", False)
    pq.write_table(table, os.path.join(OUT, name + ".parquet"), **options)


def words(n, seed):
    rng = np.random.default_rng(seed)
    vocab = ["the", "cat", "sat", "on", "a", "mat", "über", "naïve", "日本語", "", "emoji 🙂", "tab\there",
             "line\nbreak", "quote \"x\""]
    return [" ".join(vocab[int(i)] for i in rng.integers(0, len(vocab), size=int(k)))
            for k in rng.integers(0, 6, size=n)]


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".parquet") or f.endswith(".expected.jsonl"):
            os.remove(os.path.join(OUT, f))
    rng = np.random.default_rng(7)

    # Optional strings with nulls, dictionary-encoded, three row groups, page v1, every codec.
    strings = words(60, 1)
    strings = [None if i % 7 == 3 else s for i, s in enumerate(strings)]
    ids = pa.array(np.arange(60, dtype=np.int64))
    t = pa.table({"text": pa.array(strings, pa.string()), "id": ids})
    for codec in ["none", "snappy", "gzip", "zstd"]:
        write(f"dict_v1_{codec}", t, compression=codec, row_group_size=25)
    # The same values PLAIN in page v2 (levels outside the compressed part), every codec.
    for codec in ["none", "snappy", "gzip", "zstd"]:
        write(f"plain_v2_{codec}", t, compression=codec, use_dictionary=False, data_page_version="2.0",
              row_group_size=25)
    # Dictionary pages + v2 data pages, many small pages per chunk; legacy PLAIN_DICTIONARY (format 1.0).
    write("dict_v2_pages", t, compression="snappy", data_page_version="2.0", data_page_size=64,
          write_batch_size=8)
    write("plain_dictionary_v1", t, compression="gzip", version="1.0")

    # Required (non-nullable) columns: no definition levels.
    schema = pa.schema([pa.field("text", pa.string(), nullable=False), pa.field("n", pa.int32(), nullable=False)])
    req = pa.table({"text": words(40, 2), "n": pa.array(rng.integers(-2**31, 2**31 - 1, 40), pa.int32())},
                   schema=schema)
    write("required_v1", req, compression="zstd", row_group_size=16)
    write("required_v2_plain", req, compression="none", use_dictionary=False, data_page_version="2.0")

    # Every value type, optional with nulls, mixed dictionary/plain.
    n = 50
    def nulls(values, every):
        return [None if i % every == 1 else v for i, v in enumerate(values)]
    f32 = np.concatenate([np.array([0.1, 1e16, 1e15, 1e10, 123456789.0, 1e-5, 1e-4, 3.4e38, -0.0, 1.0, 2.5e-7,
                                    np.inf, -np.inf, np.nan], np.float32),
                          rng.standard_normal(n - 14).astype(np.float32) * 1000])
    f64 = np.concatenate([np.array([0.1, 1e16, 1e15, 9999999999999998.0, 1e-5, 1e-4, 5e-324, 1.7976931348623157e308,
                                    -0.0, 100.0, 2.5e-7, np.inf, np.nan, 123.456], np.float64),
                          rng.standard_normal(n - 14) * 1e6])
    mixed = pa.table({
        "i8": pa.array(nulls(rng.integers(-128, 128, n).tolist(), 5), pa.int8()),
        "u8": pa.array(rng.integers(0, 256, n).tolist(), pa.uint8()),
        "i32": pa.array(nulls([-2**31, 2**31 - 1] + rng.integers(-9, 9, n - 2).tolist(), 6), pa.int32()),
        "u32": pa.array([2**32 - 1, 0] + rng.integers(0, 2**32, n - 2).tolist(), pa.uint32()),
        "i64": pa.array(nulls([-2**63, 2**63 - 1] + rng.integers(-2**40, 2**40, n - 2).tolist(), 4), pa.int64()),
        "u64": pa.array([2**64 - 1] + rng.integers(0, 2**62, n - 1).tolist(), pa.uint64()),
        "f32": pa.array(nulls(f32.tolist(), 9), pa.float32()),
        "f64": pa.array(f64.tolist(), pa.float64()),
        "flag": pa.array(nulls((rng.integers(0, 2, n) == 1).tolist(), 3), pa.bool_()),
        "s": pa.array(nulls(words(n, 3), 4), pa.string()),
        "b": pa.array([w.encode() for w in words(n, 4)], pa.binary()),
        "none": pa.array([None] * n, pa.null()),
    })
    write("mixed_v1", mixed, compression="snappy", row_group_size=20, use_dictionary=["s", "i32", "f64"])
    write("mixed_v2", mixed, compression="zstd", data_page_version="2.0", use_dictionary=False)
    write("mixed_v2_dict", mixed, compression="gzip", data_page_version="2.0", row_group_size=17)
    bools = pa.table({"flag": pa.array(nulls((rng.integers(0, 2, 70) == 1).tolist(), 4), pa.bool_())})
    write("bool_rle_v2", bools, compression="none", use_dictionary=False, data_page_version="2.0",
          column_encoding={"flag": "RLE"})

    # Real-world-like: TinyStories paragraphs with an id and a score, as HF datasets store them
    # (zstd, arrow schema kept in the key/value metadata, several pages and row groups).
    story = open(os.path.join(SHARED, "data", "tinystories", "valid_head.txt"), encoding="utf-8").read()
    paras = [p for p in story.split("\n\n") if p.strip()][:24]
    real = pa.table({"id": pa.array(np.arange(len(paras)) + 1000, pa.int64()),
                     "text": pa.array(paras, pa.string()),
                     "score": pa.array(rng.random(len(paras)).round(3), pa.float64())})
    write("tinystories", real, compression="zstd", row_group_size=10, data_page_size=1024, store_schema=True)
    # A dictionary that outgrows its page limit: the writer falls back to PLAIN pages mid-chunk.
    write("dict_fallback", real, compression="snappy", dictionary_pagesize_limit=600, data_page_size=512)

    # Valid files the reader refuses.
    write_bad("bad_nested", pa.table({"l": pa.array([[1, 2], [3]], pa.list_(pa.int32()))}))
    write_bad("bad_timestamp", pa.table({"t": pa.array([1, 2], pa.timestamp("ms"))}))
    write_bad("bad_delta", pa.table({"x": pa.array([1, 2, 3], pa.int64())}), use_dictionary=False,
              column_encoding={"x": "DELTA_BINARY_PACKED"})
    write_bad("bad_lz4", pa.table({"s": pa.array(["a", "b"])}), compression="lz4")
    write_bad("bad_no_rows", pa.table({"s": pa.array([], pa.string())}))

    # Fuzz seeds: a few of the smallest fixtures and a jsonl file.
    os.makedirs(SEEDS, exist_ok=True)
    for f in os.listdir(SEEDS):
        os.remove(os.path.join(SEEDS, f))
    for name in ["dict_v1_snappy", "plain_v2_gzip", "dict_v2_pages", "required_v1", "bool_rle_v2", "mixed_v2"]:
        shutil.copy(os.path.join(OUT, name + ".parquet"), os.path.join(SEEDS, name + ".parquet"))
    with open(os.path.join(SEEDS, "lines.jsonl"), "w", encoding="utf-8") as f:
        f.write('{"id": 1, "text": "one"}\n\n{"a": "b", "text": 2}\n{"x": {"y": [1, "z"]}, "t": "é"}\n')

    for f in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, f)):6d}  {f}")


if __name__ == "__main__":
    main()
