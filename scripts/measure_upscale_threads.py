"""``cclnn bench upscale`` at one and two threads, interleaved, on the machine as it is and
with one core kept busy by a single-threaded matrix-multiply loop (another user's training):
the medians, the two-thread speed-up and system time. Appends a dated section to
``results/bench/upscale_threads.md``.

Usage: ``python scripts/measure_upscale_threads.py [--size W H] [--scale S] [--repeat N]
[--conditions as-is loaded] [--note TEXT]``. "as-is" is quiet only if nothing else runs:
say what else ran in ``--note``.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOG = ("import torch\ntorch.set_num_threads(1)\na = torch.randn(1024, 1024)\n"
       "while True:\n    a @ a\n")


def bench(size: list[int], scale: int, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "cclnn", "bench", "upscale", "--size",
                          *map(str, size), "--scale", str(scale), "--threads", str(threads),
                          "--json"], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=[1000, 1000])
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--conditions", nargs="+", default=["as-is", "loaded"],
                        choices=["as-is", "loaded"])
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    lines = [f"## {time.strftime('%Y-%m-%d %H:%M')}: {args.size[0]}x{args.size[1]} LR x"
             f"{args.scale}, shipped cclnn-t, median of {args.repeat} (1 and 2 threads "
             f"interleaved){'; ' + args.note if args.note else ''}", "",
             "| condition | threads | s / output MP | GFLOP/s | % of matmul | system / user |"
             " peak MB | speed-up 2 vs 1 |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    every = {}
    for condition in args.conditions:
        hog = (subprocess.Popen([sys.executable, "-c", HOG]) if condition == "loaded"
               else None)
        try:
            runs = {1: [], 2: []}
            for _ in range(args.repeat):
                for threads in (1, 2):
                    runs[threads].append(bench(args.size, args.scale, threads))
        finally:
            if hog:
                hog.kill()
        every[condition] = {t: [round(r["seconds_per_mp"], 2) for r in rs]
                            for t, rs in runs.items()}
        median = {t: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
                  for t, rs in runs.items()}
        speedup = median[1]["seconds_per_mp"] / median[2]["seconds_per_mp"]
        for threads, m in median.items():
            lines.append(f"| {condition} | {threads} | {m['seconds_per_mp']:.2f} | "
                         f"{m['gflops']:.1f} | {100 * m['matmul_fraction']:.0f} % | "
                         f"{100 * m['system_seconds'] / m['user_seconds']:.1f} % | "
                         f"{m['peak_mb']:.0f} | {f'{speedup:.2f}x' if threads == 2 else ''} |")
        print("\n".join(lines[-2:]), flush=True)
    lines.append(f"\nEach run: `python -m cclnn bench upscale --size {args.size[0]} "
                 f"{args.size[1]} --scale {args.scale} --threads T --json`; % of matmul is "
                 "against the matmul rate measured at the same thread count in the same run; "
                 "'loaded': one single-threaded matmul loop ran meanwhile. Seconds per output "
                 "MP of every run: " + json.dumps(every))
    target = ROOT / "results" / "bench" / "upscale_threads.md"
    previous = target.read_text() if target.exists() else "# `cclnn bench upscale`: threads\n"
    target.write_text(previous.rstrip("\n") + "\n\n" + "\n".join(lines).rstrip() + "\n")
    print(f"appended to {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
