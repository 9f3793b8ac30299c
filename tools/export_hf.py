#!/usr/bin/python3
"""Exports a Hugging Face causal language model to a saelab model folder.

Usage (on a machine with `transformers` installed and the model downloadable or on disk):

    python3 tools/export_hf.py gpt2 models/gpt2
    python3 tools/export_hf.py /path/to/local/gpt2-medium models/gpt2-medium --trace-length 16

writes OUT/model.pt (TorchScript, traced with torch.jit.trace), OUT/vocab.json and OUT/merges.txt
(the GPT-2 byte-level BPE files saelab's own tokenizer reads) and OUT/model.json (dimensions,
context length, where the logits are in the output, the tokenizer, residual-stream aliases in
TransformerLens style, and the final norm / unembedding for logit effects). Then:

    build/saelab hooks models/gpt2
    build/saelab capture --model models/gpt2 --hooks blocks.6.hook_resid_pre --tokens 200000

The GPT-2 family (gpt2, distilgpt2, gpt2-medium/large/xl) is supported first: their tokenizers
are byte-level BPE. Other causal LMs trace the same way; their tokenizer needs a kind saelab reads
(gpt2 or sentencepiece), which `--tokenizer-entry` lets you give by hand.

Tracing fixes the control flow at the example input but not the sequence length: the traced graph
runs on any length up to the context. `torchscript=True` makes the model return tuples
(logits first), which model.json records.

The part below the `transformers` import (`export_module`) takes any torch.nn.Module, so it is
tested without `transformers` on the small GPT-2-architecture model the hook tests build.
"""
import argparse
import json
import os
import sys
import warnings

import torch


def find_blocks(model, n_layers):
    """The dotted path of the ModuleList holding the transformer blocks (e.g. transformer.h)."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return name
    raise SystemExit(f"export_hf: no ModuleList of {n_layers} blocks found in the model")


def find_parameter(model, suffixes):
    names = list(model.state_dict(keep_vars=True).keys())  # tied weights keep both names here
    for suffix in suffixes:
        for n in names:
            if n == suffix or n.endswith("." + suffix):
                return n
    return None


def norm_type(model, weight_name):
    """The logit_lens "norm" of the module owning `weight_name`: layernorm, rmsnorm, or
    rmsnorm_plus_one for Gemma's RMSNorm (x̂ · (1 + w)); None when the class does not say."""
    module = model.get_submodule(weight_name.rsplit(".", 1)[0]) if "." in weight_name else model
    cls = type(module).__name__
    if cls.startswith("Gemma") and "RMSNorm" in cls:
        return "rmsnorm_plus_one"
    if "RMSNorm" in cls:
        return "rmsnorm"
    if "LayerNorm" in cls:
        return "layernorm"
    return None


def export_module(model, out_dir, *, name, d_model, n_layers, context_length, vocab_size, tokenizer_entry,
                  trace_length=8, logits_index=0, prepend_bos=True):
    """Traces `model` (input_ids [batch, pos] → tuple with logits at `logits_index`) and writes
    model.pt and model.json into out_dir. Returns the model.json dict."""
    os.makedirs(out_dir, exist_ok=True)
    model = model.eval()
    example = torch.randint(0, vocab_size, (1, min(trace_length, context_length)))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python values turned into constants
        traced = torch.jit.trace(model, example, strict=False)
    tmp = os.path.join(out_dir, "model.pt.tmp")
    traced.save(tmp)
    os.replace(tmp, os.path.join(out_dir, "model.pt"))

    blocks = find_blocks(model, n_layers)
    aliases = {}
    for i in range(n_layers):
        aliases[f"blocks.{i}.hook_resid_pre"] = f"{blocks}.{i}.input"
        aliases[f"blocks.{i}.hook_resid_post"] = f"{blocks}.{i}.output"
    info = {
        "format_version": 1,
        "name": name,
        "model_file": "model.pt",
        "d_model": d_model,
        "n_layers": n_layers,
        "context_length": context_length,
        "vocab_size": vocab_size,
        "prepend_bos": prepend_bos,
        "logits": {"output": "tuple", "index": logits_index},
        "tokenizer": tokenizer_entry,
        "hook_aliases": aliases,
        "source": {"exported_by": "tools/export_hf.py", "traced_length": int(example.size(1))},
    }
    final_norm = find_parameter(model, ["ln_f.weight", "final_layer_norm.weight", "norm.weight"])
    unembed = find_parameter(model, ["lm_head.weight", "embed_out.weight"])
    if unembed:
        info["logit_lens"] = {"unembed": unembed}
        if final_norm:
            info["logit_lens"]["final_norm"] = final_norm
            kind = norm_type(model, final_norm)
            if kind:  # saelab infers the type only from a bias; the module's class is surer
                info["logit_lens"]["norm"] = kind
    tmp = os.path.join(out_dir, "model.json.tmp")
    with open(tmp, "w") as f:
        json.dump(info, f, indent=2)
    os.replace(tmp, os.path.join(out_dir, "model.json"))
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="Hugging Face model id or local folder")
    ap.add_argument("out", help="output folder (a saelab model folder)")
    ap.add_argument("--trace-length", type=int, default=8, help="length of the example input used for tracing")
    ap.add_argument("--context-length", type=int, default=0, help="context length recorded (0: the model's)")
    ap.add_argument("--tokenizer-entry", default="", help="JSON tokenizer entry for model.json, for non-GPT-2 tokenizers")
    args = ap.parse_args()
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        sys.exit("export_hf: this script needs the `transformers` package (pip install transformers)")

    model = AutoModelForCausalLM.from_pretrained(args.model, torchscript=True).eval()
    cfg = model.config
    d_model = getattr(cfg, "n_embd", None) or cfg.hidden_size
    n_layers = getattr(cfg, "n_layer", None) or cfg.num_hidden_layers
    context = args.context_length or getattr(cfg, "n_positions", None) or cfg.max_position_embeddings
    os.makedirs(args.out, exist_ok=True)
    if args.tokenizer_entry:
        entry = json.loads(args.tokenizer_entry)
    else:
        tok = AutoTokenizer.from_pretrained(args.model)
        files = tok.save_pretrained(args.out)
        if not (os.path.exists(os.path.join(args.out, "vocab.json")) and os.path.exists(os.path.join(args.out, "merges.txt"))):
            sys.exit(f"export_hf: the tokenizer wrote {files}, not GPT-2's vocab.json + merges.txt; "
                     "pass --tokenizer-entry with a kind saelab reads")
        entry = {"kind": "gpt2", "encoder": "vocab.json", "merges": "merges.txt"}
    info = export_module(model, args.out, name=os.path.basename(args.model.rstrip("/")), d_model=d_model,
                         n_layers=n_layers, context_length=context, vocab_size=cfg.vocab_size, tokenizer_entry=entry,
                         trace_length=args.trace_length)
    print(f"wrote {args.out}: {info['n_layers']} layers, d_model {info['d_model']}, context {info['context_length']}")


if __name__ == "__main__":
    main()
