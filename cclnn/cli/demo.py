"""``cclnn demo``: what the shipped weights do, without any download."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..assets import SET5, set5_lr
from ..data.benchmark import BenchmarkSet
from ..data.images import read_image, write_image
from ..resize import imresize
from ..upscaling import upscale_array
from .common import CLIError, add_scale, add_weights, model_from_options


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="upscale a bundled Set5 image with the shipped CCLNN-T and "
                                    "print its Set5 scores next to bicubic")
    p.add_argument("--model", help="network (default: the one --weights records, else cclnn-t)")
    add_weights(p, "weights file (default: the shipped weights)")
    add_scale(p, default=2)
    p.add_argument("--image", default="butterfly", help="bundled Set5 image name")
    p.add_argument("-o", "--output", help="picture written (replaced if it exists; default "
                                          "IMAGE_MODEL_xS.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Upscale a bundled Set5 image with a trained network, then score it on the bundled Set5
    next to bicubic."""
    from ..evaluate import evaluate  # with its metrics: loaded when run, not for --help
    path = set5_lr(args.image, args.scale)
    if not path.is_file():
        raise CLIError(f"--image: no bundled Set5 image '{args.image}'")
    net = model_from_options(args.model, args.scale, args.weights)
    args.model = net.info.name  # the network the file records where --model was omitted
    lr = read_image(path)
    start = time.perf_counter()
    sr = upscale_array(lr, net, args.scale, device="cpu")
    seconds = time.perf_counter() - start
    out = Path(args.output or f"{args.image}_{args.model}_x{args.scale}.png")
    write_image(out, sr)
    print(f"{out}: {args.image} {lr.shape[1]}x{lr.shape[0]} -> {sr.shape[1]}x{sr.shape[0]} "
          f"with {args.model} x{args.scale} in {seconds:.2f} s")
    bench = BenchmarkSet(SET5, args.scale)
    print(f"\n| Set5 x{args.scale} | PSNR (dB) | SSIM |\n|---|---:|---:|")
    for label, fn in (("bicubic", lambda x: imresize(x, args.scale)),
                      (args.model, lambda x: upscale_array(x, net, args.scale, device="cpu"))):
        r = evaluate(fn, bench, progress=False)
        print(f"| {label} | {r.psnr:.2f} | {r.ssim:.4f} |")
    return 0
