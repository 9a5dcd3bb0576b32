"""``cclnn upscale``: upscale image files, folders and globs (see :mod:`cclnn.upscaling`)."""
from __future__ import annotations

import argparse
import sys

import torch
from tqdm import tqdm

from ..cpu import keep_freed_memory
from ..errors import CclnnError
from ..inference import autocast_dtype, resolve_device
from ..upscaling import (DEFAULT_MAX_OUTPUT_PIXELS, EXTENSIONS, OutputExists, Plan, plan_jobs,
                         upscale_file)
from .common import (NON_NEGATIVE, POSITIVE, WEIGHTS_WITH_SCALE, add_device, add_scale,
                     add_self_ensemble, add_weights, model_from_options, positive_number,
                     printable_line, scale_or_recorded, tile_size)


def add_parser(sub) -> None:
    p = sub.add_parser("upscale", help="upscale images (files, folders, globs)")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("-o", "--output", help="output image file (one input) or folder: an "
                                          "existing one, or a name ending in / or without a "
                                          "suffix (default: beside each input, "
                                          "STEM_SUFFIX.EXT)")
    add_scale(p, help="scale factor (default: the one --weights records, else 2)")
    p.add_argument("--model", help="network (default: the one --weights records, else the "
                                   "shipped cclnn-t)")
    add_weights(p, WEIGHTS_WITH_SCALE)
    p.add_argument("--tile", type=tile_size, default="auto",
                   help="tile size in LR pixels, 0 for none (default auto: 1024/scale on "
                        "larger images)")
    p.add_argument("--max-output-pixels", type=NON_NEGATIVE, default=DEFAULT_MAX_OUTPUT_PIXELS,
                   help=f"refuse larger outputs, 0 for no limit (default "
                        f"{DEFAULT_MAX_OUTPUT_PIXELS}: 16384 x 16384)")
    add_device(p)
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="arithmetic of the network (default fp32; bf16 on CPU or CUDA, fp16 on "
                        "CUDA only)")
    p.add_argument("--outscale", type=positive_number,
                   help="total factor of the output (the network's scale, then MATLAB "
                        "bicubic), e.g. 1.5 or 3 with a x2 network")
    p.add_argument("--suffix", help="output name STEM_SUFFIX.EXT (default xSCALE, or "
                                    "xOUTSCALE with --outscale)")
    p.add_argument("--ext", choices=tuple(EXTENSIONS), default="auto",
                   help="output format (default auto: the input's)")
    p.add_argument("--threads", type=POSITIVE,
                   help="CPU threads (default: all cores); on the CPU tiles run that many at "
                        "once, one thread each, with the same output whatever the count")
    add_self_ensemble(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--progress", action="store_true",
                   help="progress bars on stderr even when it is not a terminal")
    p.set_defaults(func=run)


def _say(kind: str, message: str) -> None:
    tqdm.write(f"cclnn upscale: {kind}: {printable_line(message)}", file=sys.stderr)


def _tile_bar(args: argparse.Namespace, position: int):
    """A per-tile bar for one image (none for an untiled one)."""
    def make(total: int):
        if total < 2:
            return None
        bar = tqdm(total=total, unit="tile", leave=False, position=position, file=sys.stderr,
                   disable=False if args.progress else None)
        def step() -> None:
            bar.update()
            if bar.n >= total:
                bar.close()
        return step
    return make


def _work(args: argparse.Namespace, plan: Plan, net, device) -> tuple[int, int]:
    """(upscaled, failed) of the plan's jobs; each failure one line, the others go on."""
    done = failed = 0
    many = len(plan.jobs) > 1
    bar = tqdm(plan.jobs, unit="img", disable=not many or (None if not args.progress else False),
               file=sys.stderr)
    for source, target in bar:
        try:
            upscale_file(source, target, net, args.scale, overwrite=args.overwrite,
                         tile=args.tile, device=device, self_ensemble=args.self_ensemble,
                         max_output_pixels=args.max_output_pixels, outscale=args.outscale,
                         precision=args.precision,
                         tile_bar=_tile_bar(args, 1 if many else 0))
        except OutputExists as exc:
            plan.skipped.append(target)
            _say("skipped", str(exc))
            continue
        except (CclnnError, OSError) as exc:
            failed += 1
            text = str(exc)
            _say("error", text if text.startswith((str(source), str(target)))
                 else f"{source}: {text}")
            continue
        done += 1
        if not many:
            print(printable_line(f"{source} -> {target}"))
    bar.close()
    return done, failed


def run(args: argparse.Namespace) -> int:
    """Everything checked first (inputs, outputs, sizes), then the network built and run;
    exit 1 if any input failed, 0 when all were upscaled or skipped."""
    args.scale = scale_or_recorded(args.scale, args.weights)
    autocast_dtype(args.precision, resolve_device(args.device))  # fp16 on the CPU: refused now
    plan = plan_jobs(args.inputs, args.output, args.scale, overwrite=args.overwrite,
                     max_output_pixels=args.max_output_pixels or None, outscale=args.outscale,
                     suffix=args.suffix, ext=args.ext)
    for message in plan.failed:
        _say("error", message)
    for target in plan.skipped:
        _say("skipped", f"{target}: exists (use --overwrite to replace it)")
    done, failed = 0, len(plan.failed)
    if plan.jobs:
        keep_freed_memory()
        if args.threads:
            torch.set_num_threads(args.threads)
        # --device is resolved after the weights loaded (a weights error is reported first)
        net = model_from_options(args.model, args.scale, args.weights, args.device)
        upscaled, errors = _work(args, plan, net, resolve_device(args.device))
        done, failed = upscaled, failed + errors
    total = done + len(plan.skipped) + failed
    if total > 1 or plan.skipped:
        factor = f"x{args.outscale:g}" if args.outscale else f"x{args.scale}"
        print(f"{factor}: upscaled {done}, skipped {len(plan.skipped)}, failed {failed} "
              f"(of {total} image(s))")
    return 1 if failed else 0
