"""Scoring a super-resolver on benchmark sets, and the Table-5-style report."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
from tqdm import tqdm

from .data.benchmark import BenchmarkSet
from .data.images import ImageError, write_image
from .metrics import MetricError, psnr, ssim

SuperResolver = Callable[[np.ndarray], np.ndarray]  # uint8 LR -> uint8 SR


@dataclass
class Result:
    dataset: str
    scale: int
    psnr: float
    ssim: float
    images: int
    per_image: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)

    def as_dict(self, per_image: bool = False) -> dict:
        """The means; with ``per_image`` also ``{"per_image": {name: [psnr, ssim]}}`` (the
        unit of a paired test between two models scored on the same images)."""
        out = asdict(self)
        if per_image:
            out["per_image"] = {k: list(v) for k, v in self.per_image.items()}
        else:
            del out["per_image"]
        return out


@dataclass(frozen=True)
class ImageScore:
    """One SR image's Y PSNR/SSIM against its HR image."""
    name: str
    psnr: float
    ssim: float


def score_image(name: str, hr: np.ndarray, sr: np.ndarray, scale: int) -> ImageScore:
    """Y PSNR/SSIM of uint8 ``sr`` against ``hr`` of the same shape, shaving ``scale`` pixels."""
    if sr.shape != hr.shape:
        raise MetricError(f"{name}: SR shape {sr.shape} != HR shape {hr.shape}")
    try:
        return ImageScore(name, psnr(hr, sr, scale), ssim(hr, sr, scale))
    except MetricError as exc:
        raise MetricError(f"{name}: {exc}") from None


def mean_scores(dataset: str, scale: int, scores: list[ImageScore]) -> Result:
    """The set's result: every image weighs the same in the means."""
    return Result(dataset, scale, float(np.mean([s.psnr for s in scores])),
                  float(np.mean([s.ssim for s in scores])), len(scores),
                  {s.name: (s.psnr, s.ssim) for s in scores})


def save_sr_image(path: Path, sr: np.ndarray, overwrite: bool) -> None:
    """Write an SR image; without ``overwrite`` an existing file (even one another process
    wrote meanwhile) is kept and the error names it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_image(path, sr, replace=overwrite)
    except FileExistsError:
        raise ImageError(f"{path}: already exists; not replaced") from None


def evaluate(sr_fn: SuperResolver, benchmark: BenchmarkSet, *, progress: bool = True,
             save_dir: Path | None = None, overwrite: bool = False,
             known: Mapping[str, ImageScore] | None = None,
             on_image: Callable[[ImageScore, float], None] | None = None) -> Result:
    """Mean Y PSNR/SSIM of ``sr_fn`` over ``benchmark`` (each image scored, then averaged);
    with ``save_dir``, the SR images as ``save_dir/NAME.png`` (replaced only if
    ``overwrite``). ``known`` holds images scored before (an interrupted scoring's), which
    are not super-resolved again; ``on_image(score, seconds)`` sees each new one as it lands."""
    known = dict(known or {})
    if known and save_dir is not None:
        raise ValueError("evaluate: known scores have no SR images to save")
    scores = []
    bar = tqdm(total=len(benchmark), desc=f"{benchmark.name} x{benchmark.scale}",
               disable=not progress, leave=False, unit="img")
    for i, hr_file in enumerate(benchmark.hr_files):
        if hr_file.stem in known:
            scores.append(known[hr_file.stem])
        else:
            pair = benchmark.load(i)
            start = time.perf_counter()
            sr = sr_fn(pair.lr)
            score = score_image(pair.name, pair.hr, sr, benchmark.scale)
            scores.append(score)
            if on_image is not None:
                on_image(score, time.perf_counter() - start)
            if save_dir is not None:
                save_sr_image(save_dir / f"{pair.name}.png", sr, overwrite)
        bar.update(1)
        bar.set_postfix(psnr=f"{np.mean([s.psnr for s in scores]):.2f}")
    bar.close()
    return mean_scores(benchmark.name, benchmark.scale, scores)


def markdown_table(label: str, results: list[Result]) -> str:
    """| Model | Scale | Set5 | ... | with PSNR / SSIM cells, one row per scale."""
    datasets = list(dict.fromkeys(r.dataset for r in results))
    scales = sorted({r.scale for r in results})
    lookup = {(r.dataset, r.scale): r for r in results}
    lines = ["| Model | Scale | " + " | ".join(datasets) + " |",
             "|---|---|" + "---|" * len(datasets)]
    for s in scales:
        cells = []
        for d in datasets:
            r = lookup.get((d, s))
            cells.append(f"{r.psnr:.2f} / {r.ssim:.4f}" if r else "-")
        lines.append(f"| {label} | x{s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
