"""``cclnn export``: a training checkpoint as a .safetensors weights file."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.checkpoint import export_checkpoint


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="a training checkpoint as a .safetensors weights file")
    p.add_argument("checkpoint", help="best.pt or latest.pt of a `cclnn train` run")
    p.add_argument("-o", "--output", required=True, help="weights file (*.safetensors)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    meta = export_checkpoint(args.checkpoint, args.output)
    size = Path(args.output).stat().st_size / 1e6
    print(f"{args.output}: {meta['model']} x{meta['scale']} from {meta['run']} at iteration "
          f"{meta['iteration']}{', ' + meta['validation'] if 'validation' in meta else ''} "
          f"({size:.1f} MB)")
    return 0
