#!/usr/bin/env bash
# Re-create results/heads_32_tasks_5way_5shot.json (skipped when it exists: delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments/heads_solvers}"
mkdir -p "$HERE/results"
[[ -f "$HERE/results/heads_32_tasks_5way_5shot.json" ]] && { echo "skip: results exist"; exit 0; }
OMP_NUM_THREADS=1 "$MB" bench heads --out "$RUNS"
cp "$RUNS/heads.json" "$HERE/results/heads_32_tasks_5way_5shot.json"
