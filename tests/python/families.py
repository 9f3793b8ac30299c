"""One model family exported to a saelab folder, with TransformerLens' activations to compare against.

Usage (python of python/models.lock): families.py FAMILY OUT GPT2_TOKENIZER_DIR

Builds the family's random-weight model twice from one seed (tools/hf_families.py): one copy is
exported by tools/export_hf.py to OUT (model.pt traced at [2, 8], model.json, GPT-2's BPE files);
the other is wrapped by TransformerLens 4's TransformerBridge, which hooks transformers' own modules
under TransformerLens' names. On OUT/reference.safetensors: `tokens` [2, 20] (a length
the trace never saw, longer than the sliding windows), `logits` from the bridge, and for every
name in model.json's hook_aliases the bridge's run_with_cache value under that name. A name the
bridge does not have fails here, naming it.
"""
import json
import os
import sys
import warnings
from importlib.metadata import version

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
from export_hf import copy_gpt2_tokenizer, export_transformers  # noqa: E402
from hf_families import build  # noqa: E402


def main():
    family, out, tok_dir = sys.argv[1:4]
    warnings.simplefilter("ignore")
    from transformer_lens.model_bridge.sources import build_bridge_from_module

    model, config = build(family)
    os.makedirs(out, exist_ok=True)
    entry = copy_gpt2_tokenizer(tok_dir, out)
    info = export_transformers(model, config, out, name=family, tokenizer_entry=entry,
                               source={"family": family, "weights": "random, seed 0"})

    twin, twin_config = build(family)
    bridge = build_bridge_from_module(twin, type(twin).__name__, hf_config=twin_config)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 50257, (2, 20), generator=g)
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(tokens)
    ref = {"tokens": tokens, "logits": logits.float().contiguous()}
    have = set(cache.keys())
    for name in info["hook_aliases"]:
        try:
            t = cache[name]
        except KeyError:
            sys.exit(f"families.py: {family}: TransformerLens' bridge has no hook '{name}' "
                     f"(it has e.g. {sorted(k for k in have if k.startswith('blocks.1.'))[:12]})")
        ref[name] = t.float().clone().contiguous()
    save_file(ref, os.path.join(out, "reference.safetensors"))
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump({"family": family, "names": sorted(info["hook_aliases"]),
                   "transformer_lens": version("transformer-lens"), "transformers": version("transformers")}, f, indent=1)
    print(f"{family}: {len(info['hook_aliases'])} names checked against TransformerBridge")


if __name__ == "__main__":
    main()
