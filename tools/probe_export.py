#!/usr/bin/env python3
"""What torch.export and AOTInductor make of the model families, with saelab's hook op inside.

Usage (python of python/models.lock): tools/probe_export.py [--aoti] [FAMILY ...]

For each family of tools/hf_families.py: torch.export.export with a dynamic sequence length,
then the same with `saelab::hook(Tensor x, str name) -> Tensor` (the op saelab splices into
TorchScript graphs) called on every block's input and output through forward hooks — does the
exported program keep one op call per hook point, in order? With --aoti the hooked program is
compiled by AOTInductor (torch._inductor.aoti_compile_and_package, C++ on this CPU) and loaded back
(torch._inductor.aoti_load_package): do the hook calls still run, and are the logits the eager
model's? Prints one JSON line per family; docs/models.md records the results.
"""
import json
import os
import sys
import tempfile
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_families import FAMILIES, build  # noqa: E402

CALLS = []

# The op as saelab declares it (models/hooked_model.cpp). Here its CPU kernel records the call and
# returns its input; saelab's C++ kernel looks the name up in the thread's HookScope instead.
torch.library.define("saelab::hook", "(Tensor x, str name) -> Tensor")


@torch.library.impl("saelab::hook", "CompositeExplicitAutograd")
def _hook(x, name):
    CALLS.append(name)
    return x.clone()


@torch.library.register_fake("saelab::hook")
def _hook_fake(x, name):
    return torch.empty_like(x)


class Logits(torch.nn.Module):
    """input_ids → logits, the part of the output saelab reads."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids, use_cache=False, return_dict=False)[0]


def add_hooks(model):
    blocks = next(m for n, m in model.named_modules() if isinstance(m, torch.nn.ModuleList))
    for i, block in enumerate(blocks):
        block.register_forward_pre_hook(
            lambda m, args, kwargs, i=i: ((torch.ops.saelab.hook(args[0], f"blocks.{i}.input"),) + args[1:], kwargs)
            if args else (args, dict(kwargs, hidden_states=torch.ops.saelab.hook(kwargs["hidden_states"], f"blocks.{i}.input"))),
            with_kwargs=True)
        block.register_forward_hook(
            lambda m, args, out, i=i: (torch.ops.saelab.hook(out[0], f"blocks.{i}.output"),) + tuple(out[1:])
            if isinstance(out, tuple) else torch.ops.saelab.hook(out, f"blocks.{i}.output"))
    return len(blocks)


def probe(family, aoti):
    warnings.simplefilter("ignore")
    model, _ = build(family)
    wrapped = Logits(model).eval()
    ids = torch.randint(0, 50000, (2, 12))
    dims = {"input_ids": {0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO}}  # batch and length
    row = {"family": family}
    t0 = time.time()
    try:
        ep = torch.export.export(wrapped, (ids,), dynamic_shapes=dims)
        row["export"] = f"ok, {len(ep.graph.nodes)} nodes, {time.time() - t0:.1f} s"
    except Exception as e:  # noqa: BLE001  (the fact recorded is the failure)
        row["export"] = f"fails: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        print(json.dumps(row), flush=True)
        return
    n_layers = add_hooks(model)
    with torch.no_grad():
        eager = wrapped(ids)
    try:
        ep = torch.export.export(wrapped, (ids,), dynamic_shapes=dims)
        names = [n.args[1] for n in ep.graph.nodes if n.op == "call_function" and "saelab.hook" in str(n.target)]
        row["hooked_export"] = f"ok, {len(names)} saelab::hook calls for {2 * n_layers} points, in order: " \
                               f"{names == [f'blocks.{i}.{s}' for i in range(n_layers) for s in ('input', 'output')]}"
        CALLS.clear()
        out = ep.module()(torch.randint(0, 50000, (3, 20)))
        row["exported_run_other_shape"] = f"ok, {len(CALLS)} hook calls, logits {tuple(out.shape)}"
    except Exception as e:  # noqa: BLE001
        row["hooked_export"] = f"fails: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        print(json.dumps(row), flush=True)
        return
    if aoti:
        t0 = time.time()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = torch._inductor.aoti_compile_and_package(ep, package_path=os.path.join(tmp, f"{family}.pt2"))
                size = os.path.getsize(path)
                compiled = torch._inductor.aoti_load_package(path)
                CALLS.clear()
                with torch.no_grad():
                    out = compiled(ids)
                err = ((out - eager).abs().max() / eager.abs().max()).item()
                row["aoti"] = (f"ok, compiled in {time.time() - t0:.0f} s, {size / 1e6:.1f} MB package, "
                               f"{len(CALLS)} hook calls at run time, logits max rel diff {err:.1e}")
        except Exception as e:  # noqa: BLE001
            row["aoti"] = f"fails: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
    print(json.dumps(row), flush=True)


def main():
    args = sys.argv[1:]
    aoti = "--aoti" in args
    for family in [a for a in args if a != "--aoti"] or list(FAMILIES):
        probe(family, aoti)


if __name__ == "__main__":
    main()
