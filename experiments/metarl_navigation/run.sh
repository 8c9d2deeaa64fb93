#!/usr/bin/env bash
# Re-create results/ of 2D navigation under Finn et al.'s protocol: MAML-TRPO and DRS-TRPO at equal samples, a
# random initial policy, and the per-method tuned test step. Resumable: the runs live under runs/experiments/ and a
# re-run continues from their checkpoints; skipped when results/finn_protocol.json exists (delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUN="${RUNS:-runs/experiments}/metarl_navigation"
[[ -f "$HERE/results/finn_protocol.json" ]] && { echo "skip: results/finn_protocol.json exists"; exit 0; }
mkdir -p "$HERE/results"
OMP_NUM_THREADS=1 "$MB" rl experiment --name navigation --threads 1 --no-progress --out "$RUN" --runs "$RUN/runs"
cp "$RUN/results.json" "$HERE/results/finn_protocol.json"
cp "$RUN/returns.png" "$HERE/plot.png"
