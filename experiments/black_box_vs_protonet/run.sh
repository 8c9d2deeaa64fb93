#!/usr/bin/env bash
# Re-create results/*.json of the black-box learners against ProtoNet. Resumable: a part whose JSON exists
# is skipped (delete it to rerun).
# Every part states `metabridge compare`'s settings of the time it ran (--recipe default; 200 s validated every
# 25 s without a budget; a step budget with a constant rate unless given, no early stopping and 20 validations),
# so that it re-creates the stored JSON under today's defaults.
# The headline part (5-shot, 1000 steps, cosine, augmentation) runs once per training seed in SEEDS (default
# "0 1 2"): seed 0 writes results/trained_5shot_1000steps_augment.json, seed N ..._seedN.json.
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

OLD=(--recipe default)
SHORT=(--budget-seconds 200 --eval-every-seconds 25)
K5=(--methods protonet icl --k-shot 5 --q-query 6)
# The first part used the models before the repairs: MANN as the CS330 LSTM, SNAIL's keys at random.
part with_mtl_maml_1shot_200s "${OLD[@]}" --methods mtl maml protonet mann snail icl "${SHORT[@]}"
part trained_1shot_200s "${OLD[@]}" --methods protonet icl mann snail "${SHORT[@]}"
part trained_5shot_200s "${OLD[@]}" --methods protonet icl mann snail --k-shot 5 --q-query 6 "${SHORT[@]}"
part trained_5shot_500s_cosine "${OLD[@]}" "${K5[@]}" --budget-seconds 500 --eval-every-seconds 50 \
  --lr-schedule cosine
OMP_NUM_THREADS=1 part trained_5shot_500steps_augment "${OLD[@]}" "${K5[@]}" --budget-steps 500 \
  --eval-every-steps 50 --lr-schedule cosine --early-stopping-patience never --augment auto
for seed in ${SEEDS:-0 1 2}; do
  name=trained_5shot_1000steps_augment
  [[ $seed == 0 ]] || name+="_seed$seed"
  OMP_NUM_THREADS=1 part "$name" "${OLD[@]}" "${K5[@]}" --budget-steps 1000 --eval-every-steps 100 \
    --lr-schedule cosine --early-stopping-patience never --augment auto --seed "$seed"
done
