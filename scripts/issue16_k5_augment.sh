#!/usr/bin/env bash
# Issue 16's target setting with augmentation for both learners: ProtoNet and the in-context
# transformer at 5-way 5-shot, a budget of training steps each (the same number of updates,
# independent of the machine's load; one torch thread), cosine schedule, the dataset's
# augmentation preset (--augment auto) on every training episode.
#   (no argument)  500 steps  -> bench/results/black_box_k5_500steps_augment
#   1000           1000 steps -> bench/results/black_box_k5_1000steps_augment
set -eu
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
steps=${1:-500}
case "$steps" in 500|1000) ;; *) echo "usage: $0 [500|1000]" >&2; exit 2 ;; esac
.venv/bin/metabridge compare --methods protonet,icl --k-shot 5 --q-query 6 --budget-steps "$steps" \
  --eval-every-steps $((steps / 10)) --lr-schedule cosine --augment auto --out-dir "runs/compare_blackbox_k5_aug_$steps" \
  --results-dir "bench/results/black_box_k5_${steps}steps_augment"
