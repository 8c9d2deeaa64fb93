#!/usr/bin/env bash
# Issue 13's cost table at ResNet-12 / 84 px on the 2-core CPU: one task per configuration,
# scaled to each paper's meta-batch, the first step timed (no warm-up: an upper bound).
set -eu
cd "$(dirname "$0")/.."
.venv/bin/metabridge bench cost --backbones resnet12@84 --max-tasks 1 --steps 1 --warmup 0 \
  --max-seconds-per-config 240 --results-dir bench/results/cost_resnet12_84
