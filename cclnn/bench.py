"""``cclnn bench ...``: performance measurements, printed side by side in one run.

Timings on shared machines are noisy: every figure is the median of several runs after a
warm-up, and comparisons are made within one command so both sides see the same machine.
"""
from __future__ import annotations

import json
import statistics
import time
from typing import Callable

import numpy as np


def median_seconds(fn: Callable[[], object], repeat: int = 7, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_resize(width: int = 2040, height: int = 1356, scale: float = 0.25,
                 repeat: int = 7) -> dict:
    """MATLAB-exact uint8 resize vs PIL's bicubic on the same image (a DIV2K-sized photo)."""
    from PIL import Image

    from .resize import imresize
    rng = np.random.default_rng(0)
    # a smooth image with texture, like a photograph (content does not change the cost)
    base = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(base).resize((width, height), Image.BILINEAR))
    img = np.clip(img.astype(int) + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
    pil = Image.fromarray(img)
    size = (int(round(width * scale)), int(round(height * scale)))
    ours = median_seconds(lambda: imresize(img, scale), repeat)
    theirs = median_seconds(lambda: pil.resize(size, Image.BICUBIC), repeat)
    return {"image": f"{width}x{height} RGB uint8", "scale": scale, "repeat": repeat,
            "cclnn_seconds": ours, "pil_seconds": theirs, "ratio": ours / theirs}


def run_bench(args) -> int:
    if args.what == "resize":
        r = bench_resize(repeat=args.repeat)
        if args.json:
            print(json.dumps(r))
        else:
            print(f"resize {r['image']} x{r['scale']}: cclnn.imresize (MATLAB-exact) "
                  f"{r['cclnn_seconds'] * 1e3:.1f} ms, PIL bicubic {r['pil_seconds'] * 1e3:.1f} ms"
                  f" (median of {r['repeat']}); ratio {r['ratio']:.2f}x")
        return 0
    raise ValueError(args.what)
