"""Analysis tools: Local Attribution Maps (:mod:`.lam`), crop comparisons (:mod:`.compare`)
and training / PSNR-vs-parameters plots (:mod:`.plots`). See ``docs/analysis.md``.

Pictures are drawn with matplotlib (the optional ``plot`` extra) on ``matplotlib.figure.Figure``
objects with the Agg renderer: no pyplot, so no global backend is changed, and nothing needs a
display. Figure sizes are fixed by each tool's layout rule (no ``bbox_inches='tight'``), so a
picture's pixel size is predictable.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..atomic import atomic_path
from ..errors import CclnnError

DPI = 100


class AnalysisError(CclnnError, ValueError):
    """Bad input to an analysis tool, or a missing optional dependency (one-line message)."""


def require_matplotlib():
    """The ``matplotlib`` module, or an :class:`AnalysisError` naming the fix."""
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise AnalysisError("pictures need matplotlib, which is not installed: "
                            "pip install 'cclnn[plot]' (or pip install matplotlib)") from None
    return matplotlib


def new_figure(width_px: int, height_px: int):
    """A matplotlib Figure of exactly ``width_px`` x ``height_px`` pixels at :data:`DPI`."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)  # attaches itself: text extents can be measured before saving
    return fig


def check_png_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path, or an :class:`AnalysisError` if it cannot take a PNG picture."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise AnalysisError(f"{path}: pictures are written as PNG; name the file *.png")
    if not path.parent.is_dir():
        raise AnalysisError(f"{path}: folder {path.parent} does not exist")
    return path


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG atomically (temp file in the same folder, then rename)."""
    path = check_png_path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path
