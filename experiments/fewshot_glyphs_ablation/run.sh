#!/usr/bin/env bash
# Re-create results/*.json of the MTL recipe ablation. Resumable: a row whose JSON exists is skipped.
# Two streams side by side (one torch thread each): `run.sh a` and `run.sh b`; no argument runs every row.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments/fewshot_glyphs_ablation}"
mkdir -p "$HERE/results"

part() {  # part RESULT ARGS...: one `metabridge compare --methods mtl`, JSON and plot copied into results/
  local name=$1; shift
  [[ -f "$HERE/results/$name.json" ]] && { echo "skip $name: results/$name.json exists"; return; }
  "$MB" compare --methods mtl "$@" --out "$RUNS/$name"
  cp "$RUNS/$name/compare.json" "$HERE/results/$name.json"
  cp "$RUNS/$name/compare.png" "$HERE/results/$name.png"
}

# Every row states the recipe, budget and schedule it ran with (compare's defaults have changed since):
# 200 s rows by wall-clock, 1000-step rows with the recipe's own schedule where no switch sets one.
DEFAULT=(--recipe default)
SECONDS200=(--budget-seconds 200 --eval-every-seconds 25)
CONSTANT=(--lr-schedule constant --early-stopping-patience never)
HEAD=(--head-init official)
SCHED=(--lr-schedule plateau --early-stopping-patience 15)
STEPS=(--full --budget-steps 1000 --eval-every-steps 50)
stream=${1:-all}
if [[ $stream == all ]]; then
  part 200s_1_head_init "${DEFAULT[@]}" "${SECONDS200[@]}" "${HEAD[@]}"
  part 200s_2_schedule "${DEFAULT[@]}" "${SECONDS200[@]}" "${HEAD[@]}" "${SCHED[@]}"
  part 200s_3_augment "${DEFAULT[@]}" "${SECONDS200[@]}" "${HEAD[@]}" "${SCHED[@]}" --augment auto
  part 200s_4_per_task --recipe official "${SECONDS200[@]}"
fi
[[ $stream != all ]] && export OMP_NUM_THREADS=1
if [[ $stream == all || $stream == a ]]; then
  part 1000steps_0_default "${STEPS[@]}" "${DEFAULT[@]}" "${CONSTANT[@]}"
  part 1000steps_2_schedule "${STEPS[@]}" "${DEFAULT[@]}" "${HEAD[@]}" "${SCHED[@]}"
  part 1000steps_4_per_task "${STEPS[@]}" --recipe official "${SCHED[@]}"
fi
if [[ $stream == all || $stream == b ]]; then
  part 1000steps_1_head_init "${STEPS[@]}" "${DEFAULT[@]}" "${CONSTANT[@]}" "${HEAD[@]}"
  part 1000steps_3_augment "${STEPS[@]}" "${DEFAULT[@]}" "${HEAD[@]}" "${SCHED[@]}" --augment auto
  part 1000steps_5_augment_only "${STEPS[@]}" "${DEFAULT[@]}" "${CONSTANT[@]}" --augment auto
fi
