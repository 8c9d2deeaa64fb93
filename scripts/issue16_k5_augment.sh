#!/usr/bin/env bash
# Issue 16's target setting with augmentation for both learners: ProtoNet and the in-context
# transformer at 5-way 5-shot, 500 training steps each (a step budget: the same number of
# updates, independent of the machine's load; one torch thread), cosine schedule, the dataset's
# augmentation preset (--augment auto) on every training episode.
set -eu
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
.venv/bin/metabridge compare --methods protonet,icl --k-shot 5 --q-query 6 --budget-steps 500 --eval-every-steps 50 \
  --lr-schedule cosine --augment auto --out-dir runs/compare_blackbox_k5_aug \
  --results-dir bench/results/black_box_k5_500steps_augment
