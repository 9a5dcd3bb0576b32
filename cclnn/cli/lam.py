"""``cclnn lam``: Local Attribution Map and Diffusion Index of a network (see
:mod:`cclnn.analysis.lam` and docs/analysis.md)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..analysis import AnalysisError, check_png_path, require_matplotlib, save_figure
from ..data.benchmark import BenchmarkSet, resolve_benchmark
from ..data.images import read_image
from ..inference import resolve_device
from .common import (NON_NEGATIVE, POSITIVE, add_data_root, add_device, add_json, add_scale,
                     add_weights, model_from_options)


def add_parser(sub) -> None:
    p = sub.add_parser("lam", help="Local Attribution Map and Diffusion Index of a network")
    p.add_argument("--model", required=True)
    add_weights(p, "weights file; '{scale}' in the path is replaced "
                   "(default: the shipped weights)")
    add_scale(p, required=True)
    p.add_argument("--image", help="HR image (LR = MATLAB bicubic of it, mod-cropped)")
    p.add_argument("--dataset", help="mean DI over a benchmark set, centre window of each image")
    add_data_root(p)
    p.add_argument("--x", type=NON_NEGATIVE, help="window's left column, SR pixels")
    p.add_argument("--y", type=NON_NEGATIVE, help="window's top row, SR pixels")
    p.add_argument("--window", type=POSITIVE, default=16,
                   help="window size, SR pixels (default 16)")
    p.add_argument("-o", "--output", help="picture (.png; default IMAGE_lam_MODEL_xS.png); "
                                          "with --dataset a folder for one picture per image")
    p.add_argument("--batch", type=POSITIVE, default=10, help="path steps per network call")
    add_device(p)
    add_json(p, "JSON only on stdout")
    p.set_defaults(func=run)


def _progress_bar(total: int, desc: str, disable: bool):
    return tqdm(total=total, desc=desc, unit="step", disable=disable, leave=False,
                file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    # the attribution code is loaded when run, not for --help
    from ..analysis.lam import (KERNEL_SIZE, SIGMA, STEPS, check_window, lam_figure,
                                local_attribution_map, lr_from_hr)
    if (args.image is None) == (args.dataset is None):
        raise AnalysisError("give one of --image HR_IMAGE or --dataset D")
    if args.batch < 1:
        raise AnalysisError(f"--batch must be positive, got {args.batch}")
    if args.output is not None or args.image is not None:  # fail before the long computation
        require_matplotlib()
        if args.image is not None and args.output is not None:
            check_png_path(args.output)
    device = resolve_device(args.device)
    model = model_from_options(args.model, args.scale, args.weights, device)
    common = dict(window=args.window, scale=args.scale, batch=args.batch, device=device)
    if args.image is not None:
        if args.x is None or args.y is None:
            raise AnalysisError("--image needs --x and --y (top-left corner of the window, "
                                "SR pixels)")
        hr, lr = lr_from_hr(read_image(args.image), args.scale)
        check_window(args.x, args.y, args.window, hr.shape[1], hr.shape[0])
        bar = _progress_bar(STEPS, "LAM", args.json)
        result = local_attribution_map(model, lr, args.x, args.y, progress=bar.update, **common)
        bar.close()
        out = Path(args.output) if args.output else Path(
            f"{Path(args.image).stem}_lam_{args.model}_x{args.scale}.png")
        title = (f"LAM of {args.model} x{args.scale} on {Path(args.image).name}, "
                 f"{args.window}x{args.window} window")
        save_figure(lam_figure(hr, lr, result, title), out)
        record = {**result.as_dict(), "model": args.model, "image": str(args.image),
                  "picture": str(out), "sigma": SIGMA, "steps": STEPS,
                  "kernel_size": KERNEL_SIZE}
        if args.json:
            print(json.dumps(record))
        else:
            print(f"{args.model} x{args.scale} {Path(args.image).name} window "
                  f"{args.window}x{args.window} at (x={args.x}, y={args.y}): DI {result.di:.2f} "
                  f"(Gini {result.gini:.4f}, 99 % of the attribution within "
                  f"{result.radius99:.1f} LR px); picture {out}")
        return 0
    return _run_dataset(args, model, common)


def _run_dataset(args: argparse.Namespace, model, common: dict) -> int:
    from ..analysis.lam import STEPS, centre_window, lam_figure, local_attribution_map
    if args.x is not None or args.y is not None:
        raise AnalysisError("--dataset uses the centre window of every image; --x/--y are for "
                            "--image")
    folder = resolve_benchmark(args.dataset, args.data_root)
    bench = BenchmarkSet(folder, args.scale, name=Path(args.dataset).name)
    out_dir = Path(args.output) if args.output else None
    if out_dir is not None and not out_dir.is_dir():
        raise AnalysisError(f"-o {out_dir}: with --dataset, -o names an existing folder for "
                            f"one picture per image")
    rows = []
    bar = _progress_bar(STEPS * len(bench), f"LAM {bench.name}", args.json)
    for pair in bench:
        x, y = centre_window(pair.hr.shape[1], pair.hr.shape[0], args.window)
        result = local_attribution_map(model, pair.lr, x, y, progress=bar.update, **common)
        rows.append({"name": pair.name, **result.as_dict()})
        if out_dir is not None:
            title = (f"LAM of {args.model} x{args.scale} on {bench.name}/{pair.name}, "
                     f"centre {args.window}x{args.window} window")
            save_figure(lam_figure(pair.hr, pair.lr, result, title),
                        out_dir / f"{pair.name}_lam_{args.model}_x{args.scale}.png")
    bar.close()
    mean_di = float(np.mean([r["di"] for r in rows]))
    if args.json:
        print(json.dumps({"dataset": bench.name, "model": args.model, "scale": args.scale,
                          "window": args.window, "position": "centre", "di": mean_di,
                          "images": rows}))
    else:
        print("| image | window (x, y) | DI | Gini | radius99 (LR px) |\n|---|---|---:|---:|---:|")
        for r in rows:
            print(f"| {r['name']} | ({r['x']}, {r['y']}) | {r['di']:.2f} | {r['gini']:.4f} | "
                  f"{r['radius99']:.1f} |")
        print(f"| **mean ({len(rows)})** | centre | {mean_di:.2f} | | |")
    return 0
