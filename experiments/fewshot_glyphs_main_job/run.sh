#!/usr/bin/env bash
# Re-create results/mtl_maml_protonet_200s.json and plot.png: `metabridge compare` with its defaults.
# Resumable: skipped when the JSON exists (delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments/fewshot_glyphs_main_job}"
mkdir -p "$HERE/results"
if [[ -f "$HERE/results/mtl_maml_protonet_200s.json" ]]; then echo "skip: results exist"; exit 0; fi
"$MB" compare --methods mtl maml protonet --out "$RUNS"
cp "$RUNS/compare.json" "$HERE/results/mtl_maml_protonet_200s.json"
cp "$RUNS/compare.png" "$HERE/plot.png"
