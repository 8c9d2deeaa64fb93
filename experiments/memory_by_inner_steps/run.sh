#!/usr/bin/env bash
# Re-create results/maml_1shot_meta_batch4.json (skipped when it exists: delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments/memory_by_inner_steps}"
mkdir -p "$HERE/results"
[[ -f "$HERE/results/maml_1shot_meta_batch4.json" ]] && { echo "skip: results exist"; exit 0; }
"$MB" bench memory_steps --out "$RUNS"
cp "$RUNS/memory_steps_cpu.json" "$HERE/results/maml_1shot_meta_batch4.json"
