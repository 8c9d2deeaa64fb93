#!/usr/bin/env bash
# Issue 13's two open runs, by training steps so that they can share the 2-core machine
# (one torch thread each) and still give load-independent results. Usage: scripts/issue13_finish.sh a|b
#  a: MAML with augmentation at the --full protocol, 1000 steps: the row that decides whether
#     augmented MTL (bench/results/ablation_steps/5_augment_only) matches MAML at 1-shot.
#  b: the paper's regime scaled down: ResNet-12 at a quarter width, glyphs at 32 px, MTL vs
#     MetaOptNet vs ProtoNet for 1500 steps each, validated every 75 steps (convergence by steps;
#     seconds per step come from bench/results/cost_resnet12_32, timed alone on the machine).
set -eu
cd "$(dirname "$0")/.."
MB=.venv/bin/metabridge
export OMP_NUM_THREADS=1
case "$1" in
a)
  $MB compare --methods maml --full --budget-steps 1000 --eval-every-steps 50 --augment auto \
    --results-dir bench/results/ablation_steps/6_maml_augment --out-dir runs/ablation_steps/6
  ;;
b)
  $MB compare --methods mtl,metaoptnet,protonet --model resnet12 \
    --model-kwargs '{"widths": [16, 40, 80, 160]}' --image-size 32 --meta-batch 4 \
    --budget-steps 1500 --eval-every-steps 75 --val-episodes 200 --test-episodes 600 \
    --results-dir bench/results/regime_resnet12_32_narrow_steps --out-dir runs/regime_steps
  ;;
esac
