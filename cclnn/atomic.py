"""Files written whole or not at all: a temp file in the target's folder, renamed over the
target only once complete and removed on any failure, so that an interrupted or failed write
(a kill, a full disk) never leaves a half-written file or a temp file holding the space.
Every writer of the package goes through :func:`atomic_path`."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields the temp path to write; on a clean exit it replaces ``path``. The temp name keeps
    the target's suffix (writers that pick a format by extension still can)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_text_if_changed(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, unless it already holds it (no needless mtime
    change for files under version control)."""
    if path.is_file() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
