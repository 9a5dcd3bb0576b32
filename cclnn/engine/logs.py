"""The CSV logs of a training run, ``train_log.csv`` and ``val_log.csv``: their columns, the
writer, the truncation on resume and the reader. Nothing else spells a column list.

``train_log.csv``: ``iteration,epoch,lr,loss,l_rec,l_aux,data_s,compute_s``, one row every
``log_every`` iterations (``lr`` as ``%.6g``, losses as ``%.6f``, the seconds spent loading the
batch and computing the step as ``%.4f``). ``val_log.csv``:
``iteration,epoch,dataset,psnr,ssim,images``, one row per validation (PSNR ``%.4f`` dB, SSIM
``%.5f``, the number of images). ``epoch`` counts from 0. With tensorboard installed the
trainer also writes TensorBoard scalars under ``RUN_DIR/tensorboard``.
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..atomic import atomic_path
from ..errors import CclnnError

TRAIN_LOG = "train_log.csv"
VAL_LOG = "val_log.csv"
TRAIN_FIELDS = ("iteration", "epoch", "lr", "loss", "l_rec", "l_aux", "data_s", "compute_s")
VAL_FIELDS = ("iteration", "epoch", "dataset", "psnr", "ssim", "images")
LOG_FIELDS = {TRAIN_LOG: TRAIN_FIELDS, VAL_LOG: VAL_FIELDS}
STEP_TIME_FIELDS = ("iteration", "data_s", "compute_s")  # what a step-time estimate reads


class LogError(CclnnError, ValueError):
    """A log file cannot be read or is not a cclnn log."""


# ----------------------------------------------------------------------------- writing

def start_logs(run_dir: Path) -> None:
    """Both logs of a new run, holding their header only."""
    for name, fields in LOG_FIELDS.items():
        path = run_dir / name
        try:
            with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
                csv.writer(f).writerow(fields)
        except OSError as exc:
            raise LogError(f"cannot write {path}: {(exc.strerror or str(exc)).lower()}") from None


def append_row(path: Path, row: list) -> None:
    """One row at the end of a log (a failed append, e.g. on a full disk, names the log)."""
    try:
        with open(path, "a", newline="") as f:
            csv.writer(f).writerow(row)
    except OSError as exc:
        raise LogError(f"cannot write {path}: {(exc.strerror or str(exc)).lower()}") from None


def train_row(iteration: int, epoch: int, lr: float, parts: dict, data_s: float,
              compute_s: float) -> list:
    """A ``train_log.csv`` row; ``parts`` holds the floats ``loss``, ``l_rec`` and ``l_aux``."""
    return [iteration, epoch, f"{lr:.6g}", f"{parts['loss']:.6f}", f"{parts['l_rec']:.6f}",
            f"{parts['l_aux']:.6f}", f"{data_s:.4f}", f"{compute_s:.4f}"]


def val_row(iteration: int, epoch: int, dataset: str, psnr: float, ssim: float,
            images: int) -> list:
    """A ``val_log.csv`` row."""
    return [iteration, epoch, dataset, f"{psnr:.4f}", f"{ssim:.5f}", images]


def truncate_log(path: Path, iteration: int) -> None:
    """Drop the rows after ``iteration`` (written after the checkpoint a run resumes from)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= iteration]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept)


def tensorboard_writer(run_dir: Path):
    """A TensorBoard writer under ``run_dir/tensorboard`` when tensorboard is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


# ----------------------------------------------------------------------------- reading

def read_log(path: Path, columns: tuple[str, ...], numeric: tuple[str, ...]) -> list[dict]:
    """Rows of a CSV log with the ``columns`` header; ``numeric`` columns as floats.

    Rows are sorted by iteration; when an iteration (of a dataset) appears twice, the last
    row wins (a resumed run)."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in columns if c not in header]
            if missing:
                raise LogError(f"{path}: not a cclnn log: missing column(s) "
                               f"{', '.join(missing)} (header: {','.join(header) or 'none'})")
            rows = []
            for line, row in enumerate(reader, start=2):
                try:
                    rows.append({**row, **{c: float(row[c]) for c in numeric}})
                except (TypeError, ValueError):
                    raise LogError(f"{path}, line {line}: not a number in "
                                   f"{', '.join(numeric)}") from None
    except FileNotFoundError:
        raise LogError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LogError(f"{path}: cannot read ({exc})") from None
    by_iteration = {}
    for row in rows:  # the last row of an iteration wins (resumed runs)
        by_iteration[(row["iteration"], row.get("dataset"))] = row
    return sorted(by_iteration.values(), key=lambda r: r["iteration"])
