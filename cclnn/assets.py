"""Files shipped inside the package (Set5, for the demo and the core tests)."""
from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
SET5 = ASSETS / "Set5"


def set5_hr(name: str) -> Path:
    return SET5 / "HR" / f"{name}.png"


def set5_lr(name: str, scale: int) -> Path:
    return SET5 / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png"
