#!/usr/bin/env bash
# Re-create results/ of the negative-transfer diagnostics: the equal-weighting run on Multi-Fashion-MNIST with
# gradient conflict, lookahead affinity and task grouping every 100 steps.
# Resumable: finished runs are kept under runs/experiments/ and reused; skipped when
# results/equal_weighting_diagnostics.json exists (delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUN="${RUNS:-runs/experiments}/multitask_diagnostics"
JSON="$HERE/results/equal_weighting_diagnostics.json"
[[ -f "$JSON" ]] && { echo "skip: $JSON exists"; exit 0; }
mkdir -p "$HERE/results"
"$MB" multitask --benchmark multi_fashion_mnist --methods equal --no-stl --diagnostics-every 100 --threads 1 \
    --out "$RUN"
cp "$RUN/report.json" "$JSON"
cp "$RUN/gradient_conflict.png" "$HERE/plot.png"
for plot in affinity loss_trajectories weight_trajectories; do cp "$RUN/$plot.png" "$HERE/results/$plot.png"; done
