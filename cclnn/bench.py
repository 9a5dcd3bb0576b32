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


def bench_train(config_path: str, steps: int = 20, warmup: int = 3,
                overrides: list[str] | None = None) -> dict:
    """Median seconds per training step, split into data loading and compute."""
    import tempfile
    from pathlib import Path

    from .engine.config import load_config
    from .engine.trainer import Trainer
    extra = [f"max_iterations={steps + warmup}", "val.every=0", "checkpoint_every=1000000000",
             "log_every=1000000000"]
    config = load_config(config_path, list(overrides or []) + extra)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, run_dir=Path(tmp) / "bench", progress=False)
        trainer.train()
    times = trainer.times[warmup:]
    data = statistics.median(t.data for t in times)
    compute = statistics.median(t.compute for t in times)
    return {"config": config_path, "model": config.model.name, "scale": config.model.scale,
            "batch": config.data.batch_size, "patch": config.data.patch_size,
            "steps": len(times), "data_seconds": data, "compute_seconds": compute,
            "step_seconds": data + compute, "data_fraction": data / (data + compute),
            "device": str(trainer.device), "threads": __import__("torch").get_num_threads()}


def run_bench(args) -> int:
    if args.what == "train":
        r = bench_train(args.config, args.steps, args.warmup, args.overrides)
        if args.json:
            print(json.dumps(r))
        else:
            print(f"train {r['model']} x{r['scale']}, batch {r['batch']} x {r['patch']}x"
                  f"{r['patch']} on {r['device']} ({r['threads']} threads), median of "
                  f"{r['steps']} steps: {r['step_seconds']:.3f} s/step = data "
                  f"{r['data_seconds'] * 1e3:.1f} ms + compute {r['compute_seconds']:.3f} s; "
                  f"data {100 * r['data_fraction']:.2f} % of the step")
        return 0
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
