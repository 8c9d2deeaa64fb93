#!/usr/bin/env bash
# Re-create results/uint8_in_memory.json (skipped when it exists: delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments/episode_sampling}"
mkdir -p "$HERE/results"
[[ -f "$HERE/results/uint8_in_memory.json" ]] && { echo "skip: results exist"; exit 0; }
"$MB" bench sampling --out "$RUNS"
cp "$RUNS/sampling_cpu.json" "$HERE/results/uint8_in_memory.json"
