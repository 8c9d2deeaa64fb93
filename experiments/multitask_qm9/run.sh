#!/usr/bin/env bash
# Re-create results/ of the QM9 weighting sweep: 16 weighting methods, single-task baselines and equal weighting
# tuned over the learning rate, 11 targets, one seed. Needs the qm9 extra (pip install 'metabridge[qm9]'): the CSVs
# come from the installed qm9pack, or from the folder QM9_CSV names. Resumable: finished runs are kept under
# runs/experiments/ and reused; skipped when results/weighting_sweep.json exists (delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUN="${RUNS:-runs/experiments}/multitask_qm9"
[[ -f "$HERE/results/weighting_sweep.json" ]] && { echo "skip: results/weighting_sweep.json exists"; exit 0; }
mkdir -p "$HERE/results"
DATA=()
[[ -n "${QM9_CSV:-}" ]] && DATA=(--benchmark-kwargs "csv_dir=$QM9_CSV")
"$MB" multitask ${DATA[@]+"${DATA[@]}"} --benchmark qm9 --seeds 0 --steps 5000 --tune-equal-lrs 3e-4 3e-3 --threads 1 \
    --out "$RUN"
cp "$RUN/report.json" "$HERE/results/weighting_sweep.json"
cp "$RUN/delta_m.png" "$HERE/plot.png"
for plot in weight_trajectories loss_trajectories; do cp "$RUN/$plot.png" "$HERE/results/$plot.png"; done
