#!/usr/bin/env bash
# Re-create results/*.json of the ResNet-12 regime: config.toml holds the shared settings, each part adds its own.
# Resumable: a part whose JSON exists is skipped (delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments/fewshot_resnet12_regime}"
mkdir -p "$HERE/results"

part() {  # part RESULT ARGS...: one `metabridge compare --config config.toml`, JSON and plot copied into results/
  local name=$1; shift
  [[ -f "$HERE/results/$name.json" ]] && { echo "skip $name: results/$name.json exists"; return; }
  "$MB" compare --config "$HERE/config.toml" "$@" --out "$RUNS/$name"
  cp "$RUNS/$name/compare.json" "$HERE/results/$name.json"
  cp "$RUNS/$name/compare.png" "$HERE/results/$name.png"
}

THREE=(--methods mtl metaoptnet protonet)
STEPS=(--budget-steps 1500 --eval-every-steps 75 --val-episodes 200 --test-episodes 600)
part narrow_32px_200s "${THREE[@]}" --budget-seconds 200 --eval-every-seconds 25
OMP_NUM_THREADS=1 part narrow_32px_1500steps "${THREE[@]}" "${STEPS[@]}"
OMP_NUM_THREADS=1 part narrow_32px_1500steps_maml --methods maml "${STEPS[@]}"
part narrow_32px_1500steps_merged --merge "$RUNS/narrow_32px_1500steps" "$RUNS/narrow_32px_1500steps_maml"
part narrow_32px_3000steps_cosine --methods mtl metaoptnet --val-episodes 200 --test-episodes 600 \
  --budget-steps 3000 --eval-every-steps 150 --lr-schedule cosine
cp "$HERE/results/narrow_32px_3000steps_cosine.png" "$HERE/plot.png"
