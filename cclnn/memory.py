"""Memory: what the system can still give, and what a network's forward pass will hold.

A network's working set is measured on two small inputs: every tensor storage that an
operation of the forward pass makes is counted from then until its last reference is gone,
and the peak of the sum is taken. The two sizes give ``fixed + per_pixel * pixels``: exact
for convolutional networks, within a few per cent for NLSA (its block buffers grow with the
image up to a cap). The process's resident memory grows by more than that count: the heap
fragments, the more so as freed memory is kept for reuse (``cpu.keep_freed_memory``), and
oneDNN has scratch buffers; the measured ratio (``scripts/measure_working_set.py``,
``results/bench/working_set.md``) is covered by :data:`MARGIN`.

Counting every operation needs a dispatch mode, whose first use imports torch's compiler
(~1 s), so a cheap bound comes first: :data:`BOUND_FACTOR` times the largest input or output
of any one layer (forward hooks, one 24 x 24 forward). The registered networks' working sets
are 1.6-3.4 times it at 96 x 96, RNAN's 7 times; where the bound fits, nothing more is
measured.
"""
from __future__ import annotations

import math
import os
import weakref
from typing import NamedTuple

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .errors import CclnnError

MARGIN = 2.0  # resident memory over the count: 1.27-1.69 measured
PROBE_SIDES = (24, 48)  # LR sides of the two forwards measured
BOUND_FACTOR = 16


class NotEnoughMemory(CclnnError):
    """The work would need more memory than the system can give (the message says how much)."""


def size_text(n: float) -> str:
    """Bytes for a message: '1.2 GB', or '35 MB' below a GB."""
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{max(0.0, n) / 1e6:.0f} MB"


def available_memory() -> int:
    """Bytes the system can still give (``MemAvailable``; free pages where there is none)."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class _LiveBytes(TorchDispatchMode):
    """Bytes of the tensor storages alive, and their peak, while the mode is on."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.storages: dict[int, list[int]] = {}  # storage -> [bytes, tensors referring to it]

    def _release(self, key: int) -> None:
        entry = self.storages[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self.storages[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage._cdata
                entry = self.storages.get(key)
                if entry is None:
                    entry = self.storages[key] = [storage.nbytes(), 0]
                    self.live += entry[0]
                entry[1] += 1
                weakref.finalize(t, self._release, key)
        self.peak = max(self.peak, self.live)
        return out


_probing = 0  # forwards of the measurements now running (benchmarks leave them out)


def probing() -> bool:
    """A measurement's own forward pass is running (timing hooks should not count it)."""
    return _probing > 0


def _probe_input(model: nn.Module, side: int, channels_last: bool) -> torch.Tensor:
    device = next(model.parameters(), torch.empty(0)).device
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))  # not global
    return x.to(device).contiguous(memory_format=layout)


def forward_peak_bytes(model: nn.Module, side: int, channels_last: bool = False) -> int:
    """Peak bytes of the tensors alive during ``model(x)`` in inference on its device, x a
    random 1 x 3 x ``side`` x ``side`` image (channels-last if asked), the input included."""
    with torch.inference_mode(), _LiveBytes() as live:
        model(_probe_input(model, side, channels_last))
    return live.peak


class WorkingSet(NamedTuple):
    """``fixed + per_pixel * pixels`` bytes for a forward pass on an input of that many pixels."""
    fixed: float
    per_pixel: float

    def bytes(self, height: int, width: int) -> int:
        return math.ceil(MARGIN * (self.fixed + self.per_pixel * height * width))


def _cached(model: nn.Module, key: tuple, compute):
    """``compute()`` once per module and key; None when the module cannot run the small
    inputs of the measurements (it wants other sizes, say)."""
    global _probing
    cache = model.__dict__.setdefault("_cclnn_memory", {})
    if key not in cache:
        _probing += 1
        try:
            cache[key] = compute()
        except (RuntimeError, NotImplementedError, TypeError, ValueError):
            cache[key] = None
        finally:
            _probing -= 1
    return cache[key]


def largest_layer_bytes(model: nn.Module, channels_last: bool = False) -> float | None:
    """Bytes per input pixel of the largest input or output of one layer (leaf module)."""
    def compute() -> float:
        largest = [0]

        def hook(module, inputs, output):
            for t in tree_flatten((inputs, output))[0]:
                if isinstance(t, torch.Tensor):
                    largest[0] = max(largest[0], t.numel() * t.element_size())
        hooks = [m.register_forward_hook(hook) for m in model.modules()
                 if next(m.children(), None) is None]
        side = PROBE_SIDES[0]
        try:
            with torch.inference_mode():
                model(_probe_input(model, side, channels_last))
        finally:
            for h in hooks:
                h.remove()
        return largest[0] / side ** 2
    return _cached(model, ("largest", channels_last), compute)


def working_set(model: nn.Module, channels_last: bool = False) -> WorkingSet | None:
    """``model``'s inference working set on a 1 x 3 x H x W input, from two small forwards."""
    def compute() -> WorkingSet:
        (s0, b0), (s1, b1) = ((side * side, forward_peak_bytes(model, side, channels_last))
                              for side in PROBE_SIDES)
        per_pixel = max(0.0, (b1 - b0) / (s1 - s0))
        return WorkingSet(max(0.0, b0 - per_pixel * s0), per_pixel)
    return _cached(model, ("working set", channels_last), compute)
