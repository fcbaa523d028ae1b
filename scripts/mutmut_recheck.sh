#!/usr/bin/env bash
# Re-run the survivors of an earlier scripts/mutmut_run.sh module run against the current
# tests, without regenerating mutants (mutmut's trampolines pick the mutant from
# MUTANT_UNDER_TEST). Faster than a new mutmut run when only tests were added.
#   scripts/mutmut_recheck.sh /tmp/dymu-mutmut-before/preference tests/control/test_preference_edges.py [...]
# Prints "killed N of S survivors" and writes <dir>/recheck.txt (name: killed|survived).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$repo/.venv/bin/python" ] && export PATH="$repo/.venv/bin:$PATH"
dir=$1; shift
rm -rf "$dir/mutants/tests" && cp -r "$repo/tests" "$dir/mutants/tests"
grep ': ' "$dir/results.txt" | grep -v ': killed' | sed 's/^ *//; s/:.*//' > "$dir/survivors.txt"
: > "$dir/recheck.txt"
check() {
  if (cd "$1/mutants" && MUTANT_UNDER_TEST=$2 OMP_NUM_THREADS=1 timeout 300 python -m pytest -q -x -p no:cacheprovider \
        -p no:randomly "${@:3}" >/dev/null 2>&1); then echo "$2: survived"; else echo "$2: killed"; fi
}
export -f check
xargs -P "${MUTMUT_CHILDREN:-2}" -I{} bash -c 'check "$0" "$1" "${@:2}"' "$dir" {} "$@" < "$dir/survivors.txt" >> "$dir/recheck.txt"
echo "killed $(grep -c ': killed' "$dir/recheck.txt") of $(wc -l < "$dir/survivors.txt") survivors  [$dir/recheck.txt]"
