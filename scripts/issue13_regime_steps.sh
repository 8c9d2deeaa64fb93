#!/usr/bin/env bash
# Issue 13's regime run by training steps: ResNet-12 at a quarter width, glyphs at 32 px, 1500
# steps per method, validated every 75 steps (convergence judged over steps; one torch thread,
# so it can share the 2-core machine and still give load-independent accuracies). Seconds per
# step for time-to-target come from the quiet 200 s run with the same settings
# (bench/results/regime_resnet12_32_narrow), not from this one.
#   (no argument)  MTL vs MetaOptNet vs ProtoNet -> bench/results/regime_resnet12_32_narrow_steps
#   maml           second-order MAML alone, same settings and test episodes
#                  -> bench/results/regime_resnet12_32_narrow_steps_maml, then merged with the
#                  first into bench/results/regime_resnet12_32_narrow_steps_all
#   cosine3000     MTL vs MetaOptNet for 3000 steps with a cosine-annealed rate (so that the
#                  baselines can meet the convergence rule), validated every 150 steps, on the
#                  machine's default threads (quiet: its own s / step give the time to target)
#                  -> bench/results/regime_resnet12_32_narrow_cosine3000
set -eu
cd "$(dirname "$0")/.."
model=(--model resnet12 --model-kwargs '{"widths": [16, 40, 80, 160]}' --image-size 32
  --meta-batch 4 --val-episodes 200 --test-episodes 600)
common=("${model[@]}" --budget-steps 1500 --eval-every-steps 75)
case "${1:-}" in
  "")
    export OMP_NUM_THREADS=1
    .venv/bin/metabridge compare --methods mtl,metaoptnet,protonet "${common[@]}" \
      --results-dir bench/results/regime_resnet12_32_narrow_steps --out-dir runs/regime_steps ;;
  maml)
    export OMP_NUM_THREADS=1
    .venv/bin/metabridge compare --methods maml "${common[@]}" \
      --results-dir bench/results/regime_resnet12_32_narrow_steps_maml --out-dir runs/regime_steps_maml
    .venv/bin/metabridge compare --merge bench/results/regime_resnet12_32_narrow_steps,bench/results/regime_resnet12_32_narrow_steps_maml \
      --results-dir bench/results/regime_resnet12_32_narrow_steps_all ;;
  cosine3000)
    .venv/bin/metabridge compare --methods mtl,metaoptnet "${model[@]}" --budget-steps 3000 \
      --eval-every-steps 150 --lr-schedule cosine \
      --results-dir bench/results/regime_resnet12_32_narrow_cosine3000 --out-dir runs/regime_cosine3000 ;;
  *) echo "usage: $0 [maml|cosine3000]" >&2; exit 2 ;;
esac
