#!/usr/bin/env bash
# Re-create results/ of the cost-per-step comparison: every weighting method against equal weighting and against
# LibMTL 1.1.5 (the peer environment that scripts/install_peers.sh builds; without it the LibMTL columns stay
# empty), then FAMO and IMTL alone over three rounds. Run it on an otherwise idle machine.
# A part whose JSON exists is skipped (delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments}/multitask_cost"
mkdir -p "$HERE/results"

if [[ ! -f "$HERE/results/all_methods.json" ]]; then
  "$MB" bench mtl_cost --repeats 1 --out "$RUNS/all_methods"
  cp "$RUNS/all_methods/mtl_cost.json" "$HERE/results/all_methods.json"
  cp "$RUNS/all_methods/mtl_cost.png" "$HERE/plot.png"
fi
if [[ ! -f "$HERE/results/famo_imtl.json" ]]; then
  "$MB" bench mtl_cost --methods famo famo_next_batch imtl --tasks 2 11 --repeats 3 --out "$RUNS/famo_imtl"
  cp "$RUNS/famo_imtl/mtl_cost.json" "$HERE/results/famo_imtl.json"
  cp "$RUNS/famo_imtl/mtl_cost.png" "$HERE/results/famo_imtl.png"
fi
