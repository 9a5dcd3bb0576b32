"""Visual comparison of super-resolvers on one crop (the style of the CCLNN paper's Fig. 4).

``cclnn compare --models NAME[:WEIGHTS] ... --image HR --box X Y W H --scale S -o FIG.png``:

* the HR image is cropped to a multiple of ``S`` (mod-crop) and its LR image is MATLAB
  ``imresize(HR, 1/S, 'bicubic')`` on uint8 (:func:`cclnn.imresize`), as in ``cclnn test``;
* every network (and ``bicubic``) super-resolves the *whole* LR image (so the crop sees the
  network's real context and border handling), the output is clamped and rounded to uint8, and
  then the box is cut out; ``LR`` is the LR image upscaled by nearest neighbour (pixel
  replication) to the HR grid before cropping;
* each crop is labelled with PSNR / SSIM against the HR crop, computed as :mod:`cclnn.metrics`
  does (Y of MATLAB ``rgb2ycbcr`` as float, SSIM with the 11 x 11 sigma 1.5 Gaussian window,
  'valid'), but with **no border shave** (the crop is an interior region, not an image border),
  so the box must be at least 11 x 11;
* ``WEIGHTS`` may contain ``{scale}``; without it the weights shipped with cclnn are used
  (an error if none ship for that network). ``bicubic`` is accepted as a model name; the
  Bicubic crop is always shown (once).

Box coordinates are HR pixels of the mod-cropped image: X (column) and Y (row) of the top-left
corner, width W and height H.

Layout (pixels at 100 dpi): the full HR image with the box on the left, its height equal to
the crop grid's; the crops (HR, LR, Bicubic, then the models in the order given) in
``ceil(n / 2)`` columns and 2 rows (1 row for 3 crops), each 200 px wide and 200 * H / W px
high (clamped to 100..400), with a 2-line label (name; PSNR dB / SSIM) above it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..metrics import psnr, ssim
from ..resize import imresize
from . import AnalysisError, new_figure

CROP_W = 200
LABEL = 40
GAP = 12
MARGIN = 10
BOX_COLOUR = "#ff2020"
MIN_BOX = 11  # the SSIM window


@dataclass
class Crop:
    label: str
    image: np.ndarray  # uint8 H x W x 3
    psnr: float | None  # None for the HR reference
    ssim: float | None


def parse_model(spec: str) -> tuple[str, str | None]:
    """'NAME[:WEIGHTS]' -> (name, weights or None)."""
    name, sep, weights = spec.partition(":")
    if not name:
        raise AnalysisError(f"--models: empty model name in '{spec}'")
    if sep and not weights:
        raise AnalysisError(f"--models: '{spec}' has ':' but no weights file after it")
    return name, (weights or None)


def check_box(box, hr_shape, scale: int) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in box)
    height, width = hr_shape[:2]
    if w < MIN_BOX or h < MIN_BOX:
        raise AnalysisError(f"--box: {w}x{h} is smaller than the {MIN_BOX}x{MIN_BOX} SSIM window")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise AnalysisError(f"--box {x} {y} {w} {h} is outside the {width}x{height} image "
                            f"(cropped to a multiple of {scale})")
    return x, y, w, h


def crop(img: np.ndarray, box) -> np.ndarray:
    x, y, w, h = box
    return np.ascontiguousarray(img[y: y + h, x: x + w])


def nearest_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)


def score_crop(label: str, hr_crop: np.ndarray, sr_crop: np.ndarray) -> Crop:
    return Crop(label, sr_crop, psnr(hr_crop, sr_crop, 0), ssim(hr_crop, sr_crop, 0))


def make_crops(hr: np.ndarray, lr: np.ndarray, scale: int, box,
               outputs: list[tuple[str, np.ndarray]]) -> list[Crop]:
    """HR, LR (nearest), Bicubic, then ``outputs`` (label, full-size uint8 SR), cropped and
    scored. ``hr`` is mod-cropped, ``lr`` its LR image."""
    hr_crop = crop(hr, box)
    crops = [Crop("HR", hr_crop, None, None),
             score_crop(f"LR (nearest x{scale})", hr_crop, crop(nearest_upscale(lr, scale), box)),
             score_crop("Bicubic", hr_crop, crop(imresize(lr, scale), box))]
    for label, sr in outputs:
        if sr.shape != hr.shape:
            raise AnalysisError(f"{label}: output {sr.shape[1]}x{sr.shape[0]} does not match "
                                f"HR {hr.shape[1]}x{hr.shape[0]}")
        crops.append(score_crop(label, hr_crop, crop(sr, box)))
    return crops


def _grid(n: int) -> tuple[int, int]:
    rows = 1 if n <= 3 else 2
    return rows, math.ceil(n / rows)


def _crop_height(box) -> int:
    _, _, w, h = box
    return int(min(max(round(CROP_W * h / w), 100), 400))


def compare_figure_size(hr_shape, box, n_crops: int) -> tuple[int, int]:
    """(width, height) in pixels of the comparison figure."""
    rows, cols = _grid(n_crops)
    grid_w = cols * CROP_W + (cols - 1) * GAP
    grid_h = rows * (LABEL + _crop_height(box)) + (rows - 1) * GAP
    full_h = grid_h - LABEL
    full_w = int(round(full_h * hr_shape[1] / hr_shape[0]))
    return MARGIN + full_w + 2 * GAP + grid_w + MARGIN, MARGIN + grid_h + MARGIN


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def compare_figure(hr: np.ndarray, box, crops: list[Crop], title: str):
    from matplotlib.patches import Rectangle
    width, height = compare_figure_size(hr.shape, box, len(crops))
    fig = new_figure(width, height)
    rows, cols = _grid(len(crops))
    ch = _crop_height(box)
    grid_h = rows * (LABEL + ch) + (rows - 1) * GAP
    full_h = grid_h - LABEL
    full_w = int(round(full_h * hr.shape[1] / hr.shape[0]))

    def axes(left, bottom, w, h):
        ax = fig.add_axes([left / width, bottom / height, w / width, h / height])
        ax.set_xticks([])
        ax.set_yticks([])
        return ax

    ax = axes(MARGIN, MARGIN, full_w, full_h)
    ax.imshow(hr, interpolation="antialiased")
    x, y, w, h = box
    ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=BOX_COLOUR,
                           linewidth=2))
    ax.set_title(_short(title, 60), fontsize=10, pad=6)
    grid_left = MARGIN + full_w + 2 * GAP
    for k, c in enumerate(crops):
        r, col = divmod(k, cols)
        left = grid_left + col * (CROP_W + GAP)
        top = height - MARGIN - r * (LABEL + ch + GAP)  # top of this cell's label
        ax = axes(left, top - LABEL - ch, CROP_W, ch)
        ax.imshow(c.image, interpolation="nearest")
        for spine in ax.spines.values():
            spine.set_edgecolor(BOX_COLOUR if c.psnr is None else "black")
        metrics = ("PSNR dB / SSIM (Y)" if c.psnr is None
                   else f"{c.psnr:.2f} dB / {c.ssim:.4f}")
        ax.set_title(f"{_short(c.label)}\n{metrics}", fontsize=9.5, pad=4, linespacing=1.3)
    return fig

