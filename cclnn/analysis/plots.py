"""Training curves and PSNR-vs-parameters scatter plots.

``cclnn plot RUN_DIR [RUN_DIR ...] -o FIG.png`` reads each run's ``train_log.csv`` (columns
``iteration,epoch,lr,loss,l_rec,l_aux,data_s,compute_s``; required) and ``val_log.csv``
(``iteration,epoch,dataset,psnr,ssim,images``; optional: a run that has not validated yet has
none) and draws two panels: the training loss (column ``loss``, log scale) against the
iteration, as logged (thin) and as a running mean over the last 10 logged values (thick,
once a run has 20 rows or more), and the validation PSNR against the iteration, one line per
run and validation set. A run is labelled by its folder name (by the path as given when two
runs share a name). Rows are sorted by iteration; when an iteration appears twice (a resumed
run), the last row wins.

``cclnn plot --scatter RESULT.json [...] [--label NAME ...] -o FIG.png`` reads ``cclnn test
--json`` outputs (``{"results": [{"dataset", "scale", "psnr", "ssim", "images"}]}``) and draws
PSNR against the parameter count, one panel per (dataset, scale) found. Each file's network is
its ``--label`` (one per file, in order) or else the file name's stem (``a2n.json`` -> a2n); the
parameter count is :func:`cclnn.models.count_parameters` (NAME, scale), MeanShift layers
included, as ``cclnn models``. ``bicubic`` has no parameters: it is drawn as a dashed
horizontal reference line. The parameter axis is logarithmic.

Figure sizes (pixels at 100 dpi): curves 1200 x 460; scatter 460 x 380 per panel, up to 3
panels per row.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..config import ConfigError
from ..engine.logs import TRAIN_FIELDS, TRAIN_LOG, VAL_FIELDS, VAL_LOG, read_log
from ..models import count_parameters
from . import AnalysisError, new_figure

SMOOTH = 10
CURVES_SIZE = (1200, 460)
PANEL_SIZE = (460, 380)
PANELS_PER_ROW = 3


# ----------------------------------------------------------------------------- reading

def read_run(run_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """(training rows, validation rows) of one run folder."""
    run = Path(run_dir)
    if not run.is_dir():
        raise AnalysisError(f"{run}: not a run folder")
    train_path = run / TRAIN_LOG
    if not train_path.is_file():
        raise AnalysisError(f"{run}: no {TRAIN_LOG} (is it a cclnn training run folder?)")
    train = read_log(train_path, TRAIN_FIELDS, ("iteration", "loss"))
    val_path = run / VAL_LOG
    val = read_log(val_path, VAL_FIELDS, ("iteration", "psnr")) if val_path.is_file() else []
    return train, val


def read_results(path: str | Path) -> list[dict]:
    """The ``results`` of a ``cclnn test --json`` file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise AnalysisError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AnalysisError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise AnalysisError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list) or not results:
        raise AnalysisError(f"{path}: expected the output of `cclnn test --json`: "
                            f"{{\"results\": [{{\"dataset\", \"scale\", \"psnr\", ...}}]}}")
    out = []
    for k, r in enumerate(results):
        try:
            out.append({"dataset": str(r["dataset"]), "scale": int(r["scale"]),
                        "psnr": float(r["psnr"]), "ssim": float(r.get("ssim", "nan"))})
        except (KeyError, TypeError, ValueError):
            raise AnalysisError(f"{path}: results[{k}] needs dataset, scale and psnr") from None
    return out


def run_labels(run_dirs: list[str]) -> list[str]:
    names = [Path(r).resolve().name for r in run_dirs]
    return [n if names.count(n) == 1 else str(r) for n, r in zip(names, run_dirs)]


