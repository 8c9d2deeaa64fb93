#!/usr/bin/env bash
# Re-create results/*.json of the sinusoid experiment. Resumable: a part whose JSON exists is skipped
# (delete it to rerun); the training runs live under runs/experiments/ and resume from their checkpoints.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments/sinusoid_finn_table2}"
mkdir -p "$HERE/results"

part() {  # part NAME THREADS ARGS...: one `bench sinusoid` run, its JSON and plot copied into results/
  local name=$1 threads=$2; shift 2
  [[ -f "$HERE/results/$name.json" ]] && { echo "skip $name: results/$name.json exists"; return; }
  OMP_NUM_THREADS=$threads "$MB" bench sinusoid "$@" --out "$RUNS/$name"
  cp "$RUNS/$name/sinusoid.json" "$HERE/results/$name.json"
  if [[ $name == maml_drs_mtl ]]; then cp "$RUNS/$name/sinusoid.png" "$HERE/plot.png"
  else cp "$RUNS/$name/sinusoid.png" "$HERE/results/$name.png"; fi
}

part maml_drs_mtl 1 --steps 70000
part black_box_mann_icl 1 --methods mann icl --steps 3000
part black_box_snail 2 --methods snail --steps 3000
