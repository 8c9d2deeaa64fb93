#!/usr/bin/env bash
# Re-create results/ of HalfCheetah-Vel at equal samples (needs the rl extra: pip install 'metabridge[rl]'):
# MAML-TRPO, DRS-TRPO, DRS-PPO and a random policy, once with Finn et al.'s step sizes and once with Gao & Sener's.
# Resumable: the runs live under runs/experiments/ and continue from their checkpoints; a part whose JSON exists
# is skipped (delete it to rerun). The two parts can run side by side (one thread each).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments}/metarl_halfcheetah_velocity"
mkdir -p "$HERE/results"

part() {  # part NAME PRESET PLOT: one `rl experiment`, its JSON and plot copied into this folder
  local name=$1 preset=$2 plot=$3
  [[ -f "$HERE/results/$name.json" ]] && { echo "skip $name: results/$name.json exists"; return; }
  OMP_NUM_THREADS=1 "$MB" rl experiment --name "$preset" --threads 1 --no-progress \
      --out "$RUNS/$name" --runs "$RUNS/$name/runs"
  cp "$RUNS/$name/results.json" "$HERE/results/$name.json"
  cp "$RUNS/$name/returns.png" "$HERE/$plot"
}

part finn_steps halfcheetah-vel plot.png
part gao_steps halfcheetah-vel-gao-steps results/gao_steps.png
