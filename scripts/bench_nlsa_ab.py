"""Interleaved A/B timing of one NLSA layer (eval, ``inference_mode``) from two versions of
``cclnn/models/nlsa.py``: a git revision's (``--old``) and the working tree's, both in this
process, the same weights and input, runs alternating, medians; prints the largest
difference of their outputs. Usage: ``OMP_NUM_THREADS=1 python scripts/bench_nlsa_ab.py
--old REV [--size H W] [--channels C] [--layout channels_last|nchw] [--scale S]
[--repeat N]`` (``--scale``: the input is ``S * randn``; S of 30 or more gives queries of
the hundreds that trained networks have).
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
importlib.import_module("cclnn.models")  # the package the loaded files import from


def load(name: str, path: Path):
    """``path`` as a module of ``cclnn.models`` (its relative imports resolve there)."""
    spec = importlib.util.spec_from_file_location(f"cclnn.models._ab_{name}", path)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "cclnn.models"
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="git revision of the 'old' nlsa.py")
    parser.add_argument("--size", type=int, nargs=2, default=(532, 532))
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--layout", choices=("channels_last", "nchw"), default="channels_last")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    source = subprocess.run(["git", "show", f"{args.old}:cclnn/models/nlsa.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        old_path = Path(tmp) / "nlsa_old.py"
        old_path.write_text(source)
        versions = {"old": load("old", old_path),
                    "new": load("new", ROOT / "cclnn" / "models" / "nlsa.py")}
    torch.manual_seed(0)
    x = torch.randn(1, args.channels, *args.size) * args.scale
    if args.layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    modules, state = {}, None
    for name, version in versions.items():
        module = version.NonLocalSparseAttention(args.channels).eval()
        state = state or module.state_dict()
        module.load_state_dict(state)
        modules[name] = module
    times = {name: [] for name in modules}
    outputs = {}
    with torch.inference_mode():
        for name, module in modules.items():  # warm-up, and the outputs compared
            outputs[name] = module(x)
        for _ in range(args.repeat):
            for name, module in modules.items():
                start = time.perf_counter()
                module(x)
                times[name].append(time.perf_counter() - start)
    print(f"NLSA C={args.channels} {args.size[0]}x{args.size[1]} {args.layout} scale "
          f"{args.scale}, {torch.get_num_threads()} thread(s), old = {args.old}")
    for name, runs in times.items():
        print(f"  {name}: median {statistics.median(runs):.3f} s  runs "
              + " ".join(f"{t:.3f}" for t in runs))
    print(f"  max abs diff {(outputs['new'] - outputs['old']).abs().max().item():.3g}, "
          f"output max {outputs['old'].abs().max().item():.3g}")


if __name__ == "__main__":
    main()
