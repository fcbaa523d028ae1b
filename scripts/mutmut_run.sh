#!/usr/bin/env bash
# One-off mutation run (mutmut 3.x) over the modules where a silent error costs users most,
# each module against its own test files only (2 shared cores: the whole suite per mutant
# would take days). Usage:
#   scripts/mutmut_run.sh                 # every module below
#   scripts/mutmut_run.sh fold hv         # just these (names from the table)
# Each module runs in its own scratch copy (/tmp/dymu-mutmut/<name>): mutmut writes a
# mutants/ tree and a cache beside the sources, and the working tree stays untouched.
# Results: /tmp/dymu-mutmut/<name>/results.txt (mutmut results --all true) and a one-line
# score per module on stdout. See docs/testing.md.
set -euo pipefail
[ -x "$(dirname "$0")/../.venv/bin/mutmut" ] && export PATH="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin:$PATH"
repo=$(cd "$(dirname "$0")/.." && pwd)
scratch=${MUTMUT_SCRATCH:-/tmp/dymu-mutmut}
# name | module | its tests (now) | its tests before issue 28 (MUTMUT_BEFORE=1: the "before" score)
table='
fold|dymu_rt/core/bn_fold.py|tests/compile/test_compile_fold.py tests/models/test_fold_reference.py|tests/compile/test_compile_fold.py
preference|dymu_rt/core/preference.py|tests/control/test_control_preference.py tests/control/test_control_preference_properties.py tests/control/test_preference_edges.py|tests/control/test_control_preference.py tests/control/test_control_preference_properties.py
selection|dymu_rt/core/selector.py|tests/control/test_selector.py|tests/control/test_selector.py
binding|dymu_rt/runtime/binding.py|tests/runtime/test_runtime_preference.py tests/runtime/test_binding.py|tests/runtime/test_runtime_preference.py
checksum|dymu_rt/bundle/checksum.py|tests/bundle/test_bundle_checksum.py|tests/runtime/test_runtime_open.py
paths|dymu_rt/bundle/paths.py|tests/bundle/test_bundle_paths.py tests/bundle/test_bundle_paths_wire.py|tests/security/test_hostile_bundles.py
hv|dymu_rt/evaluate/hypervolume.py|tests/evaluate/test_evaluate_hypervolume.py tests/evaluate/test_hypervolume_edges.py|tests/evaluate/test_evaluate_hypervolume.py
compare|dymu_rt/evaluate/comparison.py|tests/evaluate/test_delta_t.py tests/evaluate/test_compare_report.py tests/evaluate/test_compare_runs.py tests/evaluate/test_compare_plot.py|tests/tasks/test_tasks_delta_m.py
'
want=" $* "
echo "$table" | while IFS='|' read -r name module tests before; do
  [ -n "$name" ] || continue
  [ "${MUTMUT_BEFORE:-0}" = 1 ] && tests=$before
  if [ $# -gt 0 ] && [[ "$want" != *" $name "* ]]; then continue; fi
  dir="$scratch/$name"
  rm -rf "$dir" && mkdir -p "$dir"
  cp -r "$repo/dymu_rt" "$repo/tests" "$dir/"
  sel=$(printf '"%s", ' $tests)
  cat > "$dir/setup.cfg" <<CFG
[mutmut]
source_paths=dymu_rt
only_mutate=$module
pytest_add_cli_args=-q
    -x
    -p
    no:cacheprovider
pytest_add_cli_args_test_selection=$(printf '%s\n    ' $tests)
CFG
  # MUTMUT_RERUN_SURVIVORS=<scratch of an earlier run>: run only the mutants that survived
  # there (tests were only added since, so its killed mutants stay killed); the score
  # counts both.
  only=""; prior=0
  if [ -n "${MUTMUT_RERUN_SURVIVORS:-}" ] && [ -f "$MUTMUT_RERUN_SURVIVORS/$name/results.txt" ]; then
    only=$(grep -v ': killed' "$MUTMUT_RERUN_SURVIVORS/$name/results.txt" | grep ': ' | sed 's/^ *//; s/:.*//' | tr '\n' ' ')
    prior=$(grep -c ': killed' "$MUTMUT_RERUN_SURVIVORS/$name/results.txt" || true)
  fi
  # shellcheck disable=SC2086
  (cd "$dir" && OMP_NUM_THREADS=1 nice -n 10 mutmut run --max-children "${MUTMUT_CHILDREN:-2}" $only >"$dir/run.log" 2>&1 || true)
  (cd "$dir" && mutmut results --all true >"$dir/results.txt" 2>&1 || true)
  if [ -n "$only" ]; then
    grep -E "($(echo $only | sed 's/ /|/g')):" "$dir/results.txt" > "$dir/rerun.txt" || true
    killed=$(( prior + $(grep -c ': killed' "$dir/rerun.txt" || true) ))
    total=$(grep -c ': ' "$MUTMUT_RERUN_SURVIVORS/$name/results.txt" || true)
    echo "$name ($module): killed $killed of $total (survivors of $MUTMUT_RERUN_SURVIVORS rerun)  [$dir/rerun.txt]"
  else
    killed=$(grep -c ': killed' "$dir/results.txt" || true)
    total=$(grep -c ': ' "$dir/results.txt" || true)
    echo "$name ($module): killed $killed of $total  [$dir/results.txt]"
  fi
done
