"""``cclnn score``: PSNR/SSIM of SR images made elsewhere against their HR images."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..data.benchmark import list_images
from ..data.images import read_image
from ..resize import mod_crop
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


def _hr_of(sr_stem: str, hr_by_stem: dict[str, Path], suffixes: list[str]) -> Path | None:
    """The HR image whose stem is ``sr_stem`` less the first of ``suffixes`` that fits."""
    for suffix in suffixes:
        if sr_stem.endswith(suffix):
            stem = sr_stem[: len(sr_stem) - len(suffix)] if suffix else sr_stem
            if stem in hr_by_stem:
                return hr_by_stem[stem]
    return None


def run(args: argparse.Namespace) -> int:
    from ..evaluate import mean_scores, score_image  # loaded when run, not for --help
    hr_files, _ = list_images(Path(args.hr))
    sr_files, _ = list_images(Path(args.sr))
    hr_by_stem = {p.stem: p for p in hr_files}
    suffixes = [args.sr_suffix] if args.sr_suffix is not None else [
        f"_SR_x{args.scale}", f"_x{args.scale}", f"x{args.scale}", "_SR", ""]
    scores = []
    for sr_path in sr_files:
        match = _hr_of(sr_path.stem, hr_by_stem, suffixes)
        if match is None:
            print(f"score: no HR image for {sr_path.name}, skipped", file=sys.stderr)
            continue
        hr = mod_crop(read_image(match), args.scale)
        sr = read_image(sr_path)
        if sr.shape != hr.shape:
            raise CLIError(f"{sr_path}: size {sr.shape[1]}x{sr.shape[0]} does not match HR "
                           f"{match.name} cropped to x{args.scale} ({hr.shape[1]}x{hr.shape[0]})")
        scores.append(score_image(match.stem, hr, sr, args.scale))
    if not scores:
        raise CLIError(f"--sr: no image in {args.sr} matches an HR image in {args.hr}")
    result = mean_scores(Path(args.hr).name, args.scale, scores)
    if args.json:
        print(json.dumps({"images": [asdict(s) for s in scores], "psnr": result.psnr,
                          "ssim": result.ssim}))
    else:
        print("| image | PSNR | SSIM |\n|---|---:|---:|")
        for s in scores:
            print(f"| {s.name} | {s.psnr:.2f} | {s.ssim:.4f} |")
        print(f"| **mean ({result.images})** | {result.psnr:.2f} | {result.ssim:.4f} |")
    return 0
