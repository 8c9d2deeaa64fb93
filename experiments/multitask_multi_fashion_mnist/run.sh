#!/usr/bin/env bash
# Re-create results/ of the Multi-Fashion-MNIST weighting sweep: 16 weighting methods, single-task baselines
# and equal weighting tuned over the learning rate, one seed, gradient diagnostics on the equal-weighting run.
# Resumable: finished runs are kept under runs/experiments/ and reused; skipped when
# results/weighting_sweep.json exists (delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUN="${RUNS:-runs/experiments}/multitask_multi_fashion_mnist"
[[ -f "$HERE/results/weighting_sweep.json" ]] && { echo "skip: results/weighting_sweep.json exists"; exit 0; }
mkdir -p "$HERE/results"
"$MB" multitask --benchmark multi_fashion_mnist --seeds 0 --tune-equal-lrs 3e-4 3e-3 --diagnostics-every 100 \
    --threads 1 --out "$RUN"
cp "$RUN/report.json" "$HERE/results/weighting_sweep.json"
cp "$RUN/delta_m.png" "$HERE/plot.png"
for plot in weight_trajectories loss_trajectories gradient_conflict affinity; do
  cp "$RUN/$plot.png" "$HERE/results/$plot.png"
done
