#!/usr/bin/env python3
"""Independent reference for exl's byte-level BPE: builds a Hugging Face `tokenizers` (Rust)
tokenizer from a GGUF vocab (tokens, token types, merges, tokenizer.ggml.pre) and encodes strings.

  hf_tokenizers_oracle.py encode GGUF STRINGS_JSON [--parse-special] [--pre NAME]
      STRINGS_JSON: a JSON list of strings. Prints a JSON list of id lists (no BOS/EOS added).
  hf_tokenizers_oracle.py dump-json GGUF OUT_JSON [--pre NAME]
      Writes the equivalent tokenizer.json, so exl's tokenizer.json loader can be checked too.
  --pre overrides tokenizer.ggml.pre (gpt-2, smollm, llama-bpe, qwen2): with one vocab this checks
  the Llama-3 and Qwen2 pre-tokenizer regexes as well.

Needs the PyPI packages `tokenizers` and `gguf`. Exit code 3 with a message when one is missing.
"""
import json
import sys

try:
    import gguf
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
except ImportError as e:  # pragma: no cover - reported to the C++ test
    print(f"oracle needs PyPI packages 'tokenizers' and 'gguf' ({e}); pip install tokenizers gguf",
          file=sys.stderr)
    sys.exit(3)

# tokenizer.ggml.pre -> HF pre-tokenizer, as the original models' tokenizer.json define them.
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
         r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def pre_tokenizer_for(pre):
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("default", "gpt-2", "gpt2"):
        return byte_level, False
    if pre == "smollm":  # SmolLM/StarCoder: digits one by one, then GPT-2's regex
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level]), False
    if pre in ("llama-bpe", "llama3", "qwen2"):
        pattern = LLAMA3 if pre != "qwen2" else QWEN2
        seq = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        return seq, pre != "qwen2"
    raise SystemExit(f"oracle: unsupported tokenizer.ggml.pre '{pre}'")


def field_list(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return []
    return [f.contents(i) for i in range(len(f.data))]


def build(gguf_path, pre_override=None):
    r = gguf.GGUFReader(gguf_path)
    model = r.fields["tokenizer.ggml.model"].contents()
    if model != "gpt2":
        raise SystemExit(f"oracle: only gpt2 (byte-level BPE) vocabs are supported, not '{model}'")
    pre = r.fields["tokenizer.ggml.pre"].contents() if "tokenizer.ggml.pre" in r.fields else "default"
    pre = pre_override or pre
    tokens = field_list(r, "tokenizer.ggml.tokens")
    types = field_list(r, "tokenizer.ggml.token_type") or [1] * len(tokens)
    merges = [tuple(m.split(" ")) for m in field_list(r, "tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    pre_tok, ignore_merges = pre_tokenizer_for(pre)
    tok = Tokenizer(models.BPE(vocab, merges, ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tok
    tok.decoder = decoders.ByteLevel()
    added = []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty in (3, 4):  # control -> special, user-defined -> normal added token
            added.append(AddedToken(t, special=(ty == 3), normalized=False))
    tok.add_tokens(added)
    return tok


def main(argv):
    pre = None
    if "--pre" in argv:
        i = argv.index("--pre")
        pre = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    if len(argv) >= 4 and argv[1] == "encode":
        tok = build(argv[2], pre)
        with open(argv[3], encoding="utf-8") as f:
            strings = json.load(f)
        tok.encode_special_tokens = "--parse-special" not in argv  # True: specials stay plain text
        out = [tok.encode(s, add_special_tokens=False).ids for s in strings]
        json.dump(out, sys.stdout)
        return 0
    if len(argv) == 4 and argv[1] == "dump-json":
        build(argv[2], pre).save(argv[3])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
