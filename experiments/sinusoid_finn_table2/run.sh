#!/usr/bin/env bash
# Re-create results/*.json of the sinusoid experiment. Resumable: a part whose JSON exists is skipped
# (delete it to rerun); the training runs live under runs/experiments/ and resume from their checkpoints.
# The headline part (MAML, joint training, MTL) runs once per training seed in SEEDS (default "0 1 2 3 4"):
# seed 0 writes results/maml_drs_mtl.json, seed N results/maml_drs_mtl_seedN.json.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments/sinusoid_finn_table2}"
mkdir -p "$HERE/results"

part() {  # part NAME THREADS ARGS...: one `bench sinusoid` run, its JSON and plot copied into results/
  local name=$1 threads=$2; shift 2
  [[ -f "$HERE/results/$name.json" ]] && { echo "skip $name: results/$name.json exists"; return; }
  OMP_NUM_THREADS=$threads "$MB" bench sinusoid "$@" --out "$RUNS/$name" || return
  cp "$RUNS/$name/sinusoid.json" "$HERE/results/$name.json"
  if [[ $name == maml_drs_mtl ]]; then cp "$RUNS/$name/sinusoid.png" "$HERE/plot.png"
  elif [[ $name != maml_drs_mtl_seed* ]]; then cp "$RUNS/$name/sinusoid.png" "$HERE/results/$name.png"; fi
}

failed=""
for seed in ${SEEDS:-0 1 2 3 4}; do  # a seed whose training stops with an error writes no JSON; the others go on
  name=maml_drs_mtl
  [[ $seed == 0 ]] || name+="_seed$seed"
  part "$name" 1 --methods maml joint mtl --steps 70000 --seed "$seed" || failed+=" $seed"
done
part black_box_mann_icl 1 --methods mann icl --steps 3000
part black_box_snail 2 --methods snail --steps 3000
[[ -z $failed ]] || { echo "seed(s)$failed stopped with an error and wrote no JSON (see above)" >&2; exit 1; }
