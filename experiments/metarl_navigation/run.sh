#!/usr/bin/env bash
# Re-create results/ of 2D navigation under Finn et al.'s protocol: MAML-TRPO and DRS-TRPO at equal samples, a
# random initial policy and the per-method tuned test step, for seeds 0, 1, 2; then the fidelity parts (fidelity.py:
# where ours and Finn's code differ, each difference measured). Resumable: the runs live under runs/experiments/ and a
# re-run continues from their checkpoints; a part whose JSON exists is skipped (delete it to rerun). SEEDS="1 2"
# runs only those seeds; FIDELITY_STOP_AT (Unix time) stops the exact-Fisher training there with a checkpoint (a later
# run resumes it).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
PY="${PY:-.venv/bin/python}"
RUN="${RUNS:-runs/experiments}/metarl_navigation"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$HERE/results"

seed() {  # seed S: the whole protocol with seed S -> results/finn_protocol[_sS].json
  local s=$1 name=finn_protocol.json
  [[ $s != 0 ]] && name=finn_protocol_s$s.json
  [[ -f "$HERE/results/$name" ]] && { echo "skip seed $s: results/$name exists"; return; }
  "$MB" rl experiment --name navigation --seed "$s" --threads 1 --no-progress --out "$RUN/s$s" --runs "$RUN/runs"
  cp "$RUN/s$s/results.json" "$HERE/results/$name"
  if [[ $s == 0 ]]; then cp "$RUN/s$s/returns.png" "$HERE/plot.png"; fi
}

fidelity() {  # fidelity PART...: the parts of fidelity.py (each skipped when its JSON exists)
  "$PY" "$HERE/fidelity.py" --runs "$RUN/runs" --results "$HERE/results" ${FIDELITY_STOP_AT:+--stop-at "$FIDELITY_STOP_AT"} "$@"
}

for s in ${SEEDS:-0 1 2}; do
  seed "$s"
  [[ $s == 0 ]] || fidelity references curvature "eval-s$s" "noise-s$s"
done
fidelity exact-fisher-s0
