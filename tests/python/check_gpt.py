#!/usr/bin/python3
"""Independent check of a saelab GPT file in Python (python3-torch).

Usage: check_gpt.py DIR   where DIR holds model.pt, tokens.bin (int64), logits.bin (float32) and
shape.json ({"tokens": [B, T], "logits": [B, T, V], "n_heads": H}) written by the C++ test.

1. torch.jit.load opens the file and reproduces the C++ logits.
2. A plain re-implementation of a pre-LN GPT-2 forward pass, written here from the state dict
   alone and run in float64, gives the same logits: the TorchScript graph computes what the
   architecture says.
3. The module tree has the names users expect and the unembedding is tied to the embedding.
Bounds are relative to max |logits| (float32 results differ in the last bits from one CPU, or one
thread count, to another): 1e-5 for the same graph run twice, 1e-4 against the reference.
Prints the max abs differences and the bounds; exits 1 on a mismatch.
"""
import json
import math
import sys

import torch
import torch.nn.functional as F


def reference_forward(sd, tokens, n_layers, n_heads):
    B, T = tokens.shape
    x = sd["embed.weight"][tokens] + sd["pos_embed.weight"][:T].unsqueeze(0)
    d = x.shape[-1]
    dh = d // n_heads
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    for i in range(n_layers):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (d,), sd[p + "ln1.weight"], sd[p + "ln1.bias"], 1e-5)
        qkv = h @ sd[p + "attn.W_qkv"].T + sd[p + "attn.b_qkv"]
        q, k, v = qkv.split(d, dim=-1)
        q = q.view(B, T, n_heads, dh).transpose(1, 2)
        k = k.view(B, T, n_heads, dh).transpose(1, 2)
        v = v.view(B, T, n_heads, dh).transpose(1, 2)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        z = (att @ v).transpose(1, 2).reshape(B, T, d)
        x = x + z @ sd[p + "attn.W_O"].T + sd[p + "attn.b_O"]
        h = F.layer_norm(x, (d,), sd[p + "ln2.weight"], sd[p + "ln2.bias"], 1e-5)
        m = F.gelu(h @ sd[p + "mlp.W_in"].T + sd[p + "mlp.b_in"], approximate="tanh")
        x = x + m @ sd[p + "mlp.W_out"].T + sd[p + "mlp.b_out"]
    x = F.layer_norm(x, (d,), sd["ln_final.weight"], sd["ln_final.bias"], 1e-5)
    return x @ sd["embed.weight"].T


def main():
    folder = sys.argv[1]
    shape = json.load(open(f"{folder}/shape.json"))
    tokens = torch.frombuffer(bytearray(open(f"{folder}/tokens.bin", "rb").read()), dtype=torch.int64)
    tokens = tokens.view(*shape["tokens"])
    cpp = torch.frombuffer(bytearray(open(f"{folder}/logits.bin", "rb").read()), dtype=torch.float32)
    cpp = cpp.view(*shape["logits"])

    model = torch.jit.load(f"{folder}/model.pt")
    model.eval()
    names = {n for n, _ in model.named_modules()}
    n_layers = len([n for n in names if n.startswith("blocks.") and n.count(".") == 1])
    for expected in ["embed", "pos_embed", "blocks.0", "blocks.0.ln1", "blocks.0.attn", "blocks.0.ln2",
                     "blocks.0.mlp", "ln_final", "unembed"]:
        if expected not in names:
            print(f"module {expected} missing; have {sorted(names)}")
            return 1
    if model.unembed.weight.data_ptr() != model.embed.weight.data_ptr():
        print("unembed.weight is not tied to embed.weight")
        return 1
    with torch.no_grad():
        py = model(tokens)
        sd = {k: v.double() for k, v in model.state_dict().items()}
        ref = reference_forward(sd, tokens, n_layers, shape["n_heads"])
    scale = cpp.double().abs().max().item()
    d_cpp = (py.double() - cpp.double()).abs().max().item()
    d_ref = (py.double() - ref).abs().max().item()
    bound_cpp, bound_ref = 1e-5 * scale, 1e-4 * scale
    print(f"layers {n_layers}; max |logits| = {scale:.3g}; max |python - c++| = {d_cpp:.3g} (bound {bound_cpp:.3g}); "
          f"max |python - reference| = {d_ref:.3g} (bound {bound_ref:.3g})")
    return 0 if d_cpp <= bound_cpp and d_ref <= bound_ref else 1


if __name__ == "__main__":
    sys.exit(main())
