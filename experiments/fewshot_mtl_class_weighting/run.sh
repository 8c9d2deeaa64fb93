#!/usr/bin/env bash
# Re-create results/ of the bridge experiment: Wang et al.'s MTL on the main job's glyphs, trained with the plain
# mean loss and with the smooth max over the per-class losses (t = 0.5), one run after the other, alone.
# A part whose JSON exists is skipped (delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments}/fewshot_mtl_class_weighting"
mkdir -p "$HERE/results"

# The recipe and the 200 s wall-clock budget the runs had, stated (compare's defaults have changed since).
OLD=(--recipe default --budget-seconds 200 --eval-every-seconds 25)

part() {  # part NAME ARGS...: one `compare` run of MTL, its JSON and plot copied into results/
  local name=$1; shift
  [[ -f "$HERE/results/$name.json" ]] && { echo "skip $name: results/$name.json exists"; return; }
  "$MB" compare --methods mtl "${OLD[@]}" "$@" --out "$RUNS/$name"
  cp "$RUNS/$name/compare.json" "$HERE/results/$name.json"
  cp "$RUNS/$name/compare.png" "$HERE/results/$name.png"
}

part mean_loss
part smooth_max_t0.5 --method-hparams mtl='{"class_weighting": "minmax", "class_weighting_temperature": 0.5}'
