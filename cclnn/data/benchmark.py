"""Benchmark sets: ``NAME/HR/*.png`` with optional MATLAB-made ``NAME/LR_bicubic/X{s}/``.

Without LR files the LR image is made with the MATLAB-exact resize and cached on disk under
``$CCLNN_CACHE`` (default ``~/.cache/cclnn``), keyed by the SHA-256 of the HR file's bytes,
so a changed HR image never gets a stale LR image.
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..assets import SET5
from ..errors import CclnnError
from ..resize import degrade, mod_crop
from .images import ImageError, is_image_file, read_image, write_image
from .layout import (BENCHMARKS, DATA_ENV, HR_FOLDER, cache_root, canonical_name, data_root,
                     lr_dir, lr_file_name)


class DatasetError(CclnnError):
    """A dataset cannot be found or has an inconsistent layout."""


def resolve_benchmark(name: str, root: str | os.PathLike | None = None) -> Path:
    """Folder of benchmark ``name``: a path, or a standard name under the data root."""
    path = Path(name)
    if path.is_dir():
        if not (path / HR_FOLDER).is_dir():
            raise DatasetError(f"{path}: a benchmark folder needs an HR/ sub-folder")
        return path
    canonical = canonical_name(name)
    if canonical is None:
        raise DatasetError(f"dataset '{name}': not a folder and not one of "
                           f"{', '.join(BENCHMARKS)}")
    root_path = data_root(None if root is None else str(root))
    if root_path is not None and not root_path.is_dir():  # a typo, not "use the bundled Set5"
        source = "--data-root" if root is not None else DATA_ENV
        raise DatasetError(f"{source} {root_path}: not a folder")
    looked = []
    if root_path is not None:
        for candidate in (root_path / canonical, root_path / "benchmark" / canonical):
            if (candidate / HR_FOLDER).is_dir():
                return candidate
            looked.append(str(candidate))
    if canonical == "Set5":
        return SET5
    where = f"looked in {', '.join(looked)}" if looked else "no --data-root or CCLNN_DATA set"
    raise DatasetError(f"dataset '{canonical}' not found ({where}); get it with "
                       f"`cclnn data fetch benchmark --root DIR`")


def list_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) in ``folder``, sorted by name; sub-folders are ignored."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found")
    entries = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return [p for p in entries if is_image_file(p)], [p for p in entries if not is_image_file(p)]


def cached_bicubic_lr(hr_path: Path, hr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-bicubic LR of the mod-cropped ``hr``, cached by the HR file's content hash."""
    digest = hashlib.sha256(hr_path.read_bytes()).hexdigest()[:24]
    cache = cache_root() / "lr" / f"{digest}_x{scale}.png"
    if cache.is_file():
        try:
            lr = read_image(cache)
            if lr.shape[0] * scale == hr.shape[0] and lr.shape[1] * scale == hr.shape[1]:
                return lr
        except ImageError:
            pass  # a damaged cache entry is simply rebuilt
    lr = degrade(hr, scale)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_image(cache, lr)
    except (OSError, ImageError):
        pass  # a read-only cache only costs time
    return lr


@dataclass
class BenchmarkPair:
    name: str
    hr: np.ndarray  # uint8 H x W x 3, cropped to a multiple of the scale
    lr: np.ndarray  # uint8 (H / s) x (W / s) x 3


class BenchmarkSet:
    """The (HR, LR) pairs of one benchmark at one scale, loaded lazily."""

    def __init__(self, folder: str | os.PathLike, scale: int, name: str | None = None):
        self.folder = Path(folder)
        self.scale = scale
        self.name = name or self.folder.name
        self.hr_files, skipped = list_images(self.folder / HR_FOLDER)
        if skipped:
            print(f"{self.name}: skipped {len(skipped)} non-image file(s): "
                  f"{', '.join(p.name for p in skipped[:5])}", file=sys.stderr)
        if not self.hr_files:
            raise DatasetError(f"{self.folder / HR_FOLDER}: no images")

    def __len__(self) -> int:
        return len(self.hr_files)

    def lr_file(self, hr_file: Path) -> Path:
        return lr_dir(self.folder, self.scale) / lr_file_name(hr_file.stem, self.scale,
                                                               hr_file.suffix)

    def load(self, index: int) -> BenchmarkPair:
        hr_file = self.hr_files[index]
        hr = mod_crop(read_image(hr_file), self.scale)
        lr_file = self.lr_file(hr_file)
        if lr_file.is_file():
            lr = read_image(lr_file)
            if (lr.shape[0] * self.scale, lr.shape[1] * self.scale) != hr.shape[:2]:
                raise DatasetError(f"{lr_file}: size {lr.shape[1]}x{lr.shape[0]} does not match "
                                   f"HR {hr.shape[1]}x{hr.shape[0]} at x{self.scale}")
        else:
            lr = cached_bicubic_lr(hr_file, hr, self.scale)
        return BenchmarkPair(hr_file.stem, hr, lr)

    def __iter__(self) -> Iterator[BenchmarkPair]:
        for i in range(len(self)):
            yield self.load(i)


def make_lr_files(hr_dir: str | os.PathLike, scales, overwrite: bool = False) -> int:
    """Write ``LR_bicubic/X{s}/{stem}x{s}.png`` beside ``hr_dir``; returns files written."""
    hr_dir = Path(hr_dir)
    images, _ = list_images(hr_dir)
    written = 0
    for s in scales:
        out_dir = lr_dir(hr_dir.parent, s)
        out_dir.mkdir(parents=True, exist_ok=True)
        for path in images:
            target = out_dir / lr_file_name(path.stem, s)
            if target.exists() and not overwrite:
                continue
            write_image(target, degrade(read_image(path), s))
            written += 1
    return written
