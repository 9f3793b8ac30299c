#!/usr/bin/env python3
"""Exports a Hugging Face causal language model to a saelab model folder.

Usage (in the environment of python/models.lock: `$(scripts/python-env models)/bin/python`):

    python tools/export_hf.py gpt2 models/gpt2                      # a hub id or a local folder
    python tools/export_hf.py family:llama3 models/llama3 --tokenizer DIR   # random weights, no download

writes OUT/model.pt (TorchScript, traced with torch.jit.trace), the tokenizer files, and
OUT/model.json: dimensions, context length, where the logits are in the output, the tokenizer,
TransformerLens' hook names (hook_aliases) and the final norm, unembedding and logit softcap for
logit effects. Then:

    build/saelab hooks models/llama3
    build/saelab capture --model models/llama3 --hooks blocks.1.hook_mlp_out --tokens 200000

`family:NAME` builds a small random-weight model of a family from tools/hf_families.py (gpt2,
pythia, llama3, gemma2, gemma3, qwen2.5, qwen3, olmo2). Those have no tokenizer files here (the
hub is unreachable), so --tokenizer gives GPT-2's byte-level BPE files (encoder.json + vocab.bpe,
or vocab.json + merges.txt), whose ids fit every family's vocabulary.

Tracing under torch 2.x and transformers 5: the model is traced at batch 2 (a batch of 1 lets the
tracer fold the batch size into the graph), with return_dict=False and use_cache=False bound into
its forward (transformers 5 dropped the `torchscript` config flag; setting return_dict=False in the
config breaks the outer model, which expects its inner model's output object). The traced graph
then runs on any batch and any length up to the context, which the family tests check.

TransformerLens names: blocks.{i}.hook_resid_pre / _mid / _post, hook_attn_out, hook_mlp_out,
mlp.hook_pre / hook_post, ln1 / ln2 .hook_normalized, hook_embed, ln_final.hook_normalized, placed
where TransformerLens 4's TransformerBridge places them for that architecture (the family tests
compare every one against TransformerBridge's run_with_cache). hook_normalized is the norm's input
centred (LayerNorm) and divided by its scale, before the weight: no module returns it, so model.json
gives it as a computed alias {"point": "<norm>.input", "normalize": ..., "eps": ...}.

`export_module` takes any torch.nn.Module (input_ids → tuple with logits first), so it is also
tested on the small GPT-2-architecture model the hook tests build.
"""
import argparse
import functools
import json
import os
import shutil
import sys
import warnings

import torch

# Per transformers model_type: the block's submodules in TransformerLens' roles, the embedding
# and final-norm paths, the norm kind and the config field holding its epsilon.
LAYOUTS = {
    "gpt2": dict(blocks="transformer.h", ln1="ln_1", attn="attn", ln2="ln_2", mlp="mlp", mlp_in="c_fc",
                 mlp_out="c_proj", embed="transformer.wte", pos_embed="transformer.wpe", ln_final="transformer.ln_f",
                 norm="layernorm", eps="layer_norm_epsilon"),
    "gpt_neox": dict(blocks="gpt_neox.layers", ln1="input_layernorm", attn="attention", ln2="post_attention_layernorm",
                     mlp="mlp", mlp_in="dense_h_to_4h", mlp_out="dense_4h_to_h", embed="gpt_neox.embed_in",
                     ln_final="gpt_neox.final_layer_norm", norm="layernorm", eps="layer_norm_eps"),
    "llama": dict(blocks="model.layers", ln1="input_layernorm", attn="self_attn", ln2="post_attention_layernorm",
                  mlp="mlp", mlp_gate="gate_proj", mlp_out="down_proj", embed="model.embed_tokens",
                  ln_final="model.norm", norm="rmsnorm", eps="rms_norm_eps"),
    "gemma2": dict(blocks="model.layers", ln1="input_layernorm", attn="self_attn", ln1_post="post_attention_layernorm",
                   ln2="pre_feedforward_layernorm", mlp="mlp", ln2_post="post_feedforward_layernorm",
                   mlp_gate="gate_proj", mlp_out="down_proj", embed="model.embed_tokens", ln_final="model.norm",
                   norm="rmsnorm", eps="rms_norm_eps", plus_one=True),
    "olmo2": dict(blocks="model.layers", attn="self_attn", ln1_post="post_attention_layernorm", mlp="mlp",
                  ln2_post="post_feedforward_layernorm", mlp_gate="gate_proj", mlp_out="down_proj",
                  embed="model.embed_tokens", ln_final="model.norm", norm="rmsnorm", eps="rms_norm_eps"),
}
LAYOUTS["mistral"] = LAYOUTS["qwen2"] = LAYOUTS["qwen3"] = LAYOUTS["llama"]
LAYOUTS["gemma3_text"] = LAYOUTS["gemma2"]


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


