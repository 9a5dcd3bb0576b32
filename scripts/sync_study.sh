#!/usr/bin/env bash
# Copy what a background study (run from another checkout, scripts/run_study.sh) has finished
# into this checkout's results/experiments: the finished runs' configs, logs, final weights
# and metrics, never checkpoints; then rewrite the tables here. Usage: scripts/sync_study.sh DIR
set -eu
src=${1:?the other checkout}/results/experiments
cd "$(dirname "$0")/.."
mkdir -p results/experiments
# finished runs only (a run in progress is lost with its session's checkpoint anyway); final
# weights only of the rows a command reads them from: Table 5's self-ensembles (CCLNN-S,
# RNAN-S, DiVANet-S) and the LAM comparison (CCLNN-S, NLSN-S)
files=$(cd "$src" && for m in runs/*/metrics.json; do
  [ -f "$m" ] || continue
  run=$(dirname "$m")
  for f in "$run"/*; do
    case "$f" in
      *.pt|*.tmp*) ;;
      */final.safetensors) case "$run" in runs/cclnn-s_*|runs/rnan-s_*|runs/divanet-s_*|runs/nlsn-s_*) echo "$f";; esac;;
      *) echo "$f";;
    esac
  done
done)
(cd "$src" && tar -cf - configs $files) | (cd results/experiments && tar -xf -)
for suite in table1 table2 table5; do
  python -m cclnn ablate $suite --budget 2000 --seeds 0 1 2 3 --data-root ../shared/data --tables-only > /dev/null
done
for suite in table3 table4; do
  python -m cclnn ablate $suite --budget 2000 --seeds 0 1 --data-root ../shared/data --tables-only > /dev/null
done
