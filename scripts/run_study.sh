#!/usr/bin/env bash
# The experiments' run plan, most useful runs first: seed 0 of every suite, then seed 1, then
# seeds 2-3 of Tables 1, 2 and 5 (Tables 3-4 need two seeds). One run at a time on one thread,
# so that the other core stays free. Finished runs are skipped, interrupted ones resumed:
# rerun it after any stop. Usage: scripts/run_study.sh [extra `cclnn ablate` options]
set -u
cd "$(dirname "$0")/.."
cclnn=(python -m cclnn)
run() { "${cclnn[@]}" ablate "$1" --budget 2000 --seeds "$2" --jobs 1 --threads 1 \
          --data-root ../shared/data "${@:3}" || echo "ablate $1 seed $2 failed: $?"; }
for seed in 0 1; do
  for suite in table1 table2 table5 table3 table4; do run "$suite" "$seed" "$@"; done
done
for seed in 2 3; do
  for suite in table1 table2 table5; do run "$suite" "$seed" "$@"; done
done
