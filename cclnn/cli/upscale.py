"""``cclnn upscale``: upscale image files, folders and globs (see :mod:`cclnn.upscale`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..errors import CclnnError
from ..inference import resolve_device
from ..upscaling import UpscaleError, expand_inputs, output_path, upscale_file
from .common import (WEIGHTS_WITH_SCALE, add_device, add_scale, add_self_ensemble, add_weights,
                     model_from_options, tile_size)


def add_parser(sub) -> None:
    p = sub.add_parser("upscale", help="upscale images (files, folders, globs)")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("-o", "--output", help="output file (one input) or folder "
                                          "(default: beside each input, NAME_xS.EXT)")
    add_scale(p, default=2)
    p.add_argument("--model", help="network (default: the one --weights records, else the "
                                   "shipped cclnn-t)")
    add_weights(p, WEIGHTS_WITH_SCALE)
    p.add_argument("--tile", type=tile_size, default="auto",
                   help="tile size in LR pixels, 0 for none (default auto: 1024/scale on "
                        "larger images)")
    add_device(p)
    add_self_ensemble(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """One line per failed file, exit 1 if any failed."""
    files, errors = expand_inputs(args.inputs)
    for message in errors:
        print(f"cclnn upscale: error: {message}", file=sys.stderr)
    if not files:
        return 1
    single = len(files) == 1 and len(args.inputs) == 1 and not Path(args.inputs[0]).is_dir()
    if args.output and not single:
        out = Path(args.output)
        if out.exists() and not out.is_dir():
            raise UpscaleError(f"-o {out}: several inputs need an output folder")
        out.mkdir(parents=True, exist_ok=True)
    # --device is resolved after the weights loaded (a weights error is reported first)
    net = model_from_options(args.model, args.scale, args.weights, args.device)
    device = resolve_device(args.device)
    failed = len(errors)
    bar = tqdm(files, unit="img", disable=len(files) < 2, file=sys.stderr)
    for source in bar:
        target = output_path(source, args.output, args.scale, single)
        try:
            upscale_file(source, target, net, args.scale, overwrite=args.overwrite,
                         tile=args.tile, device=device, self_ensemble=args.self_ensemble)
        except (CclnnError, OSError) as exc:
            failed += 1
            text = str(exc)
            message = text if text.startswith((str(source), str(target))) else f"{source}: {text}"
            tqdm.write(f"cclnn upscale: error: {message}", file=sys.stderr)
            continue
        if len(files) == 1:
            print(f"{source} -> {target}")
    bar.close()
    if len(files) > 1:
        print(f"upscaled {len(files) - (failed - len(errors))} of {len(files)} image(s) "
              f"x{args.scale}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0
