"""``cclnn export``: a training checkpoint as a .safetensors weights file, or a network as an
ONNX or TorchScript file checked against PyTorch (see :mod:`cclnn.export`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_scale, model_from_options, scale_or_recorded

FORMATS = ("safetensors", "onnx", "torchscript")


def image_size(value: str) -> tuple[int, int]:
    """argparse type: ``HxW`` (or one number for a square), each at least 2."""
    parts = value.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 48x40), got {value!r}")
    sizes = [int(p) for p in parts] * (3 - len(parts))
    if min(sizes) < 2:
        raise argparse.ArgumentTypeError(f"each side must be at least 2, got {value}")
    return sizes[0], sizes[1]


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="a checkpoint as .safetensors, or a network as ONNX or "
                                      "TorchScript (checked against PyTorch)")
    p.add_argument("source", metavar="FILE",
                   help="weights file (--format onnx, torchscript), or a best.pt/latest.pt "
                        "of a `cclnn train` run (--format safetensors)")
    p.add_argument("-o", "--output", required=True, help="the file to write")
    p.add_argument("--format", choices=FORMATS, default="safetensors",
                   help="safetensors (default: a checkpoint's weights), onnx (h and w free) "
                        "or torchscript")
    p.add_argument("--model", help="network of a weights file that does not record it")
    add_scale(p, help="scale of the weights (default: the one FILE records, else 2)")
    p.add_argument("--size", type=image_size, default=(48, 40), metavar="HxW",
                   help="test image size the export is traced and checked at (default 48x40; "
                        "TorchScript of srcnn/vdsr holds for this size only)")
    p.set_defaults(func=run)


def _export_checkpoint(args: argparse.Namespace) -> int:
    from ..engine.checkpoint import export_checkpoint
    meta = export_checkpoint(args.source, args.output)
    size = Path(args.output).stat().st_size / 1e6
    print(f"{args.output}: {meta['model']} x{meta['scale']} from {meta['run']} at iteration "
          f"{meta['iteration']}{', ' + meta['validation'] if 'validation' in meta else ''} "
          f"({size:.1f} MB)")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.format == "safetensors":
        return _export_checkpoint(args)
    from ..export import ExportError, export_network
    from ..models.descriptor import describe
    folder = Path(args.output).parent
    if not folder.is_dir():
        raise ExportError(f"-o {args.output}: folder {folder} does not exist")
    scale = scale_or_recorded(args.scale, args.source)
    net = model_from_options(args.model, scale, args.source, "cpu")
    label = f"{describe(net).name} x{scale}"
    check = export_network(net, args.output, args.format, label, args.size)
    sizes = " and ".join(f"{h}x{w}" for h, w in check.sizes)
    holds = "h and w free" if check.any_size else f"traced for {sizes} inputs only"
    size_mb = Path(args.output).stat().st_size / 1e6
    print(f"{args.output}: {label} as {args.format} ({holds}); max abs difference to PyTorch "
          f"{check.max_difference:.2g} on {sizes} ([0, 255]; {size_mb:.1f} MB)")
    return 0
