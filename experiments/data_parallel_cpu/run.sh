#!/usr/bin/env bash
# Re-create results/mtl_glyphs_2_processes.json and plot.png (skipped when the JSON exists: delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments/data_parallel_cpu}"
mkdir -p "$HERE/results"
[[ -f "$HERE/results/mtl_glyphs_2_processes.json" ]] && { echo "skip: results exist"; exit 0; }
"$MB" bench ddp --steps 60 --skip 10 --out "$RUNS"
cp "$RUNS/ddp_cpu.json" "$HERE/results/mtl_glyphs_2_processes.json"
cp "$RUNS/ddp_cpu.png" "$HERE/plot.png"
