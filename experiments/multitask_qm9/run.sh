#!/usr/bin/env bash
# Re-create results/ of the QM9 weighting sweep: 16 weighting methods, single-task baselines and equal weighting
# tuned over the learning rate, 11 targets, one seed. Needs the qm9 extra: pip install 'metabridge[qm9]'
# (QM9_CSV overrides where the CSVs are). Skipped when results/weighting_sweep.json exists (delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
PY="${PY:-.venv/bin/python}"
RUN="${RUNS:-runs/experiments}/multitask_qm9"
[[ -f "$HERE/results/weighting_sweep.json" ]] && { echo "skip: results/weighting_sweep.json exists"; exit 0; }
QM9_CSV="${QM9_CSV:-$("$PY" -c "import importlib.util as u, pathlib; print(pathlib.Path(u.find_spec('qm9pack').origin).parent / 'data')")}"
mkdir -p "$HERE/results"
"$MB" multitask --benchmark qm9 --benchmark-kwargs "{\"csv_dir\": \"$QM9_CSV\"}" --seeds 0 --steps 5000 \
    --tune-equal-lrs 3e-4 3e-3 --threads 1 --out "$RUN"
cp "$RUN/report.json" "$HERE/results/weighting_sweep.json"
cp "$RUN/delta_m.png" "$HERE/plot.png"
for plot in weight_trajectories loss_trajectories; do cp "$RUN/$plot.png" "$HERE/results/$plot.png"; done
