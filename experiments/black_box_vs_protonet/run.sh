#!/usr/bin/env bash
# Re-create results/*.json of the black-box learners against ProtoNet. Resumable: a part whose JSON exists
# is skipped (delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments/black_box_vs_protonet}"
mkdir -p "$HERE/results"

part() {  # part RESULT ARGS...: one `metabridge compare`, JSON and plot copied into results/
  local name=$1; shift
  [[ -f "$HERE/results/$name.json" ]] && { echo "skip $name: results/$name.json exists"; return; }
  "$MB" compare "$@" --out "$RUNS/$name"
  cp "$RUNS/$name/compare.json" "$HERE/results/$name.json"
  cp "$RUNS/$name/compare.png" "$HERE/results/$name.png"
}

K5=(--methods protonet icl --k-shot 5 --q-query 6)
# The first part used the models before the repairs: MANN as the CS330 LSTM, SNAIL's keys at random.
part with_mtl_maml_1shot_200s --methods mtl maml protonet mann snail icl
part trained_1shot_200s --methods protonet icl mann snail
part trained_5shot_200s --methods protonet icl mann snail --k-shot 5 --q-query 6
part trained_5shot_500s_cosine "${K5[@]}" --budget-seconds 500 --eval-every-seconds 50 --lr-schedule cosine
OMP_NUM_THREADS=1 part trained_5shot_500steps_augment "${K5[@]}" --budget-steps 500 --eval-every-steps 50 \
  --lr-schedule cosine --augment auto
OMP_NUM_THREADS=1 part trained_5shot_1000steps_augment "${K5[@]}" --budget-steps 1000 --eval-every-steps 100 \
  --lr-schedule cosine --augment auto
