#!/usr/bin/env bash
# Issue 13, part 2 (after the full-width ResNet-12 regime run was measured at ~5.5 s per MTL step
# and ~70 s per validation on 2 cores: too slow for one sitting): the regime scaled to fit.
set -x
cd "$(dirname "$0")/.."
B=bench/results
M=.venv/bin/metabridge
$M compare --methods mtl,metaoptnet,protonet --model resnet12 --model-kwargs '{"widths": [16, 40, 80, 160]}' --image-size 32 --meta-batch 4 --budget 200 --eval-every 25 --results-dir $B/regime_resnet12_32_narrow --out-dir runs/regime
$M bench cost --backbones resnet12@32 --max-tasks 1 --steps 1 --max-seconds-per-config 120 --results-dir $B/cost_resnet12_32
