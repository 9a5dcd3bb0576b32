"""How this process uses the CPU: torch's thread count for a block, the cores other
processes leave free, and glibc's handling of freed memory (see docs/performance.md,
"Upscaling on the CPU")."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` for the block (None: unchanged)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _cpu_times(stat: str = "/proc/stat") -> tuple[int, int, int] | None:
    """(idle, total) jiffies of all CPUs since boot and this process's own CPU time in
    jiffies; None where there is no ``/proc/stat``."""
    try:
        with open(stat) as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    own = round((usage.ru_utime + usage.ru_stime) * os.sysconf("SC_CLK_TCK"))
    return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields[:8]), own


_last_sample: tuple[int, int, int] | None = None


def idle_cores(sample: float = 0.1,
               times: Callable[[], tuple[int, int, int] | None] = _cpu_times) -> float:
    """How many of this process's CPUs the other processes left free since the last call (or
    during ``sample`` seconds on the first; all of them where that cannot be read): torch's
    threads beyond them wait on each other at every operation, which made two threads up to
    7x slower than one on a busy machine. This process's own CPU time counts as free."""
    global _last_sample
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    ncpu = os.cpu_count() or cores
    first = _last_sample if times is _cpu_times else None
    now = times()
    if now is None:
        return float(cores)
    if first is None or now[1] - first[1] < 10 * ncpu:  # under ~0.1 s since: sample anew
        first = now
        time.sleep(sample)
        now = times()
        if now is None or now[1] <= first[1]:
            return float(cores)
    if times is _cpu_times:
        _last_sample = now
    free = (now[0] - first[0] + now[2] - first[2]) / (now[1] - first[1]) * ncpu
    return max(0.0, min(float(cores), free))


def usable_threads(requested: int) -> int:
    """``requested`` threads, fewer when other processes leave fewer cores free (at least one)."""
    if requested <= 1:
        return 1
    return max(1, min(requested, int(idle_cores() + 0.5)))


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for reuse (all of it in the heap, none returned): a
    network's activations (tens of MB each) are otherwise mapped fresh and zeroed by the
    kernel at every layer, which cost ~40 % extra system time on the CPU. The process then
    holds its peak memory until it ends (see :func:`release_freed_memory`). False where the
    C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8
    global _LIBC
    # one arena: a thread's own arena holds at most 64 MB, so tile threads would map and
    # fault in their activations anyway
    if (mallopt(m_mmap_max, 0) and mallopt(m_trim_threshold, 2 ** 31 - 1)
            and mallopt(m_arena_max, 1)):
        _LIBC = libc
    return _LIBC is not None


_LIBC = None  # glibc, once keep_freed_memory has changed its policy


def release_freed_memory() -> None:
    """Give the kept free memory back (``malloc_trim``), so that a new image's tensors, sized
    unlike the last one's, are not placed beside resident holes too small for them (its
    tiles then all have one shape and reuse each other's blocks)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
