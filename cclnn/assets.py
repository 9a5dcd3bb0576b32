"""Files shipped inside the package (Set5, for the demo and the core tests)."""
from __future__ import annotations

from pathlib import Path

from .data.layout import lr_dir, lr_file_name

ASSETS = Path(__file__).resolve().parent / "assets"
SET5 = ASSETS / "Set5"


def set5_hr(name: str) -> Path:
    return SET5 / "HR" / f"{name}.png"


def set5_lr(name: str, scale: int) -> Path:
    return lr_dir(SET5, scale) / lr_file_name(name, scale)
