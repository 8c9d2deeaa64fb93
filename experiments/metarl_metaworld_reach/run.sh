#!/usr/bin/env bash
# Re-create results/ of Meta-World ML1 reach-v3, scaled down (needs the metaworld extra:
# pip install 'metabridge[rl,metaworld]'): MAML-TRPO, DRS-TRPO and a random policy, one test update.
# Resumable: the runs live under runs/experiments/ and continue from their checkpoints; skipped when
# results/ml1_reach.json exists (delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUN="${RUNS:-runs/experiments}/metarl_metaworld_reach"
[[ -f "$HERE/results/ml1_reach.json" ]] && { echo "skip: results/ml1_reach.json exists"; exit 0; }
mkdir -p "$HERE/results"
OMP_NUM_THREADS=1 "$MB" rl experiment --name metaworld-reach --threads 1 --no-progress --out "$RUN" --runs "$RUN/runs" \
    --iterations 20 --eval-every 10 --checkpoint-every 5
cp "$RUN/results.json" "$HERE/results/ml1_reach.json"
cp "$RUN/returns.png" "$HERE/plot.png"
