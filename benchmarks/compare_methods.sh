#!/usr/bin/env bash
# Train every method on one preset and put them side by side (issue 18).
#   bash benchmarks/compare_methods.sh [OUT_DIR] [PRESET]   (PRESET e.g. synth-nyu, synth-dag-nyu)
# Stage lengths: DYMU at the preset's defaults; AdaShare / DAG at STATIC_STEPS (warm-up,
# search, final) — the default below is a reduced schedule (100 / 100 / 300) for a quick
# look; STATIC_STEPS="" trains them at the presets' defaults, which is what README's tables
# (synth-nyu, synth-dag-nyu) use.
# DYMU_STEPS (default empty: the preset's defaults) and PHN_STEPS shorten the DYMU run and
# its PHN-BN baseline for a smoke run, e.g.
#   DYMU_STEPS="--anchor-steps 20 --edge-steps 20 --weight-steps 20" PHN_STEPS="--steps 20" \
#   STATIC_STEPS="--anchor-steps 20 --edge-steps 20 --weight-steps 20" bash benchmarks/compare_methods.sh runs/cmp-tiny
# (accuracy from such tiny runs means nothing; the latency column does).
# Latency (dymu-rt compare): every row built into the bundle it deploys as and timed by the
# dymu-rt runtime (DYMU rows: grid bundle, steady state = the preference's folded engine; the others: static bundles, BN
# folded), ONNX Runtime CPU, 1 thread, batch 1, interleaved rounds, median.
# benchmarks/compare_latency_paths.py puts that beside the old folded-session timing.
# COMPARE_FLAGS (default empty) is passed to `dymu-rt compare`; docs/benchmarks.md's synth-nyu
# table used COMPARE_FLAGS="--retrain --n-val 400" (the paper's Δ_T: each uniform-r DYMU tree
# retrained as a static net, plus the single-task control; docs/method-quality.md).
set -euo pipefail
OUT=${1:-runs/compare}
PRESET=${2:-synth-nyu}
STATIC_STEPS=${STATIC_STEPS-"--anchor-steps 100 --edge-steps 100 --weight-steps 300"}
DYMU_STEPS=${DYMU_STEPS-""}
PHN_STEPS=${PHN_STEPS-""}
COMPARE_FLAGS=${COMPARE_FLAGS-""}
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
mkdir -p "$OUT"
dymu-rt train --preset "$PRESET" --out "$OUT/dymu" $DYMU_STEPS --quiet
dymu-rt train phn-bn --out "$OUT/dymu" $PHN_STEPS --quiet
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
dymu-rt compare "${RUNS[@]}" --out "$OUT/table" --threads 1 --rounds 20 --iters 20 $COMPARE_FLAGS
