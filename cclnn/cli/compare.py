"""``cclnn compare``: crops of HR, LR, bicubic and networks with PSNR/SSIM (see
:mod:`cclnn.analysis.compare`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..analysis import AnalysisError, check_png_path, require_matplotlib, save_figure
from ..data.images import read_image
from ..inference import resolve_device, super_resolve
from ..resize import degrade, mod_crop
from .common import add_device, add_scale, model_from_options


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="crops of HR, LR, bicubic and networks with PSNR/SSIM")
    p.add_argument("--models", nargs="+", required=True, metavar="NAME[:WEIGHTS]",
                   help="networks ('bicubic' too); WEIGHTS may contain '{scale}' "
                        "(default: the shipped weights)")
    p.add_argument("--image", required=True, help="HR image")
    p.add_argument("--box", type=int, nargs=4, required=True, metavar=("X", "Y", "W", "H"),
                   help="crop in HR pixels: left, top, width, height")
    add_scale(p, required=True)
    p.add_argument("-o", "--output", required=True, help="picture (.png)")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # the figure code is loaded when run, not for --help
    from ..analysis.compare import check_box, compare_figure, make_crops, parse_model
    require_matplotlib()
    check_png_path(args.output)
    scale = args.scale
    specs = [parse_model(m) for m in args.models]
    hr = mod_crop(read_image(args.image), scale)
    box = check_box(args.box, hr.shape, scale)
    lr = degrade(hr, scale)
    device = resolve_device(args.device)
    names = [n for n, _ in specs]
    outputs = []
    for name, weights in specs:
        if name == "bicubic":  # always shown (third crop)
            if weights:
                raise AnalysisError("--models: bicubic takes no weights")
            continue
        model = model_from_options(name, scale, weights, device)
        label = name
        if names.count(name) > 1 and weights:
            label = f"{name} ({Path(weights.replace('{scale}', str(scale))).stem})"
        outputs.append((label, super_resolve(model, lr, scale, device=device)))
        del model
    crops = make_crops(hr, lr, scale, box, outputs)
    x, y, w, h = box
    title = f"{Path(args.image).name} x{scale}, box ({x}, {y}) {w}x{h}"
    out = save_figure(compare_figure(hr, box, crops, title), args.output)
    print(f"| crop of {Path(args.image).name} x{scale} | PSNR (Y, no shave) | SSIM |\n"
          "|---|---:|---:|")
    for c in crops[1:]:
        print(f"| {c.label} | {c.psnr:.2f} | {c.ssim:.4f} |")
    print(f"picture {out}")
    return 0
