#!/usr/bin/env bash
# The experiments' run plan, most useful runs first: seed 0 of every suite, then seed 1, then
# seeds 2-3 of Tables 1, 2 and 5 (Tables 3-4 need two seeds). One run at a time on one thread,
# so that the other core stays free. Finished runs are skipped, interrupted ones resumed:
# rerun it after any stop. A second worker on a second core runs the same plan from its end
# (--from-end); run folders are locked, so where the two meet one of them skips the run the
# other holds (rerun to pick it up).
# Usage: scripts/run_study.sh [--from-end] [extra `cclnn ablate` options]
set -u
cd "$(dirname "$0")/.."
cclnn=(python -m cclnn)
from_end=0
if [ "${1:-}" = "--from-end" ]; then from_end=1; shift; fi
run() { "${cclnn[@]}" ablate "$1" --budget 2000 --seeds "$2" --jobs 1 --threads 1 \
          --data-root ../shared/data "${@:3}" || echo "ablate $1 seed $2 failed: $?"; }
plan=()
for seed in 0 1; do
  for suite in table1 table2 table5 table3 table4; do plan+=("$suite $seed"); done
done
for seed in 2 3; do
  for suite in table1 table2 table5; do plan+=("$suite $seed"); done
done
if [ "$from_end" = 1 ]; then
  for ((i = ${#plan[@]} - 1; i >= 0; i--)); do run ${plan[i]} "$@"; done
else
  for item in "${plan[@]}"; do run $item "$@"; done
fi
