#!/usr/bin/env bash
# Re-create results/ of Wang et al.'s closeness sweep, part by part; a part whose JSON exists is skipped
# (delete it to rerun that part).
#  1. results/closeness.json: MTL, ANIL and MAML MLPs of widths 16/64/256 and depths 1-3 in PyTorch's standard
#     parameterisation, trained with Adam, on the same sinusoid tasks, 3 seeds (plot.png).
#  2. results/ntk_depth{1,2,3}.json: the same comparison in the NTK parameterisation trained with plain gradient
#     steps (the kernel regime), widths 16-1024, one part per depth (plot_ntk.png, drawn by `python report.py --plot`).
#  3. results/standard_300steps.json: the standard parameterisation with Adam at the NTK sweep's training length,
#     depths 2-3, widths 16-256, for its feature movement beside the NTK sweep's.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUN="${RUNS:-runs/experiments}/theory_closeness"
mkdir -p "$HERE/results"
if [[ -f "$HERE/results/closeness.json" ]]; then
  echo "skip: results/closeness.json exists"
else
  "$MB" theory closeness --widths 16 64 256 --depths 1 2 3 --steps 1000 --seeds 0 1 2 --out "$RUN/standard"
  cp "$RUN/standard/theory_closeness.json" "$HERE/results/closeness.json"
  cp "$RUN/standard/theory_closeness.png" "$HERE/plot.png"
fi
for depth in 1 2 3; do
  part="$HERE/results/ntk_depth$depth.json"
  if [[ -f "$part" ]]; then
    echo "skip: results/ntk_depth$depth.json exists"
    continue
  fi
  "$MB" theory closeness --parameterization ntk --optimizer sgd --outer-lr 0.1 --widths 16 64 256 1024 \
    --depths "$depth" --steps 300 --seeds 0 1 2 --threads 1 --out "$RUN/ntk_depth$depth"
  cp "$RUN/ntk_depth$depth/theory_closeness.json" "$part"
done
part="$HERE/results/standard_300steps.json"
if [[ -f "$part" ]]; then
  echo "skip: results/standard_300steps.json exists"
else
  "$MB" theory closeness --widths 16 64 256 --depths 2 3 --steps 300 --seeds 0 1 2 --threads 1 \
    --out "$RUN/standard_300steps"
  cp "$RUN/standard_300steps/theory_closeness.json" "$part"
fi
PYTHONPATH="$HERE/..${PYTHONPATH:+:$PYTHONPATH}" "${PY:-.venv/bin/python}" "$HERE/report.py" --plot
