#!/usr/bin/env bash
# Issue 13's regime run by training steps: ResNet-12 at a quarter width, glyphs at 32 px, MTL vs
# MetaOptNet vs ProtoNet for 1500 steps each, validated every 75 steps (convergence judged over
# steps; one torch thread, so it can share the 2-core machine and still give load-independent
# accuracies). Seconds per step for time-to-target come from the quiet 200 s run with the same
# settings (bench/results/regime_resnet12_32_narrow), not from this one.
set -eu
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
.venv/bin/metabridge compare --methods mtl,metaoptnet,protonet --model resnet12 \
  --model-kwargs '{"widths": [16, 40, 80, 160]}' --image-size 32 --meta-batch 4 \
  --budget-steps 1500 --eval-every-steps 75 --val-episodes 200 --test-episodes 600 \
  --results-dir bench/results/regime_resnet12_32_narrow_steps --out-dir runs/regime_steps
