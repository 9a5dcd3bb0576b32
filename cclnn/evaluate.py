"""Scoring a super-resolver on benchmark sets, and the Table-5-style report."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from .data.benchmark import BenchmarkSet
from .data.images import write_image
from .metrics import psnr, ssim

SuperResolver = Callable[[np.ndarray], np.ndarray]  # uint8 LR -> uint8 SR


@dataclass
class Result:
    dataset: str
    scale: int
    psnr: float
    ssim: float
    images: int

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(sr_fn: SuperResolver, benchmark: BenchmarkSet, *, progress: bool = True,
             save_dir: Path | None = None) -> Result:
    """Mean Y PSNR/SSIM of ``sr_fn`` over ``benchmark`` (each image scored, then averaged)."""
    psnrs, ssims = [], []
    bar = tqdm(total=len(benchmark), desc=f"{benchmark.name} x{benchmark.scale}",
               disable=not progress, leave=False, unit="img")
    for pair in benchmark:
        sr = sr_fn(pair.lr)
        if sr.shape != pair.hr.shape:
            raise ValueError(f"{pair.name}: SR shape {sr.shape} != HR shape {pair.hr.shape}")
        psnrs.append(psnr(pair.hr, sr, benchmark.scale))
        ssims.append(ssim(pair.hr, sr, benchmark.scale))
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            write_image(save_dir / f"{pair.name}.png", sr)
        bar.update(1)
        bar.set_postfix(psnr=f"{np.mean(psnrs):.2f}")
    bar.close()
    return Result(benchmark.name, benchmark.scale, float(np.mean(psnrs)), float(np.mean(ssims)),
                  len(psnrs))


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
