#!/usr/bin/env bash
# The prepared GPU check: everything metabridge claims about CUDA, in at most 8 minutes on
# one GPU, each part under its own time limit so one slow part cannot eat the others' time.
# Writes JSON (and the benches' PNGs) into $OUT (default experiments/gpu_check/results) and a
# summary.json saying which parts passed; docs/gen_results.py renders them into the results page.
#
#   bash scripts/gpu_check.sh            # on a machine with a CUDA GPU and the venv set up
#   OUT=/some/dir bash scripts/gpu_check.sh
#
# Parts (limit in seconds):
#   tests      60   the CUDA tests (the ones skipped on a CPU machine) + device-path tests
#   layouts    45   CUDA re-decision of the CPU-measured choices: grouped vs per-task Conv-4,
#                   channels-last, cudnn.benchmark (scripts/gpu_layouts.py)
#   peers     140   bench peers --device cuda (MAML / FOMAML / ANIL vs higher, TorchOpt,
#                   learn2learn where installed: scripts/install_peers.sh), 1- and 5-shot
#   cost       75   the MTL-vs-MAML cost table (bench cost) on Conv-4@28 and ResNet-12@84
#   compare   100   a short compare (MTL, MAML, ProtoNet; 30 s of training each) on glyphs
# Sum: 420 s, 470 s with each part's 10 s kill grace, inside the 8-minute budget.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
OUT_DIR=${OUT:-experiments/gpu_check/results}
mkdir -p "$OUT_DIR"
export METABRIDGE_GPU_CHECK=1
declare -A STATUS SECONDS_TAKEN

part() {  # part NAME LIMIT CMD...
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s.%N)
  echo "=== $name (limit ${limit}s): $*"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
  local rc=$?
  STATUS[$name]=$rc
  SECONDS_TAKEN[$name]=$(python3 -c "import time; print(round(time.time() - $t0, 1))")
  tail -n 15 "$LOGS/$name.log"
  echo "=== $name: rc=$rc in ${SECONDS_TAKEN[$name]} s"
}

"$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print('CUDA', ok, torch.__version__, torch.cuda.get_device_name(0) if ok else ''); sys.exit(0 if ok else 3)" \
  || { echo "no CUDA device: nothing to check"; exit 3; }
LOGS="$OUT_DIR/logs"  # the parts' logs and run folders, beside the JSON
mkdir -p "$LOGS"
"$PY" -m pip list 2>/dev/null | grep -iE "^(torch|higher|torchopt|learn2learn) " > "$LOGS/packages.txt"

part tests 60 "$PY" -m pytest -q -x -k "cuda or device" tests/
part layouts 45 "$PY" scripts/gpu_layouts.py --out "$OUT_DIR/layouts_cuda.json"
# --libs auto: every peer that imports (from this venv or the peer venv of scripts/install_peers.sh)
part peers 140 "$PY" -m metabridge bench peers --device cuda --libs auto metabridge:closed-bn --repeats 5 \
  --out "$LOGS/peers"
part cost 75 "$PY" -m metabridge bench cost --device cuda --backbones conv4@28 resnet12@84 --steps 3 \
  --out "$LOGS/cost"
part compare 100 "$PY" -m metabridge compare --device cuda --methods mtl maml protonet --budget-seconds 30 \
  --eval-every-seconds 10 --val-episodes 100 --test-episodes 300 --out "$LOGS/compare"
for pair in peers/peers_cuda:peers_cuda cost/cost_cuda:cost_cuda compare/compare:compare_cuda; do
  src=$LOGS/${pair%%:*}; dst=$OUT_DIR/${pair##*:}
  [ -f "$src.json" ] && cp "$src.json" "$dst.json"
  [ -f "$src.png" ] && cp "$src.png" "$dst.png"
done

"$PY" - "$OUT_DIR" <<EOF
import json, sys
status = {$(for k in "${!STATUS[@]}"; do printf '"%s": [%s, %s], ' "$k" "${STATUS[$k]}" "${SECONDS_TAKEN[$k]}"; done)}
summary = {name: {"rc": rc, "seconds": s, "passed": rc == 0} for name, (rc, s) in status.items()}
json.dump(summary, open(sys.argv[1] + "/summary.json", "w"), indent=2)
print(json.dumps(summary, indent=2))
EOF
rm -rf "$LOGS/peers" "$LOGS/cost" "$LOGS/compare"  # run folders (checkpoints): their JSON and PNG are copied above
