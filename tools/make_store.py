#!/usr/bin/env python3
"""Writes a synthetic activation store (core/activation_store.h's layout) of any width, for
benchmarks that need shapes no bundled model has (e.g. GPT-3's 12,288-wide residual stream).

Each row is a sparse sum of a few of `features` random unit directions with exponential
magnitudes, plus small Gaussian noise, so a sparse autoencoder has something to find. Needs only
NumPy (Debian's /usr/bin/python3 has it).

Usage: tools/make_store.py OUT --d 12288 --rows 16384 [--hook blocks.0.hook_resid_pre]
       [--shard-rows 2048] [--dtype float16] [--features 4096] [--active 16] [--seed 0]
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

DTYPES = {"float32": (np.float32, "F32"), "float16": (np.float16, "F16")}


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        code = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64",
                np.dtype(np.int32): "I32"}[array.dtype]
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--d", type=int, required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--hook", default="blocks.0.hook_resid_pre")
    p.add_argument("--shard-rows", type=int, default=2048)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float16")
    p.add_argument("--features", type=int, default=4096)
    p.add_argument("--active", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.d <= 0 or a.rows <= 0 or a.shard_rows <= 0 or a.features <= 0 or not 0 < a.active <= a.features:
        sys.exit("make_store: --d, --rows, --shard-rows and --features must be positive, --active in 1..features")
    folder = os.path.join(a.out, a.hook)
    if os.path.exists(os.path.join(folder, "manifest.json")):
        sys.exit(f"make_store: {folder} already holds a store; choose another OUT")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    directions = rng.standard_normal((a.features, a.d), dtype=np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    np_dtype, _ = DTYPES[a.dtype]
    shards, norm_sum, done = [], 0.0, 0
    while done < a.rows:
        n = min(a.shard_rows, a.rows - done)
        which = rng.integers(0, a.features, size=(n, a.active))
        size = rng.exponential(1.0, size=(n, a.active)).astype(np.float32)
        acts = np.zeros((n, a.d), dtype=np.float32)
        for j in range(a.active):
            acts += size[:, j:j + 1] * directions[which[:, j]]
        acts += 0.05 * rng.standard_normal((n, a.d), dtype=np.float32)
        stored = acts.astype(np_dtype)
        norm_sum += float(np.linalg.norm(stored.astype(np.float32), axis=1).astype(np.float64).sum())
        index = np.arange(done, done + n, dtype=np.int64)
        name = f"shard-{len(shards):05d}.safetensors"
        write_safetensors(os.path.join(folder, name), {
            "acts": stored, "context": index // 128, "position": (index % 128).astype(np.int32),
            "token": index % 50257, "doc": (index // 1024).astype(np.int32)})
        shards.append({"file": name, "rows": n})
        done += n
    manifest = {"format_version": 1, "hook": a.hook, "d": a.d, "dtype": a.dtype, "context_length": 128,
                "include_bos": False, "model_name": "synthetic", "model_sha256": "synthetic-%d-%d" % (a.d, a.seed),
                "tokenizer": None, "target_rows": a.rows, "rows": a.rows, "norm_sum": norm_sum,
                "mean_norm": norm_sum / a.rows, "shards": shards, "complete": True}
    with open(os.path.join(folder, "manifest.json.tmp"), "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(os.path.join(folder, "manifest.json.tmp"), os.path.join(folder, "manifest.json"))
    print(f"make_store: {a.rows} rows x {a.d} ({a.dtype}) in {len(shards)} shards at {folder}")


if __name__ == "__main__":
    main()
