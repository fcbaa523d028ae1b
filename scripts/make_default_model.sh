#!/usr/bin/env bash
# Regenerate the default model shipped in dymu_rt/assets/default_bundle from scratch:
# train the synth-nyu preset on procedural scenes with the project's own `dymu-rt train`,
# then build a preference grid with `dymu-rt build`. Took ~3 minutes on 2 idle CPU cores (measured 2.5)
# before issue 22; the synth preset's shared pre-training (400 one-stream steps, ~0.45 of an anchor
# step each) adds about a tenth (not re-measured on an idle machine).
#
#   bash scripts/make_default_model.sh            # defaults below
#   RUN=runs/my-default GRID=0.1 bash scripts/make_default_model.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/default-synth-nyu}
GRID=${GRID:-0.1}
C_GRID=${C_GRID:-0.25}
OUT=dymu_rt/assets/default_bundle
SEED=${SEED:-0}

dymu-rt train --preset synth-nyu --out "$RUN" --seed "$SEED" --quiet
dymu-rt build "$RUN" --grid "$GRID" --c-grid "$C_GRID" --out "$RUN/bundle"
rm -rf "$OUT.new" && cp -r "$RUN/bundle" "$OUT.new"
rm -rf "$OUT" && mv "$OUT.new" "$OUT"
dymu-rt inspect "$OUT"
du -sh "$OUT"
