#!/usr/bin/env bash
# The measurements of issues 16 and 17 on the 2-core CPU machine, one after another on a
# quiet machine (each is a timing or a fixed-budget training: never two at once).
set -eu
cd "$(dirname "$0")/.."
MB=.venv/bin/metabridge
# issue 17: second-order MAML (and FOMAML / ANIL) against higher, TorchOpt and learn2learn
$MB bench peers --shots 1 --libs metabridge,metabridge:c1,higher,torchopt,learn2learn --out bench/results/peers_cpu_issue17.json
# issue 17: 2-process data-parallel MTL on glyphs against one process
$MB bench ddp --steps 60 --skip 10
# issue 16: black-box learners trained at 5-way 5-shot (glyphs allow K+Q <= 11: 6 queries) beside ProtoNet
$MB compare --methods protonet,icl,mann,snail --k-shot 5 --q-query 6 \
  --out-dir runs/compare_blackbox_k5 --results-dir bench/results/black_box_k5
# issue 16: the repaired MANN and SNAIL at 1-shot training beside ProtoNet and ICL
$MB compare --methods protonet,icl,mann,snail --k-shot 1 \
  --out-dir runs/compare_blackbox_k1 --results-dir bench/results/black_box_k1