def running_mean(values: np.ndarray, window: int = SMOOTH) -> np.ndarray:
    """Mean of the last ``window`` values at each position (fewer at the start)."""
    c = np.cumsum(np.insert(np.asarray(values, dtype=np.float64), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


# ----------------------------------------------------------------------------- curves

def curves_figure(runs: list[tuple[str, list[dict], list[dict]]]):
    """Training loss and validation PSNR of ``runs`` = [(label, train rows, val rows)]."""
    import matplotlib
    from matplotlib.ticker import LogFormatter
    width, height = CURVES_SIZE
    fig = new_figure(width, height)
    colours = matplotlib.colormaps["tab10"]
    ax_loss = fig.add_axes([80 / width, 60 / height, 460 / width, 350 / height])
    ax_val = fig.add_axes([690 / width, 60 / height, 460 / width, 350 / height])
    any_val = False
    smoothed = False
    for k, (label, train, val) in enumerate(runs):
        colour = colours(k % 10)
        it = np.array([r["iteration"] for r in train])
        loss = np.array([r["loss"] for r in train])
        if len(train) >= 2 * SMOOTH:
            ax_loss.plot(it, loss, color=colour, linewidth=0.7, alpha=0.35)
            ax_loss.plot(it, running_mean(loss), color=colour, linewidth=1.8, label=label)
            smoothed = True
        else:
            ax_loss.plot(it, loss, color=colour, linewidth=1.2, marker=".", label=label)
        datasets = list(dict.fromkeys(r["dataset"] for r in val))
        for j, dataset in enumerate(datasets):
            rows = [r for r in val if r["dataset"] == dataset]
            ax_val.plot([r["iteration"] for r in rows], [r["psnr"] for r in rows], color=colour,
                        linestyle=("-", "--", ":", "-.")[j % 4], marker="o", markersize=4,
                        label=f"{label}: {dataset}" if len(runs) > 1 else dataset)
            any_val = True
    positive = [r["loss"] for _, train, _ in runs for r in train if r["loss"] > 0]
    if positive and max(positive) / min(positive) > 5:
        ax_loss.set_yscale("log")
        ax_loss.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax_loss.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False,
                                                       minor_thresholds=(2, 0.5)))
    ax_loss.set_title("Training loss" + (f" (thin: as logged, thick: mean of the last "
                                         f"{SMOOTH})" if smoothed else ""), fontsize=11)
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("loss")
    ax_val.set_title("Validation PSNR (Y channel)", fontsize=11)
    ax_val.set_xlabel("iteration")
    ax_val.set_ylabel("PSNR (dB)")
    if not any_val:
        ax_val.text(0.5, 0.5, "no validation logged yet", ha="center", va="center",
                    transform=ax_val.transAxes, fontsize=11, color="0.4")
        ax_val.set_yticks([])
    ax_val.set_xlim(ax_loss.get_xlim())  # the same iteration axis on both panels
    for ax in (ax_loss, ax_val):
        ax.grid(True, which="major", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9, loc="best", frameon=True)
    return fig


def band_figure(curves: list[tuple[str, list[dict]]], title: str):
    """Validation PSNR of several networks over several seeds: ``curves`` = [(label,
    [{iteration, mean, low, high}])], the mean as a line, min-max as a band (``cclnn ablate``)."""
    import matplotlib
    width, height = 820, 520
    fig = new_figure(width, height)
    ax = fig.add_axes([80 / width, 60 / height, 500 / width, 420 / height])
    colours = matplotlib.colormaps["tab10"]
    for k, (label, points) in enumerate(curves):
        it = [p["iteration"] for p in points]
        ax.plot(it, [p["mean"] for p in points], color=colours(k % 10), marker="o",
                markersize=3, linewidth=1.6, label=label)
        ax.fill_between(it, [p["low"] for p in points], [p["high"] for p in points],
                        color=colours(k % 10), alpha=0.2, linewidth=0)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("iteration")
    ax.set_ylabel("PSNR (dB, Y)")
    ax.grid(True, alpha=0.3)
    if curves:  # the last 60 % of the run, where the networks separate
        tail = [p for _, points in curves for p in points
                if p["iteration"] >= 0.4 * max(q["iteration"] for q in points)]
        low, high = min(p["low"] for p in tail), max(p["high"] for p in tail)
        pad = max(0.1 * (high - low), 0.05)
        ax.set_ylim(low - pad, high + pad)
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=True,
                  title="mean over seeds;\nband: min-max", title_fontsize=8)
    return fig


# ----------------------------------------------------------------------------- scatter

def scatter_figure_size(n_panels: int) -> tuple[int, int]:
    cols = min(n_panels, PANELS_PER_ROW)
    rows = math.ceil(n_panels / PANELS_PER_ROW)
    return cols * PANEL_SIZE[0], rows * PANEL_SIZE[1]


def _format_params(value: float, _pos=None) -> str:
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e3:
        return f"{value / 1e3:g}K"
    return f"{value:g}"


def _mantissa(value: float) -> int:
    return int(round(value / 10 ** math.floor(math.log10(value)))) if value > 0 else 0


def scatter_points(files: list[str], labels: list[str] | None) -> list[dict]:
    """One point per (file, result): {label, dataset, scale, psnr, params (None: bicubic)}."""
    if labels and len(labels) != len(files):
        raise AnalysisError(f"--label: give one per file ({len(files)} file(s), "
                            f"{len(labels)} label(s)), or none to use the file names")
    points = []
    for k, path in enumerate(files):
        results = read_results(path)
        label = labels[k] if labels else Path(path).stem
        for r in results:
            params = None
            if label != "bicubic":
                try:
                    params = count_parameters(label, r["scale"])
                except ConfigError as exc:
                    raise AnalysisError(f"{path}: cannot count the parameters of '{label}' "
                                        f"({str(exc).split(';')[0]}); name the file NAME.json "
                                        f"or pass --label NAME with a registered model") from None
            points.append({"label": label, "params": params, **r})
    return points


