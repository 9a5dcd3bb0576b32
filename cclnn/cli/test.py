"""``cclnn test``: PSNR/SSIM of a network on benchmark sets (Table 5 style).

Everything is checked before a network runs: the datasets are present and, with
``--save-images``, the folder can be written and holds none of the images to write (unless
``--overwrite``). Images go to ``DIR/LABEL_xS/DATASET/NAME.png``, the label naming the model,
its ``--weights`` file and ``+`` for ``--self-ensemble``, so that two models never share a
folder.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..data.benchmark import BenchmarkSet, resolve_benchmark
from ..inference import autocast_dtype, resolve_device, super_resolve
from ..resize import imresize
from .common import (NON_NEGATIVE, WEIGHTS_WITH_SCALE, CLIError, add_data_root, add_device,
                     add_json, add_scale, add_self_ensemble, add_weights, model_from_options,
                     model_label)


def add_parser(sub) -> None:
    p = sub.add_parser("test", help="PSNR/SSIM of a network on benchmark sets (Table 5 style)")
    p.add_argument("--model", help="a registered network, or 'bicubic' (default: the one "
                                   "--weights records, else the shipped cclnn-t)")
    add_weights(p, WEIGHTS_WITH_SCALE)
    add_scale(p, nargs="+", required=True)
    p.add_argument("--datasets", nargs="+", required=True,
                   help="Set5, Set14, B100, Urban100, Manga109 (under --data-root) or folders")
    add_data_root(p)
    add_self_ensemble(p)
    p.add_argument("--tile", type=NON_NEGATIVE,
                   help="tile size in LR pixels, 0 for none (default: the whole image, or the "
                        "network's own limit: 128 for RNAN, as its official test)")
    p.add_argument("--tile-overlap", type=NON_NEGATIVE, default=16,
                   help="LR pixels of context per side")
    p.add_argument("--save-images", metavar="DIR",
                   help="write SR images to DIR/MODEL_xS/DATASET/NAME.png (MODEL: the model, "
                        "its weights file, '+' with --self-ensemble)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace SR images already in --save-images")
    add_device(p)
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="arithmetic of the network (default fp32; fp16 on CUDA only)")
    add_json(p, "JSON results only on stdout")
    p.set_defaults(func=run)


def _make_super_resolver(args: argparse.Namespace, scale: int, n_scales: int):
    """uint8 LR -> uint8 SR for ``--model`` at ``scale`` (MATLAB bicubic for 'bicubic')."""
    if args.model == "bicubic":
        return lambda lr: imresize(lr, scale)
    # --device is resolved after the weights loaded (a weights error is reported first)
    model = model_from_options(args.model, scale, args.weights, args.device, n_scales)
    device = resolve_device(args.device)
    return lambda lr: super_resolve(model, lr, scale, tile=args.tile, overlap=args.tile_overlap,
                                    ensemble=args.self_ensemble, device=device,
                                    precision=args.precision)


def image_folder(args: argparse.Namespace, scale: int, dataset: str) -> Path:
    """``DIR/LABEL_xS/DATASET``: one folder per model, weights, ensemble and scale."""
    label = model_label(args.model, args.weights, scale)
    if args.weights and args.model != "bicubic":
        label += "-" + Path(args.weights.replace("{scale}", str(scale))).stem
    label += "+" if args.self_ensemble else ""
    label += "" if args.precision == "fp32" else f"-{args.precision}"
    return Path(args.save_images) / f"{label}_x{scale}" / dataset


def _check_writable(root: Path) -> None:
    """``--save-images`` is (or can become) a folder this process may write in."""
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CLIError(f"--save-images: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"--save-images: cannot write in {existing} (permission denied)")


def _check_outputs(args: argparse.Namespace, benches: dict) -> None:
    """Before any network runs: the image folder is writable and, without --overwrite,
    holds none of the images to write."""
    _check_writable(Path(args.save_images))
    if args.overwrite:
        return
    taken = [image_folder(args, scale, bench.name) / f"{hr.stem}.png"
             for (scale, _), bench in benches.items() for hr in bench.hr_files]
    taken = [path for path in taken if path.exists()]
    if taken:
        raise CLIError(f"--save-images: {len(taken)} SR image(s) already exist (e.g. "
                       f"{taken[0]}); pass --overwrite to replace them")


def run(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate, markdown_table  # loaded when run, not for --help
    folders = [resolve_benchmark(d, args.data_root) for d in args.datasets]
    benches = {(scale, name): BenchmarkSet(folder, scale, name=Path(name).name)
               for scale in args.scale for name, folder in zip(args.datasets, folders)}
    if args.model != "bicubic":
        autocast_dtype(args.precision, resolve_device(args.device))  # before any work
    if args.save_images:
        _check_outputs(args, benches)
    results = []
    for scale in args.scale:
        sr_fn = _make_super_resolver(args, scale, len(args.scale))
        for name in args.datasets:
            bench = benches[scale, name]
            save = image_folder(args, scale, bench.name) if args.save_images else None
            results.append(evaluate(sr_fn, bench, progress=not args.json, save_dir=save,
                                    overwrite=args.overwrite))
    if args.json:
        print(json.dumps({"results": [r.as_dict() for r in results]}))
    else:
        label = (model_label(args.model, args.weights, args.scale[0])
                 + ("+" if args.self_ensemble else ""))
        print(markdown_table(label, results))
    return 0
