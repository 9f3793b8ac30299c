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
import math
import os
import sys

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

N_LAYER, N_HEAD, D, N_CTX, VOCAB = 3, 4, 64, 32, 50257


class Conv1D(nn.Module):
    def __init__(self, n_out, n_in):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.02)
        self.bias = nn.Parameter(torch.randn(n_out) * 0.02)

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight).view(x.shape[:-1] + (self.weight.size(1),))


class GPT2Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("bias", torch.tril(torch.ones(N_CTX, N_CTX, dtype=torch.bool)).view(1, 1, N_CTX, N_CTX))
        self.c_attn = Conv1D(3 * D, D)
        self.c_proj = Conv1D(D, D)

    def forward(self, hidden_states):
        q, k, v = self.c_attn(hidden_states).split(D, dim=2)
        B, T, _ = hidden_states.shape
        q = q.view(B, T, N_HEAD, D // N_HEAD).permute(0, 2, 1, 3)
        k = k.view(B, T, N_HEAD, D // N_HEAD).permute(0, 2, 1, 3)
        v = v.view(B, T, N_HEAD, D // N_HEAD).permute(0, 2, 1, 3)
        w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(D // N_HEAD)
        mask = self.bias[:, :, k.size(-2) - q.size(-2): k.size(-2), : k.size(-2)]
        w = torch.where(mask, w, torch.tensor(torch.finfo(w.dtype).min, dtype=w.dtype))
        a = torch.matmul(w.softmax(-1), v).permute(0, 2, 1, 3).reshape(B, T, D)
        return self.c_proj(a), torch.stack((k, v))


class GPT2MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc = Conv1D(4 * D, D)
        self.c_proj = Conv1D(D, 4 * D)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class GPT2Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(D)
        self.attn = GPT2Attention()
        self.ln_2 = nn.LayerNorm(D)
        self.mlp = GPT2MLP()

    def forward(self, hidden_states):
        attn_out, present = self.attn(self.ln_1(hidden_states))
        hidden_states = hidden_states + attn_out
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))
        return hidden_states, present


class GPT2Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, D)
        self.wpe = nn.Embedding(N_CTX, D)
        self.h = nn.ModuleList([GPT2Block() for _ in range(N_LAYER)])
        self.ln_f = nn.LayerNorm(D)

    def forward(self, input_ids, record=None):
        pos = torch.arange(0, input_ids.size(-1), dtype=torch.long).unsqueeze(0)
        hidden = self.wte(input_ids) + self.wpe(pos)
        presents = []
        for i, block in enumerate(self.h):
            if record is not None:
                record[f"resid_pre_{i}"] = hidden
            hidden, present = block(hidden)
            presents.append(present)
        hidden = self.ln_f(hidden)
        if record is not None:
            record["ln_f"] = hidden
        return hidden, tuple(presents)


class GPT2LMHeadModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer = GPT2Model()
        self.lm_head = nn.Linear(D, VOCAB, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, input_ids):
        hidden, presents = self.transformer(input_ids)
        return self.lm_head(hidden), presents


def save(path, t):
    with open(path, "wb") as f:
        f.write(t.detach().contiguous().numpy().tobytes())


def main():
    out, tok_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    warnings.simplefilter("ignore")  # tracer warnings about the constant mask fill value
    torch.manual_seed(0)
    model = GPT2LMHeadModel().eval()
    with torch.no_grad():
        for p in model.parameters():  # LayerNorms with non-trivial affine maps
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
        traced = torch.jit.trace(model, torch.randint(0, VOCAB, (2, 8)))
    traced.save(f"{out}/model.pt")

    tokens = torch.randint(0, VOCAB, (2, 12))
    record = {}
    with torch.no_grad():
        hidden, _ = model.transformer(tokens, record)
        logits = model.lm_head(hidden)
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
