#!/usr/bin/python3
"""Builds a small GPT-2-architecture model with Hugging Face module names, traces it with
torch.jit.trace, and writes what the C++ hook tests compare against.

Usage: make_hf_gpt2.py OUT_DIR GPT2_TOKENIZER_DIR

The modules mirror transformers' GPT2LMHeadModel (transformer.wte, transformer.wpe,
transformer.h.{i} with ln_1 / attn / ln_2 / mlp and Conv1D-style weights, transformer.ln_f,
lm_head tied to wte); blocks return tuples (hidden_states, present) as GPT2Block does, and the model
returns (logits, presents) as with return_dict=False. It is traced at sequence length 8 and the
reference hidden states are computed at length 12.

Writes model.pt, model.json, and for the length-12 input: tokens.bin (int64 [2, 12]),
resid_pre_{i}.bin (the input of block i), ln_f.bin (the final LayerNorm's output), logits.bin,
all float32, with shapes in shapes.json.
"""
import json
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from make_gpt2_small import GPT2LMHeadModel, VOCAB  # noqa: E402  (the same modules the scale benchmark uses)

N_LAYER, N_HEAD, D, N_CTX = 3, 4, 64, 32


def save(path, t):
    with open(path, "wb") as f:
        f.write(t.detach().contiguous().numpy().tobytes())


def main():
    out, tok_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    warnings.simplefilter("ignore")  # tracer warnings about the constant mask fill value
    torch.manual_seed(0)
    model = GPT2LMHeadModel(N_LAYER, D, N_HEAD, N_CTX).eval()
    with torch.no_grad():
        for p in model.parameters():  # LayerNorms with non-trivial affine maps
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
        traced = torch.jit.trace(model, torch.randint(0, VOCAB, (2, 8)))
    traced.save(f"{out}/model.pt")

    tokens = torch.randint(0, VOCAB, (2, 12))
    record = {}
    handles = [block.register_forward_pre_hook(lambda m, args, i=i: record.__setitem__(f"resid_pre_{i}", args[0]))
               for i, block in enumerate(model.transformer.h)]
    handles.append(model.transformer.ln_f.register_forward_hook(lambda m, args, out: record.__setitem__("ln_f", out)))
    with torch.no_grad():
        logits, _ = model(tokens)
    for h in handles:
        h.remove()
    shapes = {"tokens": list(tokens.shape), "logits": list(logits.shape)}
    save(f"{out}/tokens.bin", tokens)
    save(f"{out}/logits.bin", logits)
    for name, t in record.items():
        save(f"{out}/{name}.bin", t)
        shapes[name] = list(t.shape)
    with open(f"{out}/shapes.json", "w") as f:
        json.dump(shapes, f)
    aliases = {}
    for i in range(N_LAYER):
        aliases[f"blocks.{i}.hook_resid_pre"] = f"transformer.h.{i}.input"
        aliases[f"blocks.{i}.hook_resid_post"] = f"transformer.h.{i}.output"
    info = {
        "format_version": 1, "name": "tiny-hf-gpt2", "model_file": "model.pt",
        "d_model": D, "n_layers": N_LAYER, "context_length": N_CTX, "vocab_size": VOCAB,
        "prepend_bos": True, "logits": {"output": "tuple", "index": 0},
        "tokenizer": {"kind": "gpt2", "encoder": f"{tok_dir}/encoder.json", "merges": f"{tok_dir}/vocab.bpe"},
        "hook_aliases": aliases,
    }
    with open(f"{out}/model.json", "w") as f:
        json.dump(info, f, indent=2)


if __name__ == "__main__":
    main()
