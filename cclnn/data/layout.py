"""Where data lives and what its files are called: the one place that says so.

* the scales the networks are built for, ``SCALES``;
* the standard benchmark names and their aliases (``bsd100`` -> ``B100``);
* a benchmark folder's layout: ``NAME/HR/*.png`` and, made by MATLAB, ``NAME/LR_bicubic/X{s}/``
  holding ``{stem}x{s}{suffix}`` (the DIV2K naming too: ``0001.png`` -> ``0001x2.png``);
* the data root (``--data-root``, else ``$CCLNN_DATA``) and the cache root (``$CCLNN_CACHE``,
  default ``~/.cache/cclnn``).
"""
from __future__ import annotations

import os
from pathlib import Path

SCALES = (2, 3, 4)
SCALES_TEXT = ", ".join(map(str, SCALES[:-1])) + f" or {SCALES[-1]}"  # "2, 3 or 4"

BENCHMARKS = ("Set5", "Set14", "B100", "Urban100", "Manga109")
ALIASES = {"bsd100": "B100", "bsds100": "B100", "urban": "Urban100", "manga": "Manga109"}

HR_FOLDER = "HR"
LR_FOLDER = "LR_bicubic"

DATA_ENV = "CCLNN_DATA"
CACHE_ENV = "CCLNN_CACHE"


def canonical_name(name: str) -> str | None:
    lowered = name.lower()
    for known in BENCHMARKS:
        if known.lower() == lowered:
            return known
    return ALIASES.get(lowered)


def lr_dir(folder: Path, scale: int) -> Path:
    """The LR folder of a benchmark ``folder`` at ``scale``: ``folder/LR_bicubic/X{scale}``."""
    return folder / LR_FOLDER / f"X{scale}"


def lr_file_name(stem: str, scale: int, suffix: str = ".png") -> str:
    """The name of the LR image of HR image ``stem`` + ``suffix``: ``{stem}x{scale}{suffix}``."""
    return f"{stem}x{scale}{suffix}"


def data_root(option: str | None = None) -> Path | None:
    value = option or os.environ.get(DATA_ENV)
    return Path(value) if value else None


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "cclnn"))
