"""A run folder's life: claimed by one training process at a time, set up for a new run,
brought back to its checkpoint for a resumed one.

Rank 0 locks the folder (``flock`` on ``RUN/.lock``, which holds the holder's pid and host)
for the life of the run, before any file in it is touched: a second ``cclnn train`` on the
folder stops with a one-line error naming the holder. The kernel drops the lock when its
process ends, however it ends (SIGKILL included), so a lock is never stale; temp files of
writers that were killed are removed when the folder is claimed.
"""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from ..atomic import remove_stale_temps, write_text_atomic, write_text_if_changed
from .checkpoint import LATEST
from .logs import LOG_FIELDS, start_logs, truncate_log
from .processes import TrainingError
from .train_config import TrainConfig, load_config

CONFIG = "config.yaml"


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


class RunLock:
    """An exclusive lock on a run folder, held until :meth:`release` (or this object is
    gone). The lock file is written in place, not atomically: its inode carries the lock."""

    NAME = ".lock"

    def __init__(self, run_dir: Path):
        self._fd: int | None = None
        try:
            fd = os.open(run_dir / self.NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise TrainingError(f"{run_dir}: cannot create its lock file ({_reason(exc)})"
                                ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise TrainingError(f"{run_dir}: in use by {holder}; one run folder takes one "
                                    f"training at a time") from None
            raise TrainingError(f"{run_dir}: cannot lock the run folder ({_reason(exc)})"
                                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def __del__(self):
        self.release()


def claim_run_dir(run_dir: Path, resume: bool) -> RunLock:
    """Lock the run folder (made for a new run) before any file in it is touched, then
    remove the temp files of writers that were killed in it."""
    if resume and not run_dir.is_dir():
        raise TrainingError(f"{run_dir}: no run folder to resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    remove_stale_temps(run_dir)
    return lock


def start_run(run_dir: Path, config_text: str) -> None:
    """A new run's ``config.yaml`` and empty logs; a folder holding a run is refused."""
    if (run_dir / LATEST).exists():
        raise TrainingError(f"{run_dir} already holds a run; continue it with "
                            f"`cclnn train --resume {run_dir}` or choose another name=")
    write_text_atomic(run_dir / CONFIG, config_text)
    start_logs(run_dir)


def rewind_run(run_dir: Path, iteration: int, config_text: str) -> None:
    """A resumed run: log rows written after its checkpoint (at ``iteration``) dropped, and
    the config with the overrides given with --resume kept for the next resume."""
    for name in LOG_FIELDS:
        truncate_log(run_dir / name, iteration)
    write_text_if_changed(run_dir / CONFIG, config_text)


def resume_config(run_dir: Path, overrides: list[str] | None = None) -> TrainConfig:
    """The config stored in ``run_dir`` with ``key=value`` overrides (e.g. a longer run)."""
    path = run_dir / CONFIG
    if not path.is_file():
        raise TrainingError(f"{run_dir}: not a run directory (no {CONFIG})")
    return load_config(path, overrides)
