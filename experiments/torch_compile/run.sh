#!/usr/bin/env bash
# Re-create results/conv4_mtl_forward_backward.json (skipped when it exists: delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments/torch_compile}"
mkdir -p "$HERE/results"
[[ -f "$HERE/results/conv4_mtl_forward_backward.json" ]] && { echo "skip: results exist"; exit 0; }
"$MB" bench torch_compile --out "$RUNS"
cp "$RUNS/torch_compile_cpu.json" "$HERE/results/conv4_mtl_forward_backward.json"
