#!/usr/bin/env bash
# Re-create results/ of the Multi-Fashion-MNIST weighting sweep: 16 weighting methods, single-task baselines
# and equal weighting tuned over the learning rate, gradient diagnostics on the equal-weighting run; the whole
# sweep once per seed in SEEDS (default "0 1 2"): seed 0 writes results/weighting_sweep.json (and the plots),
# seed N results/weighting_sweep_seedN.json. Resumable: finished runs are kept under runs/experiments/ and reused
# (all seeds share that folder, so `--seeds 0 1 2` over it reuses them too); a seed whose JSON exists is skipped
# (delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUN="${RUNS:-runs/experiments}/multitask_multi_fashion_mnist"
mkdir -p "$HERE/results"
for seed in ${SEEDS:-0 1 2}; do
  name=weighting_sweep
  [[ $seed == 0 ]] || name+="_seed$seed"
  [[ -f "$HERE/results/$name.json" ]] && { echo "skip seed $seed: results/$name.json exists"; continue; }
  "$MB" multitask --benchmark multi_fashion_mnist --seeds "$seed" --tune-equal-lrs 3e-4 3e-3 \
      --diagnostics-every 100 --threads 1 --out "$RUN"
  cp "$RUN/report.json" "$HERE/results/$name.json"
  if [[ $seed == 0 ]]; then
    cp "$RUN/delta_m.png" "$HERE/plot.png"
    for plot in weight_trajectories loss_trajectories gradient_conflict affinity; do
      cp "$RUN/$plot.png" "$HERE/results/$plot.png"
    done
  fi
done
