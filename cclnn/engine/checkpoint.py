"""Training checkpoints, ``latest.pt`` and ``best.pt`` of a run directory: the one place that
writes, reads and exports them.

``latest.pt`` (``"format": "cclnn-train-checkpoint/1"``) holds everything needed to resume a
run: model, optimizer, scheduler, EMA and grad-scaler states, RNG states, the iteration, the
best validation so far, the wall time, the devices and the resolved config (see
``Trainer._state``). ``best.pt`` holds the weights of the best validation PSNR with
``iteration``, ``psnr``, ``ssim``, ``dataset`` and ``config``.

Writes are atomic (:func:`cclnn.atomic.atomic_path`): a kill at any moment leaves the previous
file intact. Reads always use ``torch.load(weights_only=True)``, which refuses a pickle that
would run code rather than running it, and check the file before anything uses it: a missing,
empty, truncated or foreign file is a one-line :class:`CheckpointError` naming the file.
:func:`export_checkpoint` writes either kind as a safetensors weights file.
"""
from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch

from ..atomic import atomic_path
from ..models.registry import build_model
from ..weights import WeightsError, load_weights, save_weights

CHECKPOINT_FORMAT = "cclnn-train-checkpoint/1"
LATEST = "latest.pt"
BEST = "best.pt"
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archive
PICKLE_MAGIC = b"\x80"  # a pickle of protocol 2 or later (torch's legacy format)


class CheckpointError(WeightsError):
    """A checkpoint is missing, unreadable, or not one that ``cclnn train`` wrote."""


class _WriteErrors:
    """A file torch.save writes to that keeps the ``OSError`` of a failed write: torch's
    archive writer replaces it with its own message ("enforce fail at inline_container.cc"),
    which does not say that the disk is full."""

    def __init__(self, file):
        self.file = file
        self.error: Optional[OSError] = None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def write_checkpoint(state: Mapping, path: Path,
                     before_replace: Optional[Callable[[], None]] = None) -> None:
    """Write ``state`` to ``path`` atomically; ``before_replace`` is called once the temporary
    file is complete, before it replaces ``path`` (the trainer's fault injection). A failed
    write (a full disk, a file-size limit) is a one-line :class:`CheckpointError` naming
    ``path``; the temporary file is removed and the previous ``path`` stays as it was."""
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as file:
                writer = _WriteErrors(file)
                try:
                    torch.save(state, writer)
                except RuntimeError:
                    if writer.error is None:
                        raise
                    raise writer.error from None
            if before_replace is not None:
                before_replace()
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise CheckpointError(f"cannot write {path}: {reason} (the file there, if any, is "
                              "unchanged)") from None


def finite_weights(*models: Optional[torch.nn.Module]) -> bool:
    """Whether every floating-point parameter and buffer of the ``models`` (None: none) is
    finite (a diverged network's are not: such weights are never saved)."""
    return all(bool(torch.isfinite(t).all()) for model in models if model is not None
               for t in model.state_dict().values() if t.is_floating_point())


def read_checkpoint(path: str | os.PathLike) -> Any:
    """What ``path`` holds, unpickled with ``weights_only=True``; not checked any further."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith((ZIP_MAGIC, PICKLE_MAGIC)):
        what = "empty file" if not head else "not a file torch.save writes"
        raise CheckpointError(f"{path}: not a readable training checkpoint ({what})")
    try:
        with warnings.catch_warnings():  # torch warns before it refuses a foreign pickle
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused to load: the file holds Python objects other "
                              f"than tensors, which could run code ({_detail(exc)})") from None
    except Exception as exc:  # torch's own reader errors
        damaged = "truncated or damaged: " if head == ZIP_MAGIC else ""
        raise CheckpointError(f"{path}: not a readable training checkpoint "
                              f"({damaged}{_detail(exc)})") from None


def _detail(exc: Exception) -> str:
    """The line of a torch.load error that says what was wrong, without its boilerplate."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation",
                   "If you are seeing this error")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(boilerplate)]
    detail = (useful or lines or [type(exc).__name__])[0]
    detail = " ".join(detail.split(". This is an internal miniz error")[0].split())
    if isinstance(exc, (RuntimeError, pickle.UnpicklingError)):
        return detail  # torch's and pickle's own words
    return f"{type(exc).__name__}: {detail}"  # e.g. OSError of a truncated archive


def _format_problem(path: Path, data: Any) -> Optional[str]:
    """Why ``data`` is not a checkpoint of this format, or None when it is."""
    found = data.get("format") if isinstance(data, Mapping) else None
    if found == CHECKPOINT_FORMAT:
        return None
    other = f" (format {found!r}, expected {CHECKPOINT_FORMAT!r})" if found is not None else ""
    return f"{path}: not a cclnn training checkpoint{other}"


def load_training_state(path: str | os.PathLike) -> dict:
    """``latest.pt``: a resumable training state, its format checked."""
    path = Path(path)
    data = read_checkpoint(path)
    problem = _format_problem(path, data)
    if problem:
        raise CheckpointError(problem)
    return data


def load_checkpoint(path: str | os.PathLike) -> dict:
    """``latest.pt`` or ``best.pt``: a mapping holding the run's config (``config.model`` names
    the network); a ``format`` it holds must be this module's (``best.pt`` has none)."""
    path = Path(path)
    data = read_checkpoint(path)
    if isinstance(data, Mapping) and "format" in data:
        problem = _format_problem(path, data)
        if problem:
            raise CheckpointError(problem)
    config = data.get("config") if isinstance(data, Mapping) else None
    if not isinstance(config, Mapping) or "model" not in config:
        raise CheckpointError(f"{path}: no training config inside; not a `cclnn train` "
                              "checkpoint")
    return data


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike) -> dict:
    """A training checkpoint (``best.pt``/``latest.pt`` of ``cclnn train``) as a safetensors
    weights file: the network is rebuilt from the checkpoint's config and loaded strictly, so
    a file that would not load later is never written. Returns the metadata stored with it."""
    path = Path(checkpoint)
    data = load_checkpoint(path)
    config = data["config"]
    section = config["model"]
    model = build_model(section["name"], section["scale"], **dict(section.get("options") or {}))
    load_weights(model, path)
    metadata = {"model": section["name"], "scale": section["scale"],
                "options": dict(section.get("options") or {}), "run": config.get("name"),
                "iteration": data.get("iteration")}
    if "psnr" in data:
        metadata.update(validation=f"{data.get('dataset')} {data['psnr']:.4f} dB")
    out = Path(out)
    if out.suffix != ".safetensors":
        raise WeightsError(f"{out}: the exported file must be named *.safetensors")
    if not out.parent.is_dir():
        raise WeightsError(f"{out}: folder {out.parent} does not exist")
    save_weights(model, out, metadata)
    return metadata
