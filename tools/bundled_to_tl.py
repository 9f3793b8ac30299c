#!/usr/bin/env python3
"""saelab's own GPT (assets/brown-gpt, or any folder `saelab train-lm` wrote) as a TransformerLens
HookedTransformer, so that SAELens, circuit-tracer and the rest of TransformerLens' world run on it.

Usage (python of python/peers.lock, whose TransformerLens 3.x still has HookedTransformer):

    python tools/bundled_to_tl.py assets/brown-gpt --out brown-gpt.tl.pt
    python tools/bundled_to_tl.py assets/brown-gpt --reference ref.safetensors   # what the tests compare

In Python:

    from bundled_to_tl import hooked_transformer
    model = hooked_transformer("assets/brown-gpt")       # HookedTransformer, weights unprocessed
    logits, cache = model.run_with_cache(tokens)          # cache["blocks.2.hook_resid_pre"], ...

The mapping (models/gpt.cpp's module tree to TransformerLens' parameters): the stacked
W_qkv [3 d, d] splits into W_Q / W_K / W_V [n_heads, d, d_head]; W_O [d, d] into
[n_heads, d_head, d]; the MLP's W_in [d_mlp, d] and W_out [d, d_mlp] transpose; the unembedding is
the tied embedding transposed with a zero bias; LayerNorms keep eps 1e-5 and the MLP is tanh-GELU
("gelu_new"). No LayerNorm folding or centring, so TransformerLens' hook values are saelab's:
--reference writes, for random tokens, the logits and TransformerLens' value of every name in the
folder's model.json hook_aliases, which tests/families_test.cpp compares with saelab's.

--out saves {"cfg": HookedTransformerConfig as a dict, "state_dict": ...} with torch.save; load it with
HookedTransformer(HookedTransformerConfig(**d["cfg"])).load_state_dict(d["state_dict"]).
"""
import argparse
import json
import os

import torch


def read_folder(folder):
    with open(os.path.join(folder, "model.json")) as f:
        info = json.load(f)
    arch = info.get("architecture", {})
    if not str(arch.get("kind", "")).startswith("saelab-gpt"):
        raise SystemExit(f"bundled_to_tl: {folder}/model.json describes '{arch.get('kind')}', not saelab's own GPT "
                         "(tools/export_hf.py models come from transformers, which TransformerLens reads itself)")
    module = torch.jit.load(os.path.join(folder, info.get("model_file", "model.pt")), map_location="cpu")
    params = {n: p.detach().clone() for n, p in module.named_parameters()}
    return info, arch, params


def config_dict(arch):
    d, h = arch["d_model"], arch["n_heads"]
    return dict(n_layers=arch["n_layers"], d_model=d, n_heads=h, d_head=d // h, d_mlp=arch["d_mlp"],
                d_vocab=arch["vocab_size"], n_ctx=arch["context_length"], act_fn="gelu_new",
                normalization_type="LN", positional_embedding_type="standard", eps=1e-5,
                default_prepend_bos=False, original_architecture="saelab-gpt", model_name="saelab-gpt")


def state_dict(arch, params):
    d, h = arch["d_model"], arch["n_heads"]
    dh = d // h
    sd = {"embed.W_E": params["embed.weight"], "pos_embed.W_pos": params["pos_embed.weight"],
          "unembed.W_U": params["embed.weight"].t().contiguous(),
          "unembed.b_U": torch.zeros(arch["vocab_size"]),
          "ln_final.w": params["ln_final.weight"], "ln_final.b": params["ln_final.bias"]}
    for i in range(arch["n_layers"]):
        p, t = f"blocks.{i}.", f"blocks.{i}."
        w_qkv, b_qkv = params[p + "attn.W_qkv"], params[p + "attn.b_qkv"]
        for j, name in enumerate("QKV"):
            w = w_qkv[j * d:(j + 1) * d]  # [d_out, d_in]; head k is rows k·dh..(k+1)·dh
            sd[t + f"attn.W_{name}"] = w.reshape(h, dh, d).transpose(1, 2).contiguous()
            sd[t + f"attn.b_{name}"] = b_qkv[j * d:(j + 1) * d].reshape(h, dh).contiguous()
        # z [.., h·dh] (heads concatenated) @ W_O^T: head k reads columns k·dh..(k+1)·dh of W_O.
        sd[t + "attn.W_O"] = params[p + "attn.W_O"].t().reshape(h, dh, d).contiguous()
        sd[t + "attn.b_O"] = params[p + "attn.b_O"]
        sd[t + "mlp.W_in"] = params[p + "mlp.W_in"].t().contiguous()
        sd[t + "mlp.b_in"] = params[p + "mlp.b_in"]
        sd[t + "mlp.W_out"] = params[p + "mlp.W_out"].t().contiguous()
        sd[t + "mlp.b_out"] = params[p + "mlp.b_out"]
        for ln in ("ln1", "ln2"):
            sd[t + f"{ln}.w"] = params[p + f"{ln}.weight"]
            sd[t + f"{ln}.b"] = params[p + f"{ln}.bias"]
    return sd


def hooked_transformer(folder):
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    _, arch, params = read_folder(folder)
    model = HookedTransformer(HookedTransformerConfig(**config_dict(arch)))
    missing, unexpected = model.load_state_dict(state_dict(arch, params), strict=False)
    # TransformerLens keeps attention masks and the like as buffers; every parameter must be set.
    unset = [m for m in missing if m in dict(model.named_parameters())]
    if unset or unexpected:
        raise SystemExit(f"bundled_to_tl: parameters not set {unset}, not understood {unexpected}")
    return model.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", help="a saelab model folder of saelab's own GPT (e.g. assets/brown-gpt)")
    ap.add_argument("--out", help="save the HookedTransformer's config and state dict here (torch.save)")
    ap.add_argument("--reference", help="write tokens, logits and every model.json alias's activation (safetensors)")
    args = ap.parse_args()
    model = hooked_transformer(args.folder)
    if args.out:
        _, arch, params = read_folder(args.folder)
        tmp = args.out + ".tmp"
        torch.save({"cfg": config_dict(arch), "state_dict": model.state_dict()}, tmp)
        os.replace(tmp, args.out)
        print(f"wrote {args.out}")
    if args.reference:
        from safetensors.torch import save_file
        info, arch, _ = read_folder(args.folder)
        tokens = torch.randint(0, arch["vocab_size"], (2, 24), generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            logits, cache = model.run_with_cache(tokens)
        ref = {"tokens": tokens, "logits": logits.contiguous()}
        for name in info["hook_aliases"]:
            ref[name] = cache[name].clone().contiguous()
        save_file(ref, args.reference)
        print(f"wrote {args.reference}: logits and {len(info['hook_aliases'])} hook names")


if __name__ == "__main__":
    main()
