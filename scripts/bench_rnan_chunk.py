"""RNAN's non-local block (cclnn.models.network_rnan.NonLocalBlock) at one thread, by the
number of scores held at once (KEY_CHUNK_ELEMENTS), interleaved; max abs difference to the
first setting. Usage: python scripts/bench_rnan_chunk.py [--size H W] [--repeat N]"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import cclnn.models.network_rnan as rnan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(144, 160))
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    block = rnan.NonLocalBlock(args.channels).eval()
    torch.nn.init.normal_(block.out.weight, std=0.1)  # not the identity it starts as
    x = torch.randn(1, args.channels, *args.size)
    settings = [1 << 22, 1 << 21, 1 << 20, 1 << 19, 1 << 18]
    times = {s: [] for s in settings}
    outputs = {}
    with torch.inference_mode():
        for _ in range(args.repeat):
            for s in settings:
                rnan.KEY_CHUNK_ELEMENTS = s
                start = time.perf_counter()
                outputs[s] = block(x)
                times[s].append(time.perf_counter() - start)
    h, w = args.size
    print(f"| scores at once (floats) | keys per chunk at {h}x{w} | median s | max abs diff |")
    print("|---:|---:|---:|---:|")
    for s in settings:
        diff = (outputs[s] - outputs[settings[0]]).abs().max().item()
        print(f"| 2^{s.bit_length() - 1} | {max(1, s // (h * w))} | "
              f"{statistics.median(times[s]):.3f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
