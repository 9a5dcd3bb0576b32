"""Downloading and verifying archives: resumable HTTP downloads with retries, SHA-256 of a
file, and the ``checksums.sha256`` record of hashes trusted on first use (see
:mod:`cclnn.data.fetch` for the policy)."""
from __future__ import annotations

import hashlib
import http.client
import math
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, Optional

from tqdm import tqdm

from ..atomic import write_text_atomic
from .archives import CHUNK, DownloadError, FetchError, one_line

USER_AGENT = "cclnn-data-fetch/0.1"


class _Transient(Exception):
    """A failure worth retrying (network trouble, 5xx, a connection that closed early)."""


def _open_url(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416:
            return exc  # the caller looks at Content-Range
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise DownloadError(f"{url}: HTTP {exc.code} {one_line(exc.reason)}") from None
    except urllib.error.URLError as exc:
        raise _Transient(one_line(exc.reason)) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Transient(one_line(exc) or type(exc).__name__) from None


def _range_start_total(content_range: Optional[str]) -> tuple[Optional[int], Optional[int]]:
    """``bytes 100-199/1000`` -> (100, 1000); ``bytes */1000`` -> (None, 1000)."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", content_range or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _too_big(url: str, part: Path, size: int, max_size: float) -> DownloadError:
    """Delete the partial download; the error to raise."""
    part.unlink(missing_ok=True)
    return DownloadError(f"{url}: the download reached {size} bytes, more than the {max_size} "
                         "expected of it; stopped and deleted")


def _download_once(url: str, part: Path, timeout: float, progress: bool,
                   max_size: Optional[int] = None) -> None:
    """One attempt: resume ``part`` from its current size, or restart it from zero; never
    more than ``max_size`` bytes in all."""
    limit = math.inf if max_size is None else max_size
    offset = part.stat().st_size if part.exists() else 0
    resp = _open_url(url, offset, timeout)
    if isinstance(resp, urllib.error.HTTPError):  # 416: nothing left to send, or a bad .part
        _, total = _range_start_total(resp.headers.get("Content-Range"))
        if total is not None and total == offset:
            return
        part.unlink(missing_ok=True)
        raise _Transient("server refused to resume; starting over")
    with resp:
        if resp.status == 206:
            start, total = _range_start_total(resp.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _Transient(f"server resumed at byte {start}, not {offset}; starting over")
            mode = "ab"
        else:  # 200: the whole file, whether or not a range was asked for
            offset, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if total is not None and total > limit:
            raise _too_big(url, part, total, limit)
        written = offset
        # disable=None: a bar on a terminal, nothing in logs and pipes
        with open(part, mode) as f, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name[:-len(".part")], leave=False,
                disable=None if progress else True) as bar:
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Transient(one_line(exc) or type(exc).__name__) from None
                if not chunk:
                    break
                written += len(chunk)
                if written > limit:
                    f.close()
                    raise _too_big(url, part, written, limit)
                f.write(chunk)  # an OSError here (disk full) is not retried
                bar.update(len(chunk))
        if total is not None and written != total:
            raise _Transient(f"connection closed after {written} of {total} bytes")


def download(url: str, dest: Path, *, retries: int = 3, timeout: float = 30.0,
             backoff: float = 2.0, progress: bool = True, size: Optional[int] = None,
             max_size: Optional[int] = None, log: Callable[[str], None] = print) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming it, retrying transient errors.

    ``dest`` itself appears only when the transfer is complete. ``size`` (the published size,
    if known) lets a full-size ``.part`` left by an earlier run skip the network; a download
    passing ``max_size`` bytes is stopped and deleted (a :class:`DownloadError`).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if size is not None and part.exists():
        have = part.stat().st_size
        if have > size:
            part.unlink()
        elif have == size:
            os.replace(part, dest)
            return dest
    attempts = max(1, retries + 1)
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            _download_once(url, part, timeout, progress, max_size)
        except _Transient as exc:
            last = str(exc)
            if attempt < attempts:
                delay = backoff * 2 ** (attempt - 1)
                log(f"{dest.name}: {last}; retrying in {delay:g} s "
                    f"(attempt {attempt + 1} of {attempts})")
                time.sleep(delay)
            continue
        if not part.exists():  # a zero-byte answer to a fresh request
            part.touch()
        os.replace(part, dest)
        return dest
    raise DownloadError(f"{url}: download failed after {attempts} attempt"
                        f"{'s' if attempts > 1 else ''} ({last})")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checksums(path: Path) -> dict[str, str]:
    """``sha256sum``-style lines (``HASH  NAME``) -> {NAME: HASH}; a missing file is empty."""
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            fields = line.split(maxsplit=1)
            if len(fields) == 2 and re.fullmatch(r"[0-9a-f]{64}", fields[0].lower()):
                out[fields[1].lstrip("*").strip()] = fields[0].lower()
    return out


def record_checksum(path: Path, filename: str, digest: str) -> None:
    """Add (or replace) one line of ``checksums.sha256``, atomically."""
    entries = read_checksums(path)
    entries[filename] = digest
    write_text_atomic(path, "".join(f"{h}  {n}\n" for n, h in sorted(entries.items())))


def parse_sha256_overrides(items: Optional[Iterable[str]]) -> dict[str, str]:
    """``["NAME=HASH", ...]`` from ``--sha256`` -> {NAME: hash in lower case}."""
    out = {}
    for item in items or ():
        name, sep, digest = item.partition("=")
        digest = digest.strip().lower()
        if not sep or not name.strip() or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise FetchError(f"--sha256 {item}: expected FILE=HASH with a 64-digit hex SHA-256")
        out[name.strip()] = digest
    return out
