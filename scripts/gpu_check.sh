#!/usr/bin/env bash
# The prepared check for a lent GPU machine (under 8 minutes on one H200), run first whenever
# one is lent: 1) the tests marked `gpu`, 2) the fast test suite with CUDA visible (every
# `device: auto` path then runs on CUDA: the CUDA-sensitive tests), 3) NLSA's fused path
# against the official tensor program on CUDA (forward, forward+backward), 4) `cclnn bench
# train` for CCLNN-T, CCLNN-L and CCLNN at fp32 and bf16. Each step has its own time limit and
# the report says which ran, their exit status, counts and timings.
#
# Usage: bash scripts/gpu_check.sh [--dry-run]     OUT=folder for the report (default
# /tmp/gpu_check); PYTHON=interpreter (default python3); CCLNN_SHARED=the shared data folder
# (default ../shared; tests that need it skip without it). --dry-run: every step on the CPU at
# a tiny size (one test file, a 24x24 NLSA forward+backward, one bf16 training step), to test
# this script in CI.
# Output: $OUT/report.md (the summary), gpu_check.log (everything), *.xml (JUnit), *.json.
set -u
cd "$(dirname "$0")/.."
DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "gpu_check.sh: unknown option '$1' (usage: gpu_check.sh [--dry-run])" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT" || exit 2
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
LOG=$OUT/gpu_check.log
REPORT=$OUT/report.md
: > "$LOG"
T0=$SECONDS
BUDGET=450  # seconds for all steps: with the start and the report, under 8 minutes
SLACK=1     # time limits x SLACK: a dry run starts many Pythons on a small, maybe busy CPU
if [ $DRY = 1 ]; then
  BUDGET=3000; SLACK=6
  DEVICE=cpu; GPU_TESTS=(tests/test_nlsa_kernels.py); FAST_TESTS=(tests/test_stats.py)
  NLSA=(--size 24 24 --channels 8 --repeat 1); STEPS=(--steps 1 --warmup 0)
  TRAIN_SIZE=(data.batch_size=2); TRAINS="configs/cpu/cclnn-t_x2.yaml"; AMPS="bf16"
  PASSES="backward"
else
  DEVICE=cuda; GPU_TESTS=(tests); FAST_TESTS=(tests -n 8)
  NLSA=(--size 512 512 --channels 64 --repeat 5); STEPS=(--steps 20 --warmup 3)
  TRAIN_SIZE=()
  TRAINS="configs/cpu/cclnn-t_x2.yaml configs/ablation/cclnn-l_x2.yaml configs/cclnn_x2.yaml"
  AMPS="none bf16"; PASSES="forward backward"
fi
SET5=cclnn/assets/Set5/HR  # bundled: the training benches need no shared data

{
  echo "# GPU check $(date -u +%FT%TZ)$([ $DRY = 1 ] && echo ' (dry run, CPU)')"
  echo
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  "$PY" -c "import torch; print('torch', torch.__version__, '| cuda available:',
torch.cuda.is_available(), '|', torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  echo
  echo "| step | exit | seconds |"
  echo "|---|---|---|"
} > "$REPORT" 2>>"$LOG"

# step NAME LIMIT_S COMMAND...: run it with a time limit, log it, add a row to the report
step() {
  local name=$1 limit=$2 start=$SECONDS rc left=$((BUDGET - (SECONDS - T0)))
  shift 2
  limit=$((limit * SLACK))
  if [ $left -lt 15 ]; then
    echo "| $name | skipped: the check's $BUDGET s were spent | 0 |" >> "$REPORT"; return 0
  fi
  [ "$limit" -gt $left ] && limit=$left
  echo "== $name ($(date +%T)): $*" >> "$LOG"
  timeout "$limit" "$@" >> "$LOG" 2>&1
  rc=$?
  [ $rc = 124 ] && echo "== $name: stopped at its limit of $limit s" >> "$LOG"
  echo "| $name | $rc$([ $rc = 124 ] && echo ' (time limit)') | $((SECONDS - start)) |" >> "$REPORT"
  return $rc
}

step "tests marked gpu" 90 "$PY" -m pytest -m gpu -v -rA "${GPU_TESTS[@]}" \
  --junitxml="$OUT/gpu_tests.xml"
step "fast suite, CUDA visible" 180 "$PY" -m pytest -m "not slow" -v -rA -p no:cacheprovider \
  "${FAST_TESTS[@]}" --junitxml="$OUT/fast_suite.xml"
for pass in $PASSES; do
  extra=(); [ $pass = backward ] && extra=(--backward)
  step "bench nlsa $pass" 45 bash -c '"$@" > "'"$OUT"'/nlsa_'$pass'.json"' _ \
    "$PY" -m cclnn bench nlsa --device $DEVICE "${NLSA[@]}" "${extra[@]}" --json
done
for config in $TRAINS; do
  for amp in $AMPS; do
    name=$(basename "$config" .yaml)
    step "bench train $name amp=$amp" 30 bash -c '"$@" >> "'"$OUT"'/train.json"' _ \
      "$PY" -m cclnn bench train --config "$config" "${STEPS[@]}" amp=$amp \
      "data.train=[{hr: $SET5}]" data.cache=memory data.workers=0 device=$DEVICE \
      "${TRAIN_SIZE[@]}" --json
  done
done

{
  echo
  echo "Total: $((SECONDS - T0)) s"
  echo
  "$PY" - "$OUT" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
out = Path(sys.argv[1])
for name in ("gpu_tests", "fast_suite"):
    path = out / f"{name}.xml"
    if not path.is_file():
        print(f"{name}: no JUnit file"); continue
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    print(f"{name}: {counts}")
    for case in suite.iter("testcase"):
        for kind in ("failure", "error"):
            node = case.find(kind)
            if node is not None:
                first = (node.get("message") or "").splitlines()[:1]
                print(f"  {kind}: {case.get('classname')}::{case.get('name')}: {first}")
for name in ("nlsa_forward", "nlsa_backward"):
    path = out / f"{name}.json"
    if path.is_file() and path.stat().st_size:
        r = json.loads(path.read_text())
        print(f"{name}: fast {r['fast']['seconds']:.4f} s / {r['fast']['peak_mb']:.0f} MB, "
              f"reference {r['reference']['seconds']:.4f} s / {r['reference']['peak_mb']:.0f} MB, "
              f"max |diff| {r['max_abs_diff']:.2e}")
path = out / "train.json"
for line in (path.read_text().splitlines() if path.is_file() else []):
    r = json.loads(line)
    print(f"bench train {r['model']} x{r['scale']} amp={r['amp']} batch {r['batch']}x{r['patch']}: "
          f"{r['step_seconds'] * 1e3:.1f} ms/step on {r['device']}")
EOF
} >> "$REPORT" 2>>"$LOG"
cat "$REPORT"
