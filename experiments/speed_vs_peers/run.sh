#!/usr/bin/env bash
# Re-create results/*.json of the speed comparison against the peer libraries (install them first:
# bash scripts/install_peers.sh). Resumable: a part whose JSON exists is skipped (delete it to rerun).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments/speed_vs_peers}"
mkdir -p "$HERE/results"

part() {  # part RESULT ARGS...: one `metabridge bench peers`, JSON and plot copied into results/
  local name=$1; shift
  [[ -f "$HERE/results/$name.json" ]] && { echo "skip $name: results/$name.json exists"; return; }
  "$MB" bench peers "$@" --out "$RUNS/$name"
  cp "$RUNS/$name/peers_cpu.json" "$HERE/results/$name.json"
  cp "$RUNS/$name/peers_cpu.png" "$HERE/results/$name.png"
}

L2L=(higher torchopt learn2learn)
part higher_torchopt --libs metabridge metabridge:t1 higher torchopt --no-allocator
part higher_torchopt_allocator_tuned --libs metabridge higher torchopt
part with_learn2learn_1shot --shots 1 --libs metabridge metabridge:c1 "${L2L[@]}"
part with_learn2learn_maml_5shot --methods maml --shots 5 --libs metabridge metabridge:c1 "${L2L[@]}"
part closed_form_batch_norm_1shot --shots 1 --libs metabridge metabridge:aten-bn "${L2L[@]}"
part execution_variants_maml_1shot --methods maml --shots 1 --meta-batch 8 --repeats 3 --libs metabridge \
  metabridge:t1 metabridge:all metabridge:all-cl metabridge:all-im2col metabridge:loop metabridge:vmap torchopt
mv -f "$HERE/results/closed_form_batch_norm_1shot.png" "$HERE/plot.png" 2>/dev/null || true
