"""The measurements behind ``cclnn bench ...`` (:mod:`cclnn.cli.bench` prints them side by side).

Timings on shared machines are noisy: every figure is the median of several runs after a
warm-up, and comparisons are made within one command so both sides see the same machine.

The package's modules are imported inside the measuring functions on purpose: several run in a
fresh child process (:func:`in_child`) whose peak memory is reported, and that figure should
hold what the measurement needs, not the whole package.
"""
from __future__ import annotations

import statistics
import threading
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

    from .engine.train_config import load_config
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
            "batch": config.data.batch_size, "patch": config.data.patch_size, "amp": config.amp,
            "steps": len(times), "data_seconds": data, "compute_seconds": compute,
            "step_seconds": data + compute, "data_fraction": data / (data + compute),
            "device": str(trainer.device), "threads": __import__("torch").get_num_threads()}


def matmul_gflops(size: int = 2048, repeat: int = 5) -> float:
    """The machine's own fp32 matrix-multiply rate (GFLOP/s), the reference for efficiency."""
    import torch
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size ** 3 / median_seconds(lambda: a @ b, repeat) / 1e9


def count_gflop(model, x) -> float:
    """Forward GFLOP of ``model`` on ``x``: convolutions and linear layers (2 per
    multiply-add) plus NLSA's attention products at their real (unpadded) sizes."""
    import torch

    from .models.nlsa import NonLocalSparseAttention, num_buckets
    total = [0.0]

    def conv_hook(module, inputs, output):
        k = module.kernel_size[0] * module.kernel_size[1]
        total[0] += 2.0 * output.numel() * module.in_channels // module.groups * k

    def linear_hook(module, inputs, output):
        total[0] += 2.0 * output.numel() * module.in_features

    def nlsa_hook(module, inputs, output):
        n, c, h, w = inputs[0].shape
        length = h * w
        keys = 3 * min(module.chunk_size, length)
        match = c // module.reduction
        total[0] += 2.0 * n * module.n_hashes * length * keys * (match + c)  # scores, output
        total[0] += 2.0 * n * length * match * module.n_hashes * (
            num_buckets(length, module.chunk_size) // 2)  # hashing

    hooks = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, NonLocalSparseAttention):
            hooks.append(m.register_forward_hook(nlsa_hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return total[0] / 1e9


def _peak_child(fn_name: str, kwargs: dict, queue) -> None:
    import resource
    result = globals()[fn_name](**kwargs)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(result)


def in_child(fn_name: str, **kwargs) -> dict:
    """Run ``fn_name(**kwargs)`` of this module in a fresh process; adds its peak memory."""
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=(fn_name, kwargs, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def _model_inference(name: str, scale: int, height: int, width: int, repeat: int) -> dict:
    import torch

    from .models.registry import build_model
    torch.manual_seed(0)
    model = build_model(name, scale).eval()
    x = torch.rand(1, 3, height, width) * 255
    with torch.inference_mode():
        seconds = median_seconds(lambda: model(x), repeat, warmup=1 if repeat > 1 else 0)
    return {"seconds": seconds, "gflop": count_gflop(model, torch.rand(1, 3, height, width))}


def _model_train_step(name: str, scale: int, height: int, width: int, batch: int,
                      repeat: int) -> dict:
    import torch
    import torch.nn.functional as F

    from .models.registry import build_model
    torch.manual_seed(0)
    model = build_model(name, scale).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    lr = torch.rand(batch, 3, height, width) * 255
    hr = torch.rand(batch, 3, height * scale, width * scale) * 255

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.l1_loss(model(lr), hr).backward()
        optimizer.step()
    seconds = median_seconds(step, repeat)
    # backward costs about twice the forward: a training step is ~3x the forward FLOPs
    return {"seconds": seconds, "gflop": 3 * count_gflop(model, lr)}


def bench_model(name: str, scale: int, height: int, width: int, train: bool = False,
                batch: int = 16, repeat: int = 3) -> dict:
    """Inference (and optionally a training step) of a whole network, each in a fresh
    process for its peak memory, beside the machine's measured matmul rate."""
    reference = matmul_gflops()
    result = {"model": name, "scale": scale, "size": [height, width],
              "matmul_gflops": reference}
    inference = in_child("_model_inference", name=name, scale=scale, height=height,
                         width=width, repeat=repeat)
    inference["gflops"] = inference["gflop"] / inference["seconds"]
    inference["efficiency"] = inference["gflops"] / reference
    result["inference"] = inference
    if train:
        step = in_child("_model_train_step", name=name, scale=scale, height=height, width=width,
                        batch=batch, repeat=repeat)
        step["gflops"] = step["gflop"] / step["seconds"]
        step["efficiency"] = step["gflops"] / reference
        step["batch"] = batch
        result["train_step"] = step
    return result


def _nlsa_paths(path: str, channels: int, height: int, width: int, batch: int,
                device: str = "cpu"):
    """NLSA, ``fast`` (ours) or ``reference`` (the official tensor program), on ``device``."""
    import torch

    from .models.nlsa import NonLocalSparseAttention
    torch.manual_seed(0)
    module = NonLocalSparseAttention(channels).to(device)
    module.use_fast = path == "fast"
    x = torch.randn(batch, channels, height, width).to(device)
    rotations = torch.randn(module.rotations_shape(height, width)).to(device)
    return module, lambda inp: module(inp, rotations=rotations), x


def _rnan_nonlocal_paths(path: str, channels: int, height: int, width: int, batch: int):
    """RNAN's non-local block, ``chunked`` (ours) or ``dense`` (the official HW x HW form)."""
    import torch

    from .models.network_rnan import NonLocalBlock
    torch.manual_seed(0)
    block = NonLocalBlock(channels)
    torch.nn.init.normal_(block.out.weight, std=0.1)  # a trained block: not the identity
    x = torch.randn(batch, channels, height, width)
    return block, block.forward if path == "chunked" else block.dense_forward, x


def _path_child(build: str, path: str, shape: dict, backward: bool, repeat: int,
                out_file: str, queue) -> None:
    """Times one path in its own process, so that its peak memory (ru_maxrss, or CUDA's
    peak allocation for a CUDA input) is its own."""
    import resource

    import torch
    module, forward, x = globals()[build](path, **shape)
    x.requires_grad_(backward)
    cuda = x.device.type == "cuda"

    def run():
        if backward:
            x.grad = None
            module.zero_grad(set_to_none=True)
            y = forward(x)
            y.backward(torch.ones_like(y))
        else:
            with torch.no_grad():
                y = forward(x)
        if cuda:
            torch.cuda.synchronize()  # the kernels run asynchronously
        return y
    seconds = median_seconds(run, repeat)
    out = run().detach()
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result = {"seconds": seconds, "peak_mb": peak}
    torch.save({"out": out.cpu(), "grad": None if x.grad is None else x.grad.cpu()}, out_file)
    queue.put(result)


def compare_paths(build: str, paths: tuple[str, str], shape: dict, backward: bool,
                  repeat: int) -> dict:
    """Our path against the reference one (``paths = (ours, reference)``), each in a fresh
    process: seconds, peak memory, and the largest difference of outputs (and input
    gradients with ``backward``)."""
    import multiprocessing
    import os
    import tempfile

    import torch
    ctx = multiprocessing.get_context("spawn")
    results, outputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            queue = ctx.Queue()
            out_file = os.path.join(tmp, f"{path}.pt")
            proc = ctx.Process(target=_path_child, args=(build, path, shape, backward, repeat,
                                                         out_file, queue))
            proc.start()
            proc.join()
            if proc.exitcode != 0:
                raise RuntimeError(f"the {path} run failed (exit {proc.exitcode}; out of memory?)")
            results[path] = queue.get()
            outputs[path] = torch.load(out_file, weights_only=True)
    ours, reference = (outputs[p] for p in paths)
    diff = (ours["out"] - reference["out"]).abs().max().item()
    if backward:
        diff = max(diff, (ours["grad"] - reference["grad"]).abs().max().item())
    return {**shape, "size": [shape["height"], shape["width"]], "backward": backward,
            "paths": list(paths), **results, "max_abs_diff": diff,
            "speedup": results[paths[1]]["seconds"] / results[paths[0]]["seconds"],
            "memory_ratio": results[paths[0]]["peak_mb"] / results[paths[1]]["peak_mb"]}


def bench_nlsa(channels: int = 64, height: int = 512, width: int = 512, batch: int = 1,
               backward: bool = False, repeat: int = 5, device: str = "cpu") -> dict:
    """Our NLSA vs the reference tensor program, on ``device``."""
    return compare_paths("_nlsa_paths", ("fast", "reference"),
                         {"channels": channels, "height": height, "width": width,
                          "batch": batch, "device": device}, backward, repeat)


def bench_rnan_nonlocal(channels: int = 32, height: int = 160, width: int = 160,
                        batch: int = 1, backward: bool = False, repeat: int = 3) -> dict:
    """RNAN's non-local block in key chunks vs the official dense HW x HW program."""
    return compare_paths("_rnan_nonlocal_paths", ("chunked", "dense"),
                         {"channels": channels, "height": height, "width": width,
                          "batch": batch}, backward, repeat)



def _covered(spans: list[tuple[float, float]]) -> float:
    """Seconds during which at least one of the (start, end) spans was running."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        total += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return total


def _upscale_run(model: str | None, weights: str | None, scale: int, width: int, height: int,
                 threads: int, tile="auto") -> dict:
    """One ``upscale_file`` of a synthetic ``width`` x ``height`` photo, file to file, with the
    time spent inside the network's forward calls and their FLOPs counted on the side."""
    import collections
    import copy
    import resource
    import tempfile
    from pathlib import Path

    import torch
    from PIL import Image

    from .factory import SHIPPED, create_model
    from .cpu import keep_freed_memory
    from .memory import probing
    from .upscaling import upscale_file
    torch.set_num_threads(threads)
    keep_freed_memory()  # as ``cclnn upscale`` does
    net = create_model(model or (None if weights else "cclnn-t"), scale, weights or SHIPPED)
    spans, started = [], threading.local()  # (start, end, input shape) of every call

    def before(module, inputs):
        started.at = time.perf_counter()  # per thread: tiles may run in several at once

    def after(module, inputs, output):
        if not probing():  # a memory measurement's forward is not a tile
            spans.append((started.at, time.perf_counter(), tuple(inputs[0].shape)))
    hooks = [net.register_forward_pre_hook(before), net.register_forward_hook(after)]
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "photo.png", Path(tmp) / "photo_sr.png"
        Image.fromarray(base).resize((width, height), Image.BILINEAR).save(source)
        start_usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        upscale_file(source, target, net, scale, device=torch.device("cpu"), tile=tile)
        wall = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_SELF)
    for hook in hooks:
        hook.remove()
    shapes = collections.Counter(shape for _, _, shape in spans)
    shadow = copy.deepcopy(net).to("meta")  # shapes only: counting costs no forward pass
    gflop = sum(count * count_gflop(shadow, torch.zeros(shape, device="meta"))
                for shape, count in shapes.items())
    output_mp = width * height * scale * scale / 1e6
    return {"model": net.info.name, "scale": scale, "size": [width, height], "threads": threads,
            "tile": tile,
            "wall_seconds": wall, "seconds_per_mp": wall / output_mp, "gflop": gflop,
            "gflops": gflop / wall, "network_seconds": _covered([s[:2] for s in spans]),
            "tiles": sum(shapes.values()),
            "user_seconds": usage.ru_utime - start_usage.ru_utime,
            "system_seconds": usage.ru_stime - start_usage.ru_stime,
            "minor_faults": usage.ru_minflt - start_usage.ru_minflt}


def bench_upscale(width: int, height: int, scale: int, model: str | None = None,
                  weights: str | None = None, threads: int | None = None,
                  tile="auto") -> dict:
    """``cclnn upscale`` end to end (decode, tiles, network, blending, encode) on the CPU in
    a fresh process: seconds per output megapixel, GFLOP/s against this machine's matmul rate
    at the same thread count, user/system time, peak memory, and the network's own share."""
    import torch
    threads = threads or torch.get_num_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        reference = matmul_gflops()
    finally:
        torch.set_num_threads(previous)
    result = in_child("_upscale_run", model=model, weights=weights, scale=scale, width=width,
                      height=height, threads=threads, tile=tile)
    result["matmul_gflops"] = reference
    result["matmul_fraction"] = result["gflops"] / reference
    return result
