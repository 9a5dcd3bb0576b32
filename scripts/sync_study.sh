#!/usr/bin/env bash
# Copy what a background study (run from another checkout, scripts/run_study.sh) has finished
# into this checkout's results/experiments: the finished runs' configs, logs, final weights
# and metrics, and the scorings in progress, never checkpoints; then rewrite the tables here.
# (a trained run gets its final weights before its scoring starts; a study run by code older
# than 9d8299f writes them only with `cclnn ablate ... --train-only`). Usage: sync_study.sh DIR
set -eu
src=${1:?the other checkout}/results/experiments
cd "$(dirname "$0")/.."
mkdir -p results/experiments
# finished runs, and the scorings in progress (their journal, and the final weights they score:
# the rest of the scoring resumes from them in a later session); never checkpoints, so a
# training in progress is lost with its session. Final weights of finished runs only for the
# rows a command reads them from: Table 5's self-ensembles (CCLNN-S, RNAN-S, DiVANet-S) and the
# LAM comparison (CCLNN-S, NLSN-S)
keeps_weights() {
  case "$(basename "$1")" in cclnn-s_*|rnan-s_*|divanet-s_*|nlsn-s_*) return 0;; esac
  return 1
}
files=$(cd "$src" && for run in runs/*; do
  if [ -f "$run/metrics.json" ]; then finished=1
  elif [ -f "$run/final.safetensors" ]; then finished=0  # trained, being scored
  elif [ -f "$run/scoring.jsonl" ] && [[ $run == *-plus_* ]]; then finished=0  # self-ensemble
  else continue; fi
  for f in "$run"/*; do
    case "$f" in
      *.pt|*.tmp*) ;;
      */final.safetensors) if [ $finished = 0 ] || keeps_weights "$run"; then echo "$f"; fi;;
      *) echo "$f";;
    esac
  done
done)
(cd "$src" && tar -cf - configs $files) | (cd results/experiments && tar -xf -)
# a scoring synced while in progress and finished since: its journal, and the weights it
# scored where no command reads them, are not kept beside its metrics.json
for m in results/experiments/runs/*/metrics.json; do
  run=$(dirname "$m")
  rm -f "$run/scoring.jsonl"
  keeps_weights "$run" || rm -f "$run/final.safetensors"
done
for suite in $(python -c "from cclnn.experiments.suites import SUITES; print(*SUITES)"); do
  # each suite's planned seeds (Suite.seeds): the tables of the whole study
  python -m cclnn ablate "$suite" --budget 2000 --data-root ../shared/data --tables-only > /dev/null
done
