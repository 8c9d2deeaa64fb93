#!/usr/bin/env bash
# Re-create results/*.json of the ResNet-12 regime: config.toml holds the shared settings, each part adds its own.
# Resumable: a part whose JSON exists is skipped (delete it to rerun).
# Every part states `metabridge compare`'s settings of the time it ran (--recipe default; a step budget with a
# constant rate unless given and no early stopping), so that it re-creates the stored JSON under today's defaults.
# The headline part (MTL against MetaOptNet, 3000 cosine steps) runs once per training seed in SEEDS (default
# "0 1 2"): seed 0 writes results/narrow_32px_3000steps_cosine.json, seed N ..._seedN.json.
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

OLD=(--recipe default)
THREE=(--methods mtl metaoptnet protonet)
STEPS=(--budget-steps 1500 --eval-every-steps 75 --val-episodes 200 --test-episodes 600 --lr-schedule constant
  --early-stopping-patience never)
part narrow_32px_200s "${OLD[@]}" "${THREE[@]}" --budget-seconds 200 --eval-every-seconds 25
OMP_NUM_THREADS=1 part narrow_32px_1500steps "${OLD[@]}" "${THREE[@]}" "${STEPS[@]}"
OMP_NUM_THREADS=1 part narrow_32px_1500steps_maml "${OLD[@]}" --methods maml "${STEPS[@]}"
part narrow_32px_1500steps_merged --merge "$RUNS/narrow_32px_1500steps" "$RUNS/narrow_32px_1500steps_maml"
for seed in ${SEEDS:-0 1 2}; do
  name=narrow_32px_3000steps_cosine
  [[ $seed == 0 ]] || name+="_seed$seed"
  OMP_NUM_THREADS=1 part "$name" "${OLD[@]}" --methods mtl metaoptnet --val-episodes 200 --test-episodes 600 \
    --budget-steps 3000 --eval-every-steps 150 --lr-schedule cosine --early-stopping-patience never --seed "$seed"
done
# seed 0's plot is the page's plot.png
if [[ -f "$HERE/results/narrow_32px_3000steps_cosine.png" ]]; then
  mv "$HERE/results/narrow_32px_3000steps_cosine.png" "$HERE/plot.png"
fi
