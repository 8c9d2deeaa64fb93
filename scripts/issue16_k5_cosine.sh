#!/usr/bin/env bash
# Issue 16's target setting with a longer budget: ProtoNet and the in-context transformer
# trained at 5-way 5-shot for 500 s each, both on the same cosine schedule, on a quiet machine.
set -eu
cd "$(dirname "$0")/.."
.venv/bin/metabridge compare --methods protonet,icl --k-shot 5 --q-query 6 --budget 500 --eval-every 50 \
  --lr-schedule cosine --out-dir runs/compare_blackbox_k5_500 --results-dir bench/results/black_box_k5_500s_cosine
