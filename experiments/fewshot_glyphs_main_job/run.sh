#!/usr/bin/env bash
# Re-create results/seed<N>.json and plot.png: `metabridge compare` with its defaults, one run per seed.
# Resumable: a seed whose JSON exists is skipped (delete it to rerun). SEEDS="0 1 2" by default.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
PY="${PY:-.venv/bin/python}"
RUNS="${RUNS:-runs/experiments/fewshot_glyphs_main_job}"
mkdir -p "$HERE/results"
for seed in ${SEEDS:-0 1 2}; do
  if [[ -f "$HERE/results/seed$seed.json" ]]; then echo "skip seed $seed: results/seed$seed.json exists"; continue; fi
  "$MB" compare --seed "$seed" --out "$RUNS/seed$seed"
  cp "$RUNS/seed$seed/compare.json" "$HERE/results/seed$seed.json"
done
PYTHONPATH="$HERE:$HERE/..${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$HERE/plot.py"
