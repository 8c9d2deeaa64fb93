#!/usr/bin/env bash
# Re-create results/ of Gao & Sener's trade-off maps: MAML-TRPO against DRS-TRPO over 5 seeds, on 2D navigation and
# on HalfCheetah-Vel (the latter needs the rl extra: pip install 'metabridge[rl]'). Resumable: the per-seed runs
# live under runs/experiments/ and continue from their checkpoints; a part whose JSON exists is skipped (delete it
# to rerun). The two parts can run side by side (one thread per run).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments}/metarl_tradeoff_map"
mkdir -p "$HERE/results"

part() {  # part NAME PLOT ARGS...: one `rl tradeoff`, its JSON and map copied into this folder
  local name=$1 plot=$2; shift 2
  [[ -f "$HERE/results/$name.json" ]] && { echo "skip $name: results/$name.json exists"; return; }
  OMP_NUM_THREADS=1 "$MB" rl tradeoff --seeds 0 1 2 3 4 --threads 1 --no-progress \
      --out "$RUNS/$name" --runs "$RUNS/$name/runs" "$@"
  cp "$RUNS/$name/tradeoff.json" "$HERE/results/$name.json"
  cp "$RUNS/$name/tradeoff.png" "$HERE/$plot"
}

part navigation plot.png --preset navigation-finn --iterations 40 --eval-every 10 --checkpoint-every 10
part halfcheetah_velocity results/halfcheetah_velocity.png --preset halfcheetah-vel-small \
    --iterations 30 --eval-every 10 --checkpoint-every 10
