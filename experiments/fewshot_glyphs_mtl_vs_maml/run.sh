#!/usr/bin/env bash
# Re-create results/*.json of the longer glyph comparisons. Resumable: a part whose JSON exists is skipped
# (delete it to rerun); each part's run lives under runs/experiments/.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
MB="${MB:-.venv/bin/metabridge}"
RUNS="${RUNS:-runs/experiments/fewshot_glyphs_mtl_vs_maml}"
mkdir -p "$HERE/results/full_protocol_parts" "$HERE/results/full_protocol_diagnostics"

part() {  # part RESULT ARGS...: one `metabridge compare`, its JSON and plot copied to results/RESULT.{json,png}
  local name=$1; shift
  [[ -f "$HERE/results/$name.json" ]] && { echo "skip $name: results/$name.json exists"; return; }
  "$MB" compare "$@" --out "$RUNS/$name"
  cp "$RUNS/$name/compare.json" "$HERE/results/$name.json"
  cp "$RUNS/$name/compare.png" "$HERE/results/$name.png"
}

# Every part states the recipe, budget and schedule it ran with (compare's defaults have changed since).
part four_methods_500s --methods mtl metaoptnet maml anil --recipe default --budget-seconds 500 --eval-every-seconds 50

# The --full protocol (1200 s per method), in sittings, then merged.
FULL=(--full --recipe default --budget-seconds 1200 --eval-every-seconds 60)
part full_protocol_parts/mtl_maml "${FULL[@]}" --methods mtl maml
for m in anil metaoptnet fomaml protonet; do part "full_protocol_parts/$m" "${FULL[@]}" --methods "$m"; done
part full_protocol_merged --merge "$RUNS"/full_protocol_parts/{mtl_maml,anil,metaoptnet,fomaml,protonet}
mv -f "$HERE/results/full_protocol_merged.png" "$HERE/plot.png" 2>/dev/null || true
for d in "" _C1 _C10 _ft10 _taskbn; do  # what MTL's validation-to-test gap is not
  out="$HERE/results/full_protocol_diagnostics/mtl_test_1shot$d.json"
  [[ -f $out ]] && continue
  case $d in _C1) hp=(--hp C=1);; _C10) hp=(--hp C=10);; _ft10) hp=(--hp finetune_steps=10);;
             _taskbn) hp=(--hp test_batch_norm=task);; *) hp=();; esac
  "$MB" eval "$RUNS/full_protocol_parts/mtl_maml/mtl" --split test --k-shot 1 --episodes 1000 "${hp[@]}" --out "$out"
done

# Augmentation: MTL and MAML by steps, merged; MTL, MAML and ProtoNet at 200 s.
STEPS=(--full --budget-steps 1000 --eval-every-steps 50 --recipe default --lr-schedule constant --early-stopping-patience never)
part augment_1000steps_mtl --methods mtl "${STEPS[@]}" --augment auto
part augment_1000steps_maml --methods maml "${STEPS[@]}" --augment auto
part augment_1000steps_mtl_vs_maml --merge "$RUNS/augment_1000steps_mtl" "$RUNS/augment_1000steps_maml"
part augment_200s --methods mtl maml protonet --recipe default --budget-seconds 200 --eval-every-seconds 25 --augment auto
