#!/usr/bin/env bash
# Re-create results/ of Wang et al.'s closeness sweep: MTL, ANIL and MAML MLPs of widths 16/64/256 and depths 1-3
# on the same sinusoid tasks, 3 seeds. Skipped when results/closeness.json exists
# (delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUN="${RUNS:-runs/experiments}/theory_closeness"
[[ -f "$HERE/results/closeness.json" ]] && { echo "skip: results/closeness.json exists"; exit 0; }
mkdir -p "$HERE/results"
"$MB" theory closeness --widths 16 64 256 --depths 1 2 3 --steps 1000 --seeds 0 1 2 --out "$RUN"
cp "$RUN/theory_closeness.json" "$HERE/results/closeness.json"
cp "$RUN/theory_closeness.png" "$HERE/plot.png"
