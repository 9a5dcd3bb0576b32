#!/usr/bin/env bash
# The script of the first GPU session (kept with its output; it ran from scripts/ and trained
# the first study's rows; scripts/gpu_check.sh is today's check). Session 11 device checks. 1) Table 5's missing rows (VDSR s0/s1, RNAN-S s1) trained with the
# committed configs, fp32 convolutions (NVIDIA_TF32_OVERRIDE=0) as on the CPU; 2) CUDA checks:
# shipped CCLNN-T scored on cuda vs cpu, training steps under fp32/bf16/fp16, a short CCLNN-L run.
# Ran as `bash scripts/gpu_checks.sh` (OUT=folder for the log, tars and JSON; it
# needs ../shared/data beside the repository, as the run configs name it). QUICK=1: a few
# iterations on the CPU, to test this script without a GPU. Output of the one run on the lent
# H200 (2026-11-28): results/gpu/h200.log, test_cuda.json, test_cpu.json.
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu.log") 2>&1
T0=$SECONDS
DEV=cuda; QUICK_ITERS=(); STEPS=20; LITERS=600
if [ -n "$QUICK" ]; then DEV=cpu; QUICK_ITERS=(max_iterations=3 val.every=3); STEPS=2; LITERS=4; fi
left() { [ $((SECONDS - T0)) -lt "$1" ] || { echo "SKIP (at $((SECONDS - T0)) s): $2"; return 1; }; }
echo "== start $(date +%T)"
[ -d ../shared/data ] || { mkdir -p ../shared && cp -r .dev/data ../shared/data; }  # the lent machine has no ../shared: a copy travelled in .dev/
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

echo "== 1. Table 5 rows"
runs="vdsr_x2_b2000_s0 vdsr_x2_b2000_s1 rnan-s_x2_b2000_s1"; pids=()
for r in $runs; do
  [ -e results/ablation/runs/$r ] && { echo "$r: in results/ablation/runs already, not retrained"; continue; }
  mkdir -p results/ablation/runs/$r
  NVIDIA_TF32_OVERRIDE=0 OMP_NUM_THREADS=4 timeout 300 python3 -m cclnn train \
    results/ablation/configs/$r.yaml "${QUICK_ITERS[@]}" --no-progress \
    >> results/ablation/runs/$r/console.log 2>&1 &
  pids+=($!)
done
[ ${#pids[@]} -gt 0 ] && wait "${pids[@]}"  # not a bare wait: that would wait for the tee of the log too
echo "== table runs ended at $((SECONDS - T0)) s"
for r in $runs; do
  [ -e results/ablation/runs/$r/latest.pt ] || continue
  echo "-- $r"; tail -3 results/ablation/runs/$r/console.log; tail -2 results/ablation/runs/$r/val_log.csv
  tail -1 results/ablation/runs/$r/train_log.csv
  tar -C results/ablation/runs -cf "$OUT/$r.tar" --exclude best.pt $r
done

echo "== 2. shipped cclnn-t: $DEV vs cpu"
if left 330 "test"; then
  for d in $DEV cpu; do
    timeout 100 python3 -m cclnn test --model cclnn-t --scale 2 3 4 --datasets Set5 Set14 \
      --data-root ../shared/data --device $d --json > "$OUT/test_$d.json"; echo "test $d rc=$?"
  done
fi

echo "== 3. training steps (bench train, median s/step)"
T91='data.train=[{hr: ../shared/data/train/T91}]'
for spec in "cpu/cclnn-t_x2 amp=none" "cpu/cclnn-t_x2 amp=bf16" "cpu/cclnn-t_x2 amp=fp16" \
            "ablation/cclnn-l_x2 amp=none" "ablation/cclnn-l_x2 amp=bf16" "ablation/cclnn-l_x2 amp=fp16"; do
  set -- $spec
  left 400 "bench $spec" || break
  timeout 60 python3 -m cclnn bench train --config configs/$1.yaml --steps $STEPS "$2" "$T91" \
    data.cache=memory data.workers=4 --json | tr -d '\n'; echo " rc=$?"
done

echo "== 4. short CCLNN-L run, bf16, T91+SunHays80, aux loss from iteration 213"
if left 420 "cclnn-l run"; then
  timeout 150 python3 -m cclnn train configs/ablation/cclnn-l_x2.yaml \
    'data.train=[{hr: ../shared/data/train/T91}, {hr: ../shared/data/train/SunHays80}]' \
    data.cache=memory data.workers=4 amp=bf16 loss.warmup_epochs=1 max_iterations=$LITERS \
    val.every=$((LITERS / 3)) checkpoint_every=100000 log_every=50 out_dir=/tmp/lruns name=cclnn-l_short --no-progress
  echo "rc=$?"; cat /tmp/lruns/cclnn-l_short/val_log.csv; tail -3 /tmp/lruns/cclnn-l_short/train_log.csv
fi
echo "== end at $((SECONDS - T0)) s"
