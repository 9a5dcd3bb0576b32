#!/usr/bin/env bash
# The second study's remaining training on a lent GPU, as the brief asks: the study networks are
# launch-bound, so many train side by side on the one GPU. Every suite of scripts/run_study.sh's
# plan runs `cclnn ablate SUITE --train-only` at once, JOBS runs each, with fp32 convolutions
# as on the CPU (NVIDIA_TF32_OVERRIDE=0); run folders are locked, so a run two suites share
# (CCLNN-S) trains once. After BUDGET seconds every training is stopped with its checkpoint.
# Runs that reached their budget get final weights (final.safetensors, recording iterations,
# wall time and devices); those with their config and logs, no checkpoint, are packed into
# at most 8 tars under $OUT (the device's limits: 16 MiB a file, 64 MiB in all), the longest
# on the CPU first. Back here, unpack them into the study's results/experiments/runs with
# scripts/import_gpu_runs.sh; `cclnn ablate` then scores them ("trained" in --plan).
#
# On the device machine (../shared does not travel): first, here,
#   mkdir -p .dev/data/benchmark && cp -r ../shared/data/train .dev/data/ &&
#   cp -r ../shared/data/benchmark/Set5 .dev/data/benchmark/     (about 35 MB; .dev is ignored)
# then `run` with carry [".dev"], command: OUT=$OUT bash scripts/gpu_study.sh
# Usage: bash scripts/gpu_study.sh     OUT (default /tmp/gpu_study), BUDGET seconds (300),
# JOBS per suite (3), DATA: the data folder to copy to ../shared/data when that is missing
# (default .dev/data, carried to the device machine), RESULTS: the study's folder (default
# results/experiments). QUICK=1: on the CPU, 2 iterations of two tiny runs (into $OUT/quick
# unless RESULTS is given), to test this script.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_study}; BUDGET=${BUDGET:-300}; JOBS=${JOBS:-3}; DATA=${DATA:-.dev/data}
mkdir -p "$OUT" || exit 2
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" NVIDIA_TF32_OVERRIDE=0
PY=${PYTHON:-python3}
if [ ! -d ../shared/data ]; then
  [ -d "$DATA" ] || { echo "gpu_study.sh: no ../shared/data and no $DATA to copy" >&2; exit 2; }
  mkdir -p ../shared && cp -r "$DATA" ../shared/data
fi
results=${RESULTS:-results/experiments}; budget=2000; extra=()
plan=(table1 table2 table5 table3 table4)  # each with its planned seeds (Suite.seeds)
if [ -n "${QUICK:-}" ]; then
  results=${RESULTS:-$OUT/quick}; budget=2; plan=(table2)
  extra=(--seeds 0 --only cclnn-s cclnn-s-tsparse --out "$results" --set data.patch_size=8
         --set data.batch_size=2 --set data.repeat=1 --set model.options.chunk_size=16
         --set device=cpu --hold-out 1)
fi
{
  echo "# gpu_study.sh $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
  T0=$SECONDS; pids=()
  for suite in "${plan[@]}"; do
    timeout -s TERM -k 60 "$BUDGET" "$PY" -m cclnn ablate "$suite" --budget $budget \
      --jobs "$JOBS" --threads 1 --data-root ../shared/data --train-only \
      "${extra[@]}" > "$OUT/ablate_$suite.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}"; echo "${plan[$i]}: exit $? after $((SECONDS - T0)) s"
  done
  cat "$OUT"/ablate_*.log && rm -f "$OUT"/ablate_*.log  # one log: 8 files come back at most
} 2>&1 | tee "$OUT/gpu_study.log"
# pack the finished runs (final weights, config, logs), longest-training rows first, into tars
# of at most 15 MiB, 7 of them (the 8th file back is the log)
"$PY" - "$results/runs" "$OUT" <<'PYEOF'
import csv, statistics, sys, tarfile
from pathlib import Path
runs, out = Path(sys.argv[1]), Path(sys.argv[2])
KEEP = ("final.safetensors", "config.yaml", "train_log.csv", "val_log.csv", "console.log")
def step_seconds(run):  # the row's step time on the CPU where a committed run logged it
    name = run.name.rsplit("_s", 1)[0]
    times = []
    for other in runs.glob(name + "_s*"):
        log = other / "train_log.csv"
        if log.is_file() and (other / "metrics.json").is_file():
            rows = list(csv.DictReader(log.open()))
            times += [float(r["data_s"]) + float(r["compute_s"]) for r in rows]
    return statistics.median(times) if times else 0.0
done = [r for r in runs.iterdir() if (r / "final.safetensors").is_file()
        and not (r / "metrics.json").is_file()]
done.sort(key=step_seconds, reverse=True)
tars, size, packed, left = [], 0, [], []
for run in done:
    files = [run / f for f in KEEP if (run / f).is_file()]
    need = sum(f.stat().st_size for f in files)
    if not tars or size + need > 15 << 20:
        if len(tars) == 7:
            left.append(run.name); continue
        tars.append(tarfile.open(out / f"study_runs_{len(tars)}.tar", "w")); size = 0
    for f in files:
        tars[-1].add(f, arcname=f"{run.name}/{f.name}")
    size += need; packed.append(run.name)
for t in tars:
    t.close()
with open(out / "gpu_study.log", "a") as log:
    print(f"packed {len(packed)} finished run(s) into {len(tars)} tar(s): {' '.join(packed)}",
          file=log)
    if left:
        print(f"not packed (over the limits of what comes back): {' '.join(left)}", file=log)
PYEOF
tail -2 "$OUT/gpu_study.log"
