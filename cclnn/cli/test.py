"""``cclnn test``: PSNR/SSIM of a network on benchmark sets (Table 5 style)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..data.benchmark import BenchmarkSet, resolve_benchmark
from ..inference import resolve_device, super_resolve
from ..resize import imresize
from .common import (NON_NEGATIVE, WEIGHTS_WITH_SCALE, add_data_root, add_device, add_json,
                     add_scale, add_self_ensemble, add_weights, model_from_options,
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
    p.add_argument("--save-images", help="write SR images to DIR/DATASET/xS/")
    add_device(p)
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
                                    ensemble=args.self_ensemble, device=device)


def run(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate, markdown_table  # loaded when run, not for --help
    folders = [resolve_benchmark(d, args.data_root) for d in args.datasets]
    results = []
    for scale in args.scale:
        sr_fn = _make_super_resolver(args, scale, len(args.scale))
        for name, folder in zip(args.datasets, folders):
            bench = BenchmarkSet(folder, scale, name=Path(name).name)
            save = (Path(args.save_images) / bench.name / f"x{scale}") if args.save_images else None
            results.append(evaluate(sr_fn, bench, progress=not args.json, save_dir=save))
    if args.json:
        print(json.dumps({"results": [r.as_dict() for r in results]}))
    else:
        label = (model_label(args.model, args.weights, args.scale[0])
                 + ("+" if args.self_ensemble else ""))
        print(markdown_table(label, results))
    return 0
