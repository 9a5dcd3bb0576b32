"""One worker thread runs the networks, one job at a time, from a bounded queue: a machine
serving several users keeps one network's memory and all its cores for one image, and a
flood of uploads is refused (:class:`QueueFull`) instead of piling up in memory."""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..errors import CclnnError


class QueueFull(CclnnError):
    """Every waiting place of the queue is taken."""


class JobCancelled(CclnnError):
    """The client went away; the job stopped at its next tile."""


@dataclass(eq=False)
class Job:
    """One upload's work; ``future`` gets its result or exception. ``tiles`` (done, total)
    shows how far a running network is; ``cancelled`` is checked between tiles."""
    work: Callable[["Job"], Any]
    ticket: str
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    tiles: tuple[int, int] = (0, 0)

    def tile_bar(self, total: int) -> Callable[[], None]:
        """:data:`cclnn.upscaling.TileBar`: counts tiles, stops a cancelled job."""
        self.tiles = (0, total)

        def tile_done() -> None:
            self.tiles = (self.tiles[0] + 1, total)
            if self.cancelled.is_set():
                raise JobCancelled(f"job {self.ticket}: cancelled, the client disconnected")
        return tile_done


class JobQueue:
    """At most ``capacity`` jobs wait; one runs. The worker thread starts with the first job
    and stops at :meth:`close`."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._waiting: deque[Job] = deque()
        self._running: Optional[Job] = None
        self._changed = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    def submit(self, work: Callable[[Job], Any], ticket: str) -> Job:
        """Queue ``work`` (called with its :class:`Job` in the worker thread)."""
        job = Job(work, ticket)
        with self._changed:
            if self._closed:
                raise QueueFull("the server is shutting down")
            if len(self._waiting) >= self.capacity:
                raise QueueFull(f"the queue is full ({self.capacity} waiting); try again later")
            self._waiting.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="cclnn-serve-worker",
                                                daemon=True)
                self._thread.start()
            self._changed.notify_all()
        return job

    def cancel(self, job: Job) -> None:
        """A waiting job leaves the queue; a running one stops at its next tile."""
        job.cancelled.set()
        with self._changed:
            if job in self._waiting:
                self._waiting.remove(job)
                job.future.set_exception(JobCancelled(f"job {job.ticket}: cancelled"))

    def position(self, ticket: str) -> Optional[int]:
        """0 while the ticket's job runs, N when N - 1 jobs wait before it, None if unknown."""
        with self._changed:
            if self._running is not None and self._running.ticket == ticket:
                return 0
            for index, job in enumerate(self._waiting):
                if job.ticket == ticket:
                    return index + 1
        return None

    def status(self, ticket: Optional[str] = None) -> dict:
        """The queue as the page shows it (JSON-ready)."""
        with self._changed:
            running = self._running
            state = {"waiting": len(self._waiting), "capacity": self.capacity,
                     "running": running is not None}
        if ticket is not None:
            state["position"] = self.position(ticket)
            if running is not None and running.ticket == ticket:
                state["tiles"] = list(running.tiles)
        return state

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new jobs, cancel the waiting ones, let the running one finish."""
        with self._changed:
            self._closed = True
            while self._waiting:
                job = self._waiting.popleft()
                job.future.set_exception(QueueFull("the server is shutting down"))
            if self._running is not None:
                self._running.cancelled.set()
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _next(self) -> Optional[Job]:
        with self._changed:
            while not self._waiting and not self._closed:
                self._changed.wait()
            if self._closed:
                return None
            self._running = self._waiting.popleft()
            return self._running

    def _loop(self) -> None:
        while (job := self._next()) is not None:
            try:
                job.future.set_result(job.work(job))
            except BaseException as exc:  # handed to the request, which reports it
                job.future.set_exception(exc)
            finally:
                with self._changed:
                    self._running = None
