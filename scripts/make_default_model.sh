#!/usr/bin/env bash
# Regenerate the default model shipped in dymu_rt/assets/default_bundle from scratch:
# train the synth-nyu preset on procedural scenes with the project's own `dymu-rt train`,
# then build a preference grid with `dymu-rt build`. Measured for issue 22 on the shared 2-core
# machine (load average 1.5-9 from other sessions), training on ONE thread: about 7.9 minutes
# (shared pre-training ~40 s, anchor 2.0 min, edge 3.6 min with the affinity and the anchor's
# eval, weight 1.5 min); the build 10-45 s. With both cores idle (torch's default threads) it
# should be shorter; that was not re-measured. Before issue 22 (no shared pre-training): ~3 min.
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
