#!/usr/bin/env bash
# The measurements of issue 13 on this machine, one after another (never two timings at once).
set -x
cd "$(dirname "$0")/.."
B=bench/results
M=.venv/bin/metabridge
$M bench cost --backbones conv4@28 --results-dir $B/cost_conv4
# the default main job (3 methods x 200 s)
$M compare --results-dir $B --out-dir runs/compare
# the ablation: today's MTL (above) and each part of the official recipe added in turn, same budget and episodes
A="--methods mtl --out-dir runs/ablation"
$M compare $A --head-init official --results-dir $B/ablation/1_head_init
$M compare $A --head-init official --lr-schedule plateau --early-stopping-patience 15 --results-dir $B/ablation/2_schedule
$M compare $A --head-init official --lr-schedule plateau --early-stopping-patience 15 --augment auto --results-dir $B/ablation/3_augment
$M compare $A --recipe official --results-dir $B/ablation/4_per_task
# the paper's regime at full width: stopped after MTL (5.5 s/step, 70 s per validation on 2 cores);
# scripts/issue13_regime.sh ran the narrow version instead
$M compare --methods mtl,metaoptnet,protonet --model resnet12 --image-size 32 --meta-batch 4 --budget 300 --eval-every 30 --results-dir $B/regime_resnet12_32 --out-dir runs/regime
$M bench cost --backbones resnet12@32 --max-tasks 1 --steps 1 --results-dir $B/cost_resnet12_32
