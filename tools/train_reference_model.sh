#!/usr/bin/env bash
# Reproduces the bundled reference model assets/brown-gpt/ from scratch with saelab's own commands:
# a 4096-piece SentencePiece BPE tokenizer on the Brown training split, then the GPT of
# configs/brown-gpt.json. Resumable: rerun after an interruption and training continues from
# runs/brown-gpt/checkpoint.pt. Takes about an hour on 2 cores.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup
run=runs/brown-gpt
mkdir -p "$run"
[ -f "$run/tokenizer.model" ] || build/saelab train-tokenizer --vocab-size 4096 --out "$run/tokenizer.model"
build/saelab train-lm --config configs/brown-gpt.json --tokenizer "$run/tokenizer.model" --out "$run"
mkdir -p assets/brown-gpt
cp "$run/model.pt" "$run/model.json" "$run/tokenizer.model" assets/brown-gpt/
echo "reference model written to assets/brown-gpt/"