def residual_aliases(blocks, n_layers):
    aliases = {}
    for i in range(n_layers):
        aliases[f"blocks.{i}.hook_resid_pre"] = f"{blocks}.{i}.input"
        aliases[f"blocks.{i}.hook_resid_post"] = f"{blocks}.{i}.output"
    return aliases


def transformer_lens_aliases(config, n_layers):
    """TransformerLens' hook names for a transformers model of a known model_type, else None."""
    layout = LAYOUTS.get(getattr(config, "model_type", None))
    if layout is None:
        return None
    get = layout.get
    eps = float(getattr(config, get("eps")))
    normalized = lambda path: {"point": f"{path}.input", "normalize": get("norm"), "eps": eps}  # noqa: E731
    parallel = bool(getattr(config, "use_parallel_residual", False))
    a = residual_aliases(get("blocks"), n_layers)
    for i in range(n_layers):
        b, tl = f"{get('blocks')}.{i}.", f"blocks.{i}."
        if get("ln2"):
            if not parallel:  # a parallel block's MLP norm reads the block's input: no resid_mid
                a[tl + "hook_resid_mid"] = b + get("ln2") + ".input"
            a[tl + "ln2.hook_normalized"] = normalized(b + get("ln2"))
        else:
            a[tl + "hook_resid_mid"] = b + get("mlp") + ".input"
        if get("ln1"):
            a[tl + "ln1.hook_normalized"] = normalized(b + get("ln1"))
        a[tl + "hook_attn_out"] = b + (get("ln1_post") or get("attn")) + ".output"
        a[tl + "hook_mlp_out"] = b + (get("ln2_post") or get("mlp")) + ".output"
        mlp = b + get("mlp") + "."
        a[tl + "mlp.hook_pre"] = mlp + (get("mlp_gate") or get("mlp_in")) + ".output"
        a[tl + "mlp.hook_post"] = mlp + get("mlp_out") + ".input"
    a["hook_embed"] = get("embed") + ".output"
    if get("pos_embed"):
        a["hook_pos_embed"] = get("pos_embed") + ".output"
    a["ln_final.hook_normalized"] = normalized(get("ln_final"))
    return a


def trace(model, vocab_size, trace_length):
    """torch.jit.trace of `model` on a [2, trace_length] input; a transformers model is traced with
    return_dict=False and use_cache=False bound into its forward."""
    if hasattr(model, "config") and hasattr(type(model), "forward"):
        try:
            import transformers
            if isinstance(model, transformers.PreTrainedModel):
                model.forward = functools.partial(type(model).forward, model, return_dict=False, use_cache=False)
        except ImportError:
            pass
    example = torch.randint(0, vocab_size, (2, trace_length))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python values turned into constants
        traced = torch.jit.trace(model, (example,), strict=False)
    if isinstance(getattr(model, "forward", None), functools.partial):
        del model.forward
    return traced, example


def export_module(model, out_dir, *, name, d_model, n_layers, context_length, vocab_size, tokenizer_entry,
                  trace_length=8, logits_index=0, prepend_bos=True, hook_aliases=None, softcap=None, source=None):
    """Traces `model` (input_ids [batch, pos] → tuple with logits at `logits_index`) and writes
    model.pt and model.json into out_dir. Returns the model.json dict."""
    os.makedirs(out_dir, exist_ok=True)
    model = model.eval()
    traced, example = trace(model, vocab_size, min(trace_length, context_length))
    tmp = os.path.join(out_dir, "model.pt.tmp")
    traced.save(tmp)
    os.replace(tmp, os.path.join(out_dir, "model.pt"))

    aliases = hook_aliases if hook_aliases is not None else residual_aliases(find_blocks(model, n_layers), n_layers)
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
        "source": dict(source or {}, exported_by="tools/export_hf.py", traced_shape=list(example.shape),
                       torch=torch.__version__),
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
        if softcap:
            info["logit_lens"]["softcap"] = float(softcap)
    tmp = os.path.join(out_dir, "model.json.tmp")
    with open(tmp, "w") as f:
        json.dump(info, f, indent=2)
    os.replace(tmp, os.path.join(out_dir, "model.json"))
    return info


