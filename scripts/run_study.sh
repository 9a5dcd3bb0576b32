#!/usr/bin/env bash
# The experiments' run plan, most useful runs first: seed 0 of every suite, then seed 1, ...,
# each suite up to its planned seeds (Suite.seeds: 4 for Tables 1, 2 and 5, 2 for Tables 3-4).
# One run at a time on one thread, so that the other core stays free. Finished runs are
# skipped, interrupted ones resumed: rerun it after any stop. A second worker on a second
# core runs the same plan from its end (--from-end); run folders are locked, so where the two
# meet one of them skips the run the other holds (rerun to pick it up).
# Usage: scripts/run_study.sh [--from-end] [extra `cclnn ablate` options]
set -u
cd "$(dirname "$0")/.."
cclnn=(python -m cclnn)
from_end=0
if [ "${1:-}" = "--from-end" ]; then from_end=1; shift; fi
run() { "${cclnn[@]}" ablate "$1" --budget 2000 --seeds "$2" --jobs 1 --threads 1 \
          --data-root ../shared/data "${@:3}" || echo "ablate $1 seed $2 failed: $?"; }
mapfile -t plan < <(python -c "
from cclnn.experiments.suites import SUITES
first = ['table1', 'table2', 'table5']  # the claims between close rows, then the sweeps
order = first + [n for n in SUITES if n not in first]
for seed in range(max(s.seeds for s in SUITES.values())):
    print(*(f'{n} {seed}' for n in order if seed < SUITES[n].seeds), sep='\\n')")
[ ${#plan[@]} -gt 0 ] || { echo "run_study.sh: no plan (cclnn not importable?)" >&2; exit 2; }
if [ "$from_end" = 1 ]; then
  for ((i = ${#plan[@]} - 1; i >= 0; i--)); do run ${plan[i]} "$@"; done
else
  for item in "${plan[@]}"; do run $item "$@"; done
fi
