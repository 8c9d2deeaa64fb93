#!/usr/bin/env bash
# Re-create results/ of the QM9 weighting sweep: 16 weighting methods, single-task baselines and equal weighting
# tuned over the learning rate, 11 targets; the whole sweep once per seed in SEEDS (default "0 1 2"): seed 0 writes
# results/weighting_sweep.json (and the plots), seed N results/weighting_sweep_seedN.json. Needs the qm9 extra
# (pip install 'metabridge[qm9]'): the CSVs come from the installed qm9pack, or from the folder QM9_CSV names.
# Resumable: finished runs are kept under runs/experiments/ and reused (all seeds share that folder, so
# `--seeds 0 1 2` over it reuses them too); a seed whose JSON exists is skipped (delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUN="${RUNS:-runs/experiments}/multitask_qm9"
mkdir -p "$HERE/results"
DATA=()
[[ -n "${QM9_CSV:-}" ]] && DATA=(--benchmark-kwargs "csv_dir=$QM9_CSV")
for seed in ${SEEDS:-0 1 2}; do
  name=weighting_sweep
  [[ $seed == 0 ]] || name+="_seed$seed"
  [[ -f "$HERE/results/$name.json" ]] && { echo "skip seed $seed: results/$name.json exists"; continue; }
  "$MB" multitask ${DATA[@]+"${DATA[@]}"} --benchmark qm9 --seeds "$seed" --steps 5000 --tune-equal-lrs 3e-4 3e-3 \
      --threads 1 --out "$RUN"
  cp "$RUN/report.json" "$HERE/results/$name.json"
  if [[ $seed == 0 ]]; then
    cp "$RUN/delta_m.png" "$HERE/plot.png"
    for plot in weight_trajectories loss_trajectories; do cp "$RUN/$plot.png" "$HERE/results/$plot.png"; done
  fi
done
