#!/usr/bin/env bash
# The layering rule of DESIGN.md, checked on every #include "…" of the source tree: a folder may
# include itself and the folders below it, never one above (apps → study → analysis → models, sae →
# core). sae/ knows nothing about language models (no models/), and no library includes tests/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
declare -A allowed=(
  [core]="core"
  [models]="core models"
  [sae]="core sae"
  [analysis]="core models sae analysis"
  [study]="core models sae analysis study"
  [apps]="core models sae analysis study apps"
)
bad=0
checked=0
for layer in "${!allowed[@]}"; do
  while IFS= read -r line; do
    file="${line%%:*}"
    target="$(sed -E 's/.*#include "([^"/]+)\/.*/\1/' <<<"$line")"
    checked=$((checked + 1))
    if [[ " ${allowed[$layer]} " != *" $target "* ]]; then
      echo "layering: $file includes $target/ (a $layer/ file may include only: ${allowed[$layer]})"
      bad=1
    fi
  done < <(grep -rnE '^#include "[^"/]+/' "$layer" --include='*.h' --include='*.cpp' || true)
done
[ "$checked" -gt 0 ] || { echo "layering: no includes found under $root"; exit 1; }
# docs/architecture.md is the map a newcomer follows to the file to change: every path it names in
# backquotes (a folder of the tree, then a file or folder name without placeholders) must exist.
doc="docs/architecture.md"
[ -f "$doc" ] || { echo "layering: $doc is missing"; exit 1; }
paths=0
while IFS= read -r p; do
  paths=$((paths + 1))
  if [ ! -e "$p" ]; then
    echo "layering: $doc names \`$p\`, which does not exist"
    bad=1
  fi
done < <(grep -oE '`(core|models|sae|analysis|study|apps|tests|tools|configs|docs|scripts|python|cmake)/[A-Za-z0-9_./-]*`' "$doc" | tr -d '`' | sort -u)
[ "$paths" -gt 10 ] || { echo "layering: $doc names only $paths paths"; exit 1; }

[ "$bad" -eq 0 ] && echo "layering: $checked project includes follow the rule; $doc names $paths paths, all present"
exit "$bad"
