"""Peak memory (max RSS) of ``python -m cclnn upscale`` on synthetic photos, and the time to
refuse an output that is too large; writes ``results/upscale_memory.md``.

Each run is its own child process and its peak is that child's ``ru_maxrss`` (``os.wait4``),
next to the bound of :func:`cclnn.upscaling.peak_bytes` plus the measured RSS of the same
command run untiled on one tile's input (``tile + 2 * overlap`` LR pixels square: Python,
torch, the network and its activations on the largest tile: what does not grow with the
image). Usage: ``python scripts/measure_upscale_memory.py [--quick] [--cases SIDE:SCALE:MODEL
...] [--code DIR] [--out FILE]`` (``--quick``: only the refusal and the 1000 x 1000 runs with a
small network; ``--cases``: these runs instead of the default list, without the refusal; ``--code``: measure the
``cclnn`` of another checkout, e.g. an older commit's, for a before/after table).
"""
from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cclnn  # noqa: E402
from cclnn.upscaling import AUTO_TILE_HR, TILE_OVERLAP, peak_bytes  # noqa: E402

TILE = {s: AUTO_TILE_HR // s + 2 * TILE_OVERLAP for s in (2, 4)}  # the largest tile's input


def photo(path: Path, side: int) -> None:
    """A smooth synthetic photo (random blocks, bilinearly enlarged) of ``side`` x ``side``."""
    base = np.random.default_rng(side).integers(0, 256, (side // 8, side // 8, 3), np.uint8)
    Image.fromarray(base).resize((side, side), Image.BILINEAR).save(path)


def header_only_png(path: Path, width: int, height: int) -> None:
    """A PNG that says ``width`` x ``height`` RGB (a 277 KB file of that size in the probe)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(bytes(3 * width + 1))) + chunk(b"IEND", b""))


def measure(args: list[str], code: Path = ROOT) -> tuple[int, float, float, int]:
    """(exit status, peak RSS in MB, wall seconds, CPU seconds) of ``python -m cclnn ARGS``
    with the ``cclnn`` of checkout ``code``."""
    env = dict(os.environ, PYTHONPATH=str(code))
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "cclnn", *args], env=env, cwd=code,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # (-m looks in cwd first)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    err = child.stderr.read().decode().strip().splitlines()
    if child.returncode:
        print("  stderr:", err[-1:] if err else "")
    return child.returncode, usage.ru_maxrss / 1024, wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "results" / "upscale_memory.md"))
    parser.add_argument("--cases", nargs="+", metavar="SIDE:SCALE:MODEL")
    parser.add_argument("--code", type=Path, default=ROOT)
    options = parser.parse_args()
    rows, lines = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cclnn.save_weights(cclnn.build_model("edsr-s", 2), tmp / "edsr-s_x2.safetensors")
        cclnn.save_weights(cclnn.build_model("edsr-s", 4), tmp / "edsr-s_x4.safetensors")
        if not options.cases:  # (code without the refusal would try, and exhaust the memory)
            header_only_png(tmp / "huge.png", 10000, 9500)
            code, rss, wall, _ = measure(["upscale", str(tmp / "huge.png"), "--scale", "4",
                                          "-o", str(tmp / "huge_out.png")], options.code)
            lines.append(f"10000x9500 at x4 (a header-only PNG): exit {code}, refused in "
                         f"{wall:.2f} s wall, peak RSS {rss:.0f} MB, no output: "
                         f"{not (tmp / 'huge_out.png').exists()}")
        cases = [(TILE[2], 2, "edsr-s"), (TILE[4], 4, "edsr-s"),
                 (1000, 2, "edsr-s"), (1000, 4, "edsr-s")]
        if not options.quick:
            cases += [(TILE[2], 2, "cclnn-t"), (TILE[4], 4, "cclnn-t"),
                      (1000, 2, "cclnn-t"), (1000, 4, "cclnn-t"),
                      (3000, 2, "edsr-s"), (3000, 4, "edsr-s")]
        if options.cases:
            cases = [(int(side), int(scale), model) for side, scale, model in
                     (case.split(":") for case in options.cases)]
        base = {}
        for side, scale, model in cases:
            photo(tmp / f"p{side}.png", side)
            args = ["upscale", str(tmp / f"p{side}.png"), "--scale", str(scale), "--model", model,
                    "-o", str(tmp / f"out_{side}_{scale}_{model}.png"), "--overwrite",
                    "--device", "cpu"]
            if side == TILE[scale]:
                args += ["--tile", "0"]  # the network on one whole tile, context included
            if model == "edsr-s":
                args += ["--weights", str(tmp / "edsr-s_x{scale}.safetensors")]
            code, rss, wall, cpu = measure(args, options.code)
            if side == TILE[scale]:
                base[(scale, model)] = rss
            bound = (f"{base[(scale, model)] + peak_bytes(side, side, scale) / 2**20:.0f}"
                     if (scale, model) in base else "")
            rows.append(f"| {side}x{side} | x{scale} | {model} | {code} | {rss:.0f} | "
                        f"{bound} | {wall:.0f} | {cpu:.0f} |")
            print(rows[-1], flush=True)
    text = ["# `cclnn upscale` peak memory", "",
            f"Measured by `python scripts/measure_upscale_memory.py {' '.join(sys.argv[1:])}` "
            f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs; "
            "edsr-s with random weights stands in for a cheap network). Bound: the RSS of the same "
            "command run untiled on one largest tile (the rows of 544 and 288 pixels) + "
            "`peak_bytes(w, h, s)` = 8 B per LR pixel + 12 B per "
            "output pixel + 40 B per pixel of one band of tiles.", "",
            "| input | scale | model | exit | peak RSS MB | bound MB | wall s | CPU s |",
            "|---|---|---|---|---:|---:|---:|---:|", *rows, "", *lines, ""]
    Path(options.out).write_text("\n".join(text))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
