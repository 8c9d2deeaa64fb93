#!/usr/bin/env bash
# Re-create results/*.json of the training-cost tables. Resumable: a part whose JSON exists is skipped.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments/training_cost}"
mkdir -p "$HERE/results"

part() {  # part RESULT ARGS...: one `metabridge bench cost`, JSON and plot copied into results/
  local name=$1; shift
  [[ -f "$HERE/results/$name.json" ]] && { echo "skip $name: results/$name.json exists"; return; }
  "$MB" bench cost "$@" --out "$RUNS/$name"
  cp "$RUNS/$name/cost_cpu.json" "$HERE/results/$name.json"
  cp "$RUNS/$name/cost_cpu.png" "$HERE/results/$name.png"
}

part conv4_28px --backbones conv4@28
part resnet12_32px --backbones resnet12@32 --max-tasks 1 --steps 1 --max-seconds-per-config 120
part resnet12_84px --backbones resnet12@84 --max-tasks 1 --steps 1 --warmup 0 --max-seconds-per-config 240
mv -f "$HERE/results/resnet12_84px.png" "$HERE/plot.png" 2>/dev/null || true
