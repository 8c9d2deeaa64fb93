#!/usr/bin/env bash
# Re-create results/ of Gao & Sener's linear-regression trade-off: the exact-vs-Monte-Carlo check and the sweep over
# M, N and the step size, for kappa = 0 and kappa = 1.
# Skipped when both JSON files exist (delete them to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUN="${RUNS:-runs/experiments}/theory_linreg_tradeoff"
if [[ -f "$HERE/results/kappa0.json" && -f "$HERE/results/kappa1.json" ]]; then
  echo "skip: results/kappa0.json and results/kappa1.json exist"; exit 0
fi
mkdir -p "$HERE/results"
"$MB" theory linreg --coupling 0 1 --out "$RUN"
for k in 0 1; do
  cp "$RUN/theory_linreg_kappa$k.json" "$HERE/results/kappa$k.json"
  cp "$RUN/theory_linreg_kappa${k}_split.png" "$HERE/results/kappa${k}_split.png"
done
cp "$RUN/theory_linreg_kappa0_heatmap.png" "$HERE/results/kappa0_heatmap.png"
cp "$RUN/theory_linreg_kappa1_heatmap.png" "$HERE/plot.png"
