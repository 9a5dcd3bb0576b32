"""The processes a training run lives in: torchrun's world, each process's device and the
process group; SIGINT/SIGTERM as a request to stop; the error of a diverged run; fault
injection for tests.

SIGINT (Ctrl-C) or SIGTERM (``kill``, a batch scheduler's time limit) stops a run cleanly: the
current step finishes, ``latest.pt`` is written at that iteration and ``TrainingInterrupted``
says how to resume, so no work since the last periodic checkpoint is lost. A second Ctrl-C
stops at once. Under DDP the ranks agree on the stop each step.

Fault injection for tests: ``CCLNN_FAULT=kill@iteration:N`` kills the process with SIGKILL
before iteration N, ``CCLNN_FAULT=kill@checkpoint:N`` after writing the temporary file of
the iteration-N checkpoint and before renaming it, ``CCLNN_FAULT=term@iteration:N`` sends it
SIGTERM before iteration N.
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import torch
import torch.distributed as dist

from ..errors import CclnnError


class TrainingError(CclnnError):
    """The run cannot start or had to stop; the message says why and what was kept."""


class TrainingInterrupted(TrainingError):
    """SIGINT/SIGTERM stopped the run after a checkpoint; the CLI exits with status 130."""
    exit_code = 130


def diverged(what: str, checkpoint: Path, last_good: int | None, lr: float,
             grad_clip: float | None) -> TrainingError:
    """The one-line error of a run whose loss or weights became NaN/Inf: the last checkpoint
    with finite weights (``checkpoint`` at iteration ``last_good``), if any, and what to
    change."""
    change = f"lower optim.lr (now {lr:g})" + (
        f" or optim.grad_clip (now {grad_clip:g})" if grad_clip else " or set optim.grad_clip")
    if last_good is None:
        return TrainingError(f"{what}; training stopped before any checkpoint with finite "
                             f"weights was saved: {change} and start the run again")
    return TrainingError(f"{what}; training stopped. The last checkpoint with finite weights "
                         f"is {checkpoint} (iteration {last_good}): {change}, then "
                         f"`cclnn train --resume {checkpoint.parent} optim.lr=...`")


def fault(kind: str, iteration: int) -> None:
    """Act on ``CCLNN_FAULT`` if it names this point (``kind`` at ``iteration``)."""
    wanted = os.environ.get("CCLNN_FAULT")
    if wanted == f"kill@{kind}:{iteration}":
        os.kill(os.getpid(), signal.SIGKILL)
    elif wanted == f"term@{kind}:{iteration}":
        os.kill(os.getpid(), signal.SIGTERM)


class StopRequest:
    """While active, SIGINT and SIGTERM set ``requested`` instead of killing the process
    (a second SIGINT raises KeyboardInterrupt at once). Only the main thread can catch
    signals; elsewhere this does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def launch() -> tuple[int, int]:
    """(world size, local rank) as torchrun sets them; (1, 0) for a plain process."""
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))


def process_device(device: torch.device, world: int, local_rank: int) -> torch.device:
    """This process's device: under torchrun each process on a machine takes the GPU of its
    local rank, and one with no GPU left is refused before the process group waits on it."""
    if device.type != "cuda" or world <= 1:
        return device
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise TrainingError(f"process of local rank {local_rank}: this machine has {count} CUDA "
                            f"device(s); start at most {count} per machine (torchrun "
                            f"--nproc_per_node {count}), or set device: cpu")
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


def join_process_group(device: torch.device) -> int:
    """This process's rank, after initialising the process group (once): NCCL for GPUs, gloo
    for the CPU (``device: cpu`` on a GPU machine too)."""
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank()
