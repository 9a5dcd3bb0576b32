"""Files written whole or not at all: a temp file in the target's folder, renamed over the
target only once complete and removed on any failure, so that an interrupted or failed write
(a full disk, an exception) never leaves a half-written file or a temp file holding the space.
A SIGKILL cannot run the clean-up: its temp file carries the writer's pid, and
:func:`remove_stale_temps` removes it once that process is gone. Every writer of the package
goes through :func:`atomic_path`."""
from __future__ import annotations

import errno
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_TEMP = re.compile(r"^\..+\.(\d+)\.tmp(\.[^.]*)?$")  # .STEM.PID.tmp.SUFFIX


def temp_path(path: Path) -> Path:
    """The temp name of ``path`` for this process; it keeps the target's suffix (writers that
    pick a format by extension still can)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def _publish_new(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` only if ``path`` does not exist, atomically: a hard link fails
    when the name is taken, so of two writers racing for one name exactly one wins."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if path.exists():  # no hard links here (some network file systems): best effort
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


@contextmanager
def atomic_path(path: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yields the temp path to write; on a clean exit it becomes ``path``. With
    ``replace=False`` an existing ``path`` (even one created while writing) is left alone and
    :class:`FileExistsError` is raised."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        if replace:
            os.replace(tmp, path)
        else:
            _publish_new(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temp files in ``folder`` left by writers that were killed (their pid is no
    longer running); returns them. A missing folder has none."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            try:
                entry.unlink()
            except (FileNotFoundError, IsADirectoryError, PermissionError):
                continue
            removed.append(entry)
    return removed


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