def copy_gpt2_tokenizer(src, out):
    """Copies GPT-2's BPE files from folder `src` into `out`; returns the tokenizer entry."""
    for encoder, merges in (("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt")):
        if os.path.exists(os.path.join(src, encoder)) and os.path.exists(os.path.join(src, merges)):
            shutil.copyfile(os.path.join(src, encoder), os.path.join(out, encoder))
            shutil.copyfile(os.path.join(src, merges), os.path.join(out, merges))
            return {"kind": "gpt2", "encoder": encoder, "merges": merges}
    raise SystemExit(f"export_hf: --tokenizer '{src}' holds neither encoder.json + vocab.bpe nor vocab.json + merges.txt")


def export_transformers(model, config, out, *, name, context_length=0, trace_length=8, tokenizer_entry=None, source=None):
    """Exports a transformers causal LM (model and its config) to `out`; returns model.json."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    d_model = getattr(cfg, "n_embd", None) or cfg.hidden_size
    n_layers = getattr(cfg, "n_layer", None) or cfg.num_hidden_layers
    context = context_length or getattr(cfg, "n_positions", None) or cfg.max_position_embeddings
    aliases = transformer_lens_aliases(cfg, n_layers)
    if aliases is None:
        print(f"export_hf: model_type '{cfg.model_type}' has no TransformerLens layout here; "
              "only blocks.{i}.hook_resid_pre / _post are named", file=sys.stderr)
    return export_module(model, out, name=name, d_model=d_model, n_layers=n_layers, context_length=context,
                         vocab_size=cfg.vocab_size, tokenizer_entry=tokenizer_entry, trace_length=trace_length,
                         hook_aliases=aliases, softcap=getattr(cfg, "final_logit_softcapping", None),
                         source=dict(source or {}, model_type=cfg.model_type))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="Hugging Face model id or local folder, or family:NAME for a random-weight model")
    ap.add_argument("out", help="output folder (a saelab model folder)")
    ap.add_argument("--trace-length", type=int, default=8, help="length of the example input used for tracing")
    ap.add_argument("--context-length", type=int, default=0, help="context length recorded (0: the model's)")
    ap.add_argument("--tokenizer", default="", help="folder with GPT-2 BPE files to use as the tokenizer")
    ap.add_argument("--tokenizer-entry", default="", help="JSON tokenizer entry for model.json, for other tokenizers")
    ap.add_argument("--seed", type=int, default=0, help="seed of a family: model's random weights")
    args = ap.parse_args()
    try:
        import transformers  # noqa: F401
    except ImportError:
        sys.exit("export_hf: this script needs `transformers`: run it with $(scripts/python-env models)/bin/python")
    os.makedirs(args.out, exist_ok=True)
    if args.model.startswith("family:"):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from hf_families import build
        family = args.model[len("family:"):]
        model, config = build(family, seed=args.seed)
        name, source = family, {"family": family, "weights": f"random, seed {args.seed}"}
    else:
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained(args.model, attn_implementation="eager").eval()
        config = model.config
        name, source = os.path.basename(args.model.rstrip("/")), {"model": args.model}
    if args.tokenizer_entry:
        entry = json.loads(args.tokenizer_entry)
    elif args.tokenizer:
        entry = copy_gpt2_tokenizer(args.tokenizer, args.out)
    elif args.model.startswith("family:"):
        sys.exit("export_hf: a family: model has no tokenizer files; pass --tokenizer DIR (GPT-2's BPE files)")
    else:
        from transformers import AutoTokenizer
        files = AutoTokenizer.from_pretrained(args.model).save_pretrained(args.out)
        if not (os.path.exists(os.path.join(args.out, "vocab.json")) and os.path.exists(os.path.join(args.out, "merges.txt"))):
            sys.exit(f"export_hf: the tokenizer wrote {files}, not GPT-2's vocab.json + merges.txt; "
                     "pass --tokenizer-entry with a kind saelab reads")
        entry = {"kind": "gpt2", "encoder": "vocab.json", "merges": "merges.txt"}
    info = export_transformers(model, config, args.out, name=name, context_length=args.context_length,
                               trace_length=args.trace_length, tokenizer_entry=entry, source=source)
    print(f"wrote {args.out}: {info['n_layers']} layers, d_model {info['d_model']}, context {info['context_length']}, "
          f"{len(info['hook_aliases'])} hook aliases")


if __name__ == "__main__":
    main()
