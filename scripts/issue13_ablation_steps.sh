#!/usr/bin/env bash
# Issue 13's ablation at the --full protocol (300 validation episodes, 1000 test episodes per
# shot) with a budget of 1000 training steps per row instead of 1200 s, so that the rows do not
# depend on the machine's speed or load: two streams of one torch thread each run side by side
# on the 2-core machine. Usage: scripts/issue13_ablation_steps.sh a|b|c
# (c: MAML with augmentation at the same protocol, the row that decides whether augmented MTL,
# row 5, matches MAML at 1-shot)
set -eu
cd "$(dirname "$0")/.."
MB=.venv/bin/metabridge
export OMP_NUM_THREADS=1
PROTOCOL="--full --budget-steps 1000 --eval-every-steps 50"
BASE="--methods mtl $PROTOCOL"
SCHED="--lr-schedule plateau --early-stopping-patience 15"
R=bench/results/ablation_steps
case "$1" in
a)
  $MB compare $BASE --head-init official $SCHED --augment auto --results-dir $R/3_augment --out-dir runs/ablation_steps/3
  $MB compare $BASE --recipe official --results-dir $R/4_per_task --out-dir runs/ablation_steps/4
  $MB compare $BASE --results-dir $R/0_today --out-dir runs/ablation_steps/0
  ;;
b)
  $MB compare $BASE --head-init official --results-dir $R/1_head_init --out-dir runs/ablation_steps/1
  $MB compare $BASE --head-init official $SCHED --results-dir $R/2_schedule --out-dir runs/ablation_steps/2
  $MB compare $BASE --augment auto --results-dir $R/5_augment_only --out-dir runs/ablation_steps/5
  ;;
c)
  $MB compare --methods maml $PROTOCOL --augment auto --results-dir $R/6_maml_augment --out-dir runs/ablation_steps/6
  ;;
*)
  echo "usage: $0 a|b|c" >&2; exit 2
  ;;
esac
