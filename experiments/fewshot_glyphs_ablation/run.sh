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

HEAD=(--head-init official)
SCHED=(--lr-schedule plateau --early-stopping-patience 15)
STEPS=(--full --budget-steps 1000 --eval-every-steps 50)
stream=${1:-all}
if [[ $stream == all ]]; then
  part 200s_1_head_init "${HEAD[@]}"
  part 200s_2_schedule "${HEAD[@]}" "${SCHED[@]}"
  part 200s_3_augment "${HEAD[@]}" "${SCHED[@]}" --augment auto
  part 200s_4_per_task --recipe official
fi
[[ $stream != all ]] && export OMP_NUM_THREADS=1
if [[ $stream == all || $stream == a ]]; then
  part 1000steps_0_default "${STEPS[@]}"
  part 1000steps_2_schedule "${STEPS[@]}" "${HEAD[@]}" "${SCHED[@]}"
  part 1000steps_4_per_task "${STEPS[@]}" --recipe official
fi
if [[ $stream == all || $stream == b ]]; then
  part 1000steps_1_head_init "${STEPS[@]}" "${HEAD[@]}"
  part 1000steps_3_augment "${STEPS[@]}" "${HEAD[@]}" "${SCHED[@]}" --augment auto
  part 1000steps_5_augment_only "${STEPS[@]}" --augment auto
fi
