"""fp32 against bf16 for the shipped CCLNN-T on Set5 x2 on this CPU: PSNR/SSIM and the wall
time of the whole ``cclnn test`` command, pairs interleaved (fp32, bf16, fp32, ...), one
thread; writes ``results/precision_bf16.md``. Usage: ``python scripts/measure_precision.py
[--pairs N]``."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(precision: str) -> tuple[float, dict]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cclnn", "test", "--model", "cclnn-t", "--scale",
                          "2", "--datasets", "Set5", "--device", "cpu", "--precision", precision,
                          "--json"], capture_output=True, text=True, env=env, cwd=ROOT,
                         check=True).stdout
    return time.perf_counter() - start, json.loads(out)["results"][0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3)
    pairs = parser.parse_args().pairs
    times, scores = {"fp32": [], "bf16": []}, {}
    for _ in range(pairs):
        for precision in ("fp32", "bf16"):
            seconds, result = run(precision)
            times[precision].append(seconds)
            scores[precision] = (result["psnr"], result["ssim"])
    fp32, bf16 = (statistics.median(times[p]) for p in ("fp32", "bf16"))
    lines = ["# fp32 against bf16: shipped CCLNN-T, Set5 x2, this CPU", "",
             f"`python scripts/measure_precision.py --pairs {pairs}` ({time.strftime('%Y-%m-%d')}, "
             f"one thread, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the "
             "end); each run is `cclnn test --model cclnn-t --scale 2 --datasets Set5 --device "
             "cpu --precision P --json`, fp32 and bf16 interleaved", "",
             "| precision | PSNR / SSIM | wall seconds (median; runs) |", "|---|---|---|"]
    for p in ("fp32", "bf16"):
        lines.append(f"| {p} | {scores[p][0]:.2f} / {scores[p][1]:.4f} | "
                     f"{statistics.median(times[p]):.1f} ({', '.join(f'{t:.1f}' for t in times[p])}) |")
    lines += ["", f"bf16 - fp32: {scores['bf16'][0] - scores['fp32'][0]:+.2f} dB; bf16 takes "
              f"{bf16 / fp32:.2f}x the time of fp32", ""]
    (ROOT / "results" / "precision_bf16.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
