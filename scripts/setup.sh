#!/usr/bin/env bash
# One-time, idempotent set-up: a virtual environment in .venv with metabridge installed.
# torch is pinned to 2.13.0 first so that pip on a CPU-only machine takes the CPU wheel
# (and never resolves an unpinned `torch` to a multi-GB CUDA build); the package itself
# only asks for torch>=2.1, which the pinned install already satisfies. The [rl] and
# [metaworld] extras (gymnasium, MuJoCo, Meta-World: small wheels) let the tests cover the
# simulator-backed meta-RL families; nothing else needs them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
VPIP=".venv/bin/python -m pip --disable-pip-version-check -q"
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  $VPIP install "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
fi
.venv/bin/python -c "import torch" || { echo "torch failed to install; see above" >&2; exit 1; }
$VPIP install -e ".[dev,rl,metaworld]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import metabridge" || { echo "metabridge failed to install; see above" >&2; exit 1; }
