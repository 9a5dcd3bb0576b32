"""Inference with subnormals flushed to zero (cclnn.inference.flush_denormals) against IEEE
subnormals, on the study's trained weights: seconds per image at one thread (interleaved,
median of --repeat) and whether the uint8 SR images are identical.
Usage: python scripts/measure_flush_denormals.py [--dataset Set5] [--repeat 2] [-o FILE]"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import cclnn.inference as inference
from cclnn.data.benchmark import BenchmarkSet, resolve_benchmark
from cclnn.models.registry import build_model
from cclnn.weights import load_weights

RUNS = Path(__file__).resolve().parents[1] / "results" / "experiments" / "runs"
NETWORKS = ["rnan-s", "cclnn-s", "nlsn-s", "divanet-s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="Set5")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench = BenchmarkSet(resolve_benchmark(args.dataset, args.data_root), 2, name=args.dataset)
    flushed = inference.flush_denormals
    lines = [f"| network (seed-0 study weights) | {args.dataset} s/image, IEEE subnormals | "
             f"flushed | speed-up | uint8 SR identical |", "|---|---:|---:|---:|---|"]
    for name in NETWORKS:
        model = build_model(name, 2)
        load_weights(model, RUNS / f"{name}_x2_b2000_s0" / "final.safetensors")
        times = {"ieee": [], "flush": []}
        same = True
        for pair in bench:
            per = {"ieee": [], "flush": []}
            for _ in range(args.repeat):
                outs = {}
                for mode, scope in (("ieee", contextlib.nullcontext), ("flush", flushed)):
                    inference.flush_denormals = scope
                    start = time.perf_counter()
                    outs[mode] = inference.super_resolve(model, pair.lr, 2)
                    per[mode].append(time.perf_counter() - start)
                same = same and np.array_equal(outs["ieee"], outs["flush"])
            for mode in per:
                times[mode].append(statistics.median(per[mode]))
        inference.flush_denormals = flushed
        ieee, flush = sum(times["ieee"]) / len(bench), sum(times["flush"]) / len(bench)
        lines.append(f"| {name} | {ieee:.2f} | {flush:.2f} | {ieee / flush:.2f}x | "
                     f"{'yes' if same else 'NO'} ({len(bench)} images) |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.output:
        args.output.write_text(f"$ python scripts/measure_flush_denormals.py --dataset "
                               f"{args.dataset} --repeat {args.repeat}\n\n" + text)
    else:
        print(text)


if __name__ == "__main__":
    main()
