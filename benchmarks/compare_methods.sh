#!/usr/bin/env bash
# Train every method on one preset and put them side by side (issue 18).
#   bash benchmarks/compare_methods.sh [OUT_DIR] [PRESET]   (PRESET e.g. synth-nyu, synth-dag-nyu)
# Stage lengths: DYMU at the preset's defaults; AdaShare / DAG at STATIC_STEPS (warm-up,
# search, final) — the defaults below are the reduced CPU schedules the issue-18 note's
# table used on a shared machine; unset them (STATIC_STEPS="") for the presets' defaults.
# Latency: ONNX Runtime CPU, 1 thread, batch 1, interleaved rounds (dymu-rt compare).
set -euo pipefail
OUT=${1:-runs/compare}
PRESET=${2:-synth-nyu}
STATIC_STEPS=${STATIC_STEPS-"--anchor-steps 100 --edge-steps 100 --weight-steps 300"}
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
mkdir -p "$OUT"
dymu-rt train --preset "$PRESET" --out "$OUT/dymu" --quiet
dymu-rt train phn-bn --out "$OUT/dymu" --quiet
RUNS=("$OUT/dymu")
# AdaShare skips residual blocks: the VGG-16 presets (the DAG paper's network) have none.
if python -c "import sys; from dymu_rt.models.presets import get_preset; sys.exit(get_preset('$PRESET').backbone.kind == 'vgg16')"; then
  dymu-rt train --method adashare --preset "$PRESET" --out "$OUT/adashare" $STATIC_STEPS --quiet
  RUNS+=("$OUT/adashare")
fi
for M in 3 5 7; do
  dymu-rt train --method dag --flow $M --preset "$PRESET" --out "$OUT/dag$M" $STATIC_STEPS --quiet
  RUNS+=("$OUT/dag$M")
done
dymu-rt compare "${RUNS[@]}" --out "$OUT/table" --threads 1 --rounds 20 --iters 20
