#!/usr/bin/env bash
# The measurements of issue 14 on this machine. The two sweeps ran side by side, one torch
# thread each (--threads 1); the cost benchmark and the bridge comparison ran alone afterwards.
set -x
cd "$(dirname "$0")/.."
B=bench/results
M=.venv/bin/metabridge
QM9_CSV=${QM9_CSV:-$(.venv/bin/python -c "import importlib.util as u, pathlib; print(pathlib.Path(u.find_spec('qm9pack').origin).parent / 'data')")}
# Multi-Fashion-MNIST: 16 methods + STL per task + equal weighting tuned over lr, diagnostics on the equal run
$M mtl --benchmark multi_fashion_mnist --seeds 0 --tune-equal-lrs 3e-4,3e-3 --diagnostics-every 100 --threads 1 \
    --out $B/mtl/multi_fashion_mnist &
# QM9 (needs the qm9 extra: pip install 'metabridge[qm9]'), 11 targets
$M mtl --benchmark qm9 --benchmark-kwargs "{\"csv_dir\": \"$QM9_CSV\"}" --seeds 0 --steps 5000 \
    --tune-equal-lrs 3e-4,3e-3 --threads 1 --out $B/mtl/qm9 &
wait
# cost per step against equal weighting and against LibMTL (peer venv from ../shared/peers/install.sh)
$M bench mtl_cost
# the bridge: Wang et al.'s MTL with the classes of each batch as tasks under the min-max objective
$M compare --methods mtl --results-dir $B/bridge/mean --out-dir runs/bridge
$M compare --methods mtl --method-hparams '{"mtl": {"class_weighting": "minmax", "class_weighting_temperature": 0.5}}' \
    --results-dir $B/bridge/minmax_t0.5 --out-dir runs/bridge
