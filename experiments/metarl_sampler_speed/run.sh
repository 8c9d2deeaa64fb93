#!/usr/bin/env bash
# Re-create results/ of the sampler-speed benchmark: raw environment steps/s against the task-batched sampler and
# its processing, on HalfCheetah-Vel (needs the rl extra: pip install 'metabridge[rl]') and on 2D navigation.
# A part whose JSON exists is skipped (delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments}/metarl_sampler_speed"
mkdir -p "$HERE/results"

if [[ ! -f "$HERE/results/halfcheetah_velocity.json" ]]; then
  OMP_NUM_THREADS=1 "$MB" bench rl_sampler --env halfcheetah-vel --tasks 20 --rollouts 20 --horizon 200 \
      --hidden 64 64 --threads 1 --out "$RUNS"
  cp "$RUNS/halfcheetah_vel.json" "$HERE/results/halfcheetah_velocity.json"
  cp "$RUNS/halfcheetah_vel.png" "$HERE/plot.png"
fi
if [[ ! -f "$HERE/results/navigation_2d.json" ]]; then
  OMP_NUM_THREADS=1 "$MB" bench rl_sampler --env navigation-2d --tasks 20 --rollouts 20 --horizon 100 \
      --hidden 100 100 --threads 1 --out "$RUNS"
  cp "$RUNS/navigation_2d.json" "$HERE/results/navigation_2d.json"
  cp "$RUNS/navigation_2d.png" "$HERE/results/navigation_2d.png"
fi
