"""``cclnn score``: PSNR/SSIM of SR images made elsewhere against their HR images."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..data.benchmark import list_images, mod_crop
from ..data.images import read_image
from .common import CLIError, add_json, add_scale


def add_parser(sub) -> None:
    p = sub.add_parser("score", help="PSNR/SSIM of SR images made elsewhere against HR")
    p.add_argument("--hr", required=True, help="folder of HR images")
    p.add_argument("--sr", required=True, help="folder of SR images")
    add_scale(p, required=True)
    p.add_argument("--sr-suffix", help="suffix of SR file stems, e.g. _RCAN_x2 (default: "
                                       "tries _SR_xS, _xS, xS, _SR and none)")
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..metrics import psnr, ssim  # loaded when run, not for --help
    hr_files, _ = list_images(Path(args.hr))
    sr_files, _ = list_images(Path(args.sr))
    by_stem = {p.stem: p for p in hr_files}
    suffixes = [args.sr_suffix] if args.sr_suffix is not None else [
        f"_SR_x{args.scale}", f"_x{args.scale}", f"x{args.scale}", "_SR", ""]
    rows = []
    for sr_path in sr_files:
        match = None
        for suffix in suffixes:
            if sr_path.stem.endswith(suffix):
                stem = sr_path.stem[: len(sr_path.stem) - len(suffix)] if suffix else sr_path.stem
                if stem in by_stem:
                    match = by_stem[stem]
                    break
        if match is None:
            print(f"score: no HR image for {sr_path.name}, skipped", file=sys.stderr)
            continue
        hr = mod_crop(read_image(match), args.scale)
        sr = read_image(sr_path)
        if sr.shape != hr.shape:
            raise CLIError(f"{sr_path}: size {sr.shape[1]}x{sr.shape[0]} does not match HR "
                           f"{match.name} cropped to x{args.scale} ({hr.shape[1]}x{hr.shape[0]})")
        rows.append({"name": match.stem, "psnr": psnr(hr, sr, args.scale),
                     "ssim": ssim(hr, sr, args.scale)})
    if not rows:
        raise CLIError(f"--sr: no image in {args.sr} matches an HR image in {args.hr}")
    mean_psnr = float(np.mean([r["psnr"] for r in rows]))
    mean_ssim = float(np.mean([r["ssim"] for r in rows]))
    if args.json:
        print(json.dumps({"images": rows, "psnr": mean_psnr, "ssim": mean_ssim}))
    else:
        print("| image | PSNR | SSIM |\n|---|---:|---:|")
        for r in rows:
            print(f"| {r['name']} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
        print(f"| **mean ({len(rows)})** | {mean_psnr:.2f} | {mean_ssim:.4f} |")
    return 0
