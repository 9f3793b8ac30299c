#!/usr/bin/python3
"""Runs tools/export_hf.py's export_module on the small GPT-2-architecture model of make_hf_gpt2.py
(no `transformers` needed) and saves eager-mode logits for a longer input than the trace used.

Usage: export_tiny.py OUT_DIR GPT2_TOKENIZER_DIR
Writes OUT_DIR/{model.pt, model.json, vocab.json, merges.txt, tokens.bin, logits.bin}.
"""
import os
import shutil
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "..", "tools"))
import export_hf  # noqa: E402
import make_hf_gpt2 as tiny  # noqa: E402


def main():
    out, tok_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    shutil.copy(os.path.join(tok_dir, "encoder.json"), os.path.join(out, "vocab.json"))
    shutil.copy(os.path.join(tok_dir, "vocab.bpe"), os.path.join(out, "merges.txt"))
    torch.manual_seed(0)
    model = tiny.GPT2LMHeadModel(tiny.N_LAYER, tiny.D, tiny.N_HEAD, tiny.N_CTX).eval()
    export_hf.export_module(model, out, name="tiny-export", d_model=tiny.D, n_layers=tiny.N_LAYER,
                            context_length=tiny.N_CTX, vocab_size=tiny.VOCAB,
                            tokenizer_entry={"kind": "gpt2", "encoder": "vocab.json", "merges": "merges.txt"},
                            trace_length=8)
    tokens = torch.randint(0, tiny.VOCAB, (2, 12))
    with torch.no_grad():
        logits = model(tokens)[0]
    with open(os.path.join(out, "tokens.bin"), "wb") as f:
        f.write(tokens.numpy().tobytes())
    with open(os.path.join(out, "logits.bin"), "wb") as f:
        f.write(logits.contiguous().numpy().tobytes())


if __name__ == "__main__":
    main()