LABEL_OFFSETS = [  # (dx, dy) in points, horizontal and vertical alignment
    (7, 0, "left", "center"), (0, 7, "center", "bottom"), (0, -7, "center", "top"),
    (-7, 0, "right", "center"), (5, 5, "left", "bottom"), (5, -5, "left", "top"),
    (-5, 5, "right", "bottom"), (-5, -5, "right", "top"), (0, 16, "center", "bottom"),
    (0, -16, "center", "top")]


def place_labels(fig, ax, xy: list[tuple[float, float]], labels: list[str]) -> None:
    """Label each point at the first of :data:`LABEL_OFFSETS` whose text box stays inside the
    axes and overlaps neither an earlier label nor any point (greedy; the first offset if none
    is free). Axis limits must be final."""
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    centres = ax.transData.transform(np.asarray(xy, dtype=np.float64))
    r = 4.0 * fig.dpi / 72  # marker radius, pixels
    taken = [(cx - r, cy - r, cx + r, cy + r) for cx, cy in centres]

    def free(box):
        inside = (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0
                  and box.y1 <= frame.y1)
        return inside and not any(box.x0 < b[2] and box.x1 > b[0] and box.y0 < b[3]
                                  and box.y1 > b[1] for b in taken)

    for (x, y), label in zip(xy, labels):
        chosen = None
        for dx, dy, ha, va in LABEL_OFFSETS:
            text = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points",
                               ha=ha, va=va, fontsize=9)
            box = text.get_window_extent(renderer)
            if free(box):
                chosen = (text, box)
                break
            text.remove()
        if chosen is None:
            dx, dy, ha, va = LABEL_OFFSETS[0]
            text = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points",
                               ha=ha, va=va, fontsize=9)
            chosen = (text, text.get_window_extent(renderer))
        box = chosen[1]
        taken.append((box.x0, box.y0, box.x1, box.y1))


def scatter_figure(points: list[dict]):
    from matplotlib.ticker import FuncFormatter
    panels = list(dict.fromkeys((p["dataset"], p["scale"]) for p in points))
    width, height = scatter_figure_size(len(panels))
    fig = new_figure(width, height)
    pw, ph = PANEL_SIZE
    for k, (dataset, scale) in enumerate(panels):
        r, c = divmod(k, PANELS_PER_ROW)
        bottom = height - (r + 1) * ph
        ax = fig.add_axes([(c * pw + 80) / width, (bottom + 55) / height, (pw - 105) / width,
                           (ph - 95) / height])
        mine = [p for p in points if (p["dataset"], p["scale"]) == (dataset, scale)]
        nets = sorted((p for p in mine if p["params"] is not None), key=lambda p: p["params"])
        refs = [p for p in mine if p["params"] is None]
        if nets:
            xs = np.array([p["params"] for p in nets], dtype=np.float64)
            ys = np.array([p["psnr"] for p in nets])
            ax.scatter(xs, ys, s=36, color="tab:blue", zorder=3)
            ax.set_xscale("log")
            lo, hi = xs.min(), xs.max()
            span = max(hi / lo, 100.0)
            ax.set_xlim(lo / span ** 0.25, hi * span ** 0.25)
            ax.xaxis.set_major_formatter(FuncFormatter(_format_params))
            decades = math.log10(ax.get_xlim()[1] / ax.get_xlim()[0])
            labelled = (2, 5) if decades < 2.5 else ()
            ax.xaxis.set_minor_formatter(FuncFormatter(
                lambda v, _p: _format_params(v) if _mantissa(v) in labelled else ""))
        else:
            ax.set_xticks([])
        for p in refs:
            ax.axhline(p["psnr"], color="0.45", linestyle="--", linewidth=1)
            ax.annotate(f"{p['label']} {p['psnr']:.2f} dB", (0.02, p["psnr"]),
                        xycoords=("axes fraction", "data"), xytext=(0, 3),
                        textcoords="offset points", fontsize=8.5, color="0.35", va="bottom")
        psnrs = [p["psnr"] for p in mine]
        pad = max(0.15 * (max(psnrs) - min(psnrs)), 0.25)
        ax.set_ylim(min(psnrs) - pad, max(psnrs) + pad)
        if nets:
            place_labels(fig, ax, [(p["params"], p["psnr"]) for p in nets],
                         [p["label"] for p in nets])
        ax.set_title(f"{dataset} x{scale}", fontsize=11)
        ax.set_xlabel("parameters")
        ax.set_ylabel("PSNR (dB, Y)")
        ax.grid(True, alpha=0.3)
    return fig

