"""``cclnn data fetch div2k|benchmark``: download, verify and unpack the standard SR datasets.

What it fetches
    * ``div2k``: the official DIV2K archives from data.vision.ee.ethz.ch (``--parts`` picks
      them: ``train_hr``, ``valid_hr``, ``train_lr_x2`` ... ``valid_lr_x4``; by default train HR,
      valid HR and the train/valid bicubic LR archives of ``--scales``, all three unless told).
      They unpack, in the archives' own layout, to ``ROOT/DIV2K/DIV2K_train_HR/0001.png``,
      ``ROOT/DIV2K/DIV2K_train_LR_bicubic/X2/0001x2.png`` and their ``valid`` twins.
    * ``benchmark``: the EDSR authors' ``benchmark.tar`` (Set5, Set14, B100, Urban100, each
      with ``HR/`` and ``LR_bicubic/X{s}/``), unpacked to ``ROOT/benchmark/Set5/HR/...``. It is
      one archive holding every scale, so ``--scales`` only decides which LR folders are
      checked for.

How a download is trusted
    Archives go to ``ROOT/downloads/FILE.part`` and are renamed to ``FILE`` only once complete,
    so a final-named file is never half-written. An interrupted download resumes with an HTTP
    ``Range`` request; a server that ignores ``Range`` gets a clean restart. Network errors are
    retried (``--retries``, with back-off); the last one is reported with the URL. A download
    that grows past the archive's published size (plus a tenth) is stopped and deleted, so an
    endless answer cannot fill the disk.

    Before anything is unpacked the archive's SHA-256 is compared with, in this order:

    1. a hash the user gave with ``--sha256 FILE=HASH`` (for a mirror that repacked a file);
    2. the published hash in the ``ARCHIVES`` table of ``cclnn/data/archives.py`` (each says
       its source);
    3. a hash recorded by an earlier fetch in ``ROOT/downloads/checksums.sha256``.

    A mismatch deletes the download and stops with a one-line error. An archive with none of
    the three (the table holds ``None`` where no published hash was found) cannot be verified:
    the fetch goes on, prints a warning saying so, and records the computed hash in
    ``checksums.sha256`` (``sha256sum`` format), so that every later fetch into the same root is
    checked against this first one (trust on first use).

Unpacking
    Members are checked before anything is written: absolute paths, ``..`` components, drive
    letters, links and device files are refused. The archive is unpacked into a hidden
    temporary folder next to its destination, its layout is checked, and only then is it moved
    into place and a ``.FILE.complete`` marker (listing the files) written. An interrupted
    unpack has no marker and is redone; a complete one is skipped, as long as its files are
    still there. Archives are deleted after unpacking unless ``--keep-archives`` is given.
    cclnn writes only into folders it made (each holds a ``.cclnn-fetched`` marker): a
    ``DIV2K/`` or ``benchmark/`` of the user's own under ROOT stops the fetch, before any
    download, with an error naming it; nothing in it is replaced or merged into.

``--url-base URL`` (or the ``CCLNN_DATA_MIRROR`` environment variable) fetches every archive
from ``URL/FILE`` instead of the official servers; the published hashes still apply.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit
from typing import Callable, Iterable, Mapping, Optional, Sequence

from .archives import (ARCHIVES, BENCHMARK_SETS, Archive, ArchiveError, ChecksumError,
                       DownloadError, FetchError, UnsafeArchiveError, default_parts, one_line,
                       select_archives)
from .download import download, parse_sha256_overrides, read_checksums, record_checksum, sha256_of
from .layout import SCALES, lr_dir
from .unpack import check_ownership, is_unpacked, owned_folders, unpack, unpack_into_place

MIRROR_ENV = "CCLNN_DATA_MIRROR"
DEFAULT_ROOT = "./datasets"
CHECKSUMS_FILE = "checksums.sha256"
MAX_UNKNOWN_SIZE = 8 << 30  # bytes; DIV2K's largest archive is 3.5 GB

__all__ = ["ARCHIVES", "BENCHMARK_SETS", "DEFAULT_ROOT", "MIRROR_ENV", "Archive", "ArchiveError",
           "ChecksumError", "DownloadError", "FetchError", "UnsafeArchiveError", "default_parts",
           "download", "fetch", "is_unpacked", "parse_sha256_overrides", "select_archives",
           "unpack"]


def _expected_hash(archive: Archive, overrides: Mapping[str, str],
                   recorded: Mapping[str, str]) -> tuple[Optional[str], str]:
    """(hash to check against, where it came from)."""
    if archive.filename in overrides:
        return overrides[archive.filename], "--sha256"
    if archive.sha256:
        return archive.sha256, "published SHA-256"
    if archive.filename in recorded:
        return recorded[archive.filename], f"SHA-256 recorded in {CHECKSUMS_FILE}"
    return None, ""


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def fetch(name: str, root: os.PathLike | str, *, scales: Iterable[int] = SCALES,
          parts: Optional[Sequence[str]] = None, url_base: Optional[str] = None,
          sha256: Optional[Mapping[str, str]] = None, keep_archives: bool = False,
          retries: int = 3, timeout: float = 30.0, backoff: float = 2.0,
          progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Download, verify and unpack the chosen archives of ``name`` under ``root``.

    Returns the dataset folder (``ROOT/DIV2K`` or ``ROOT/benchmark``). Anything already
    unpacked is skipped without touching the network.
    """
    scales = list(scales)
    archives = select_archives(name, parts, scales)
    overrides = {k: v.lower() for k, v in (sha256 or {}).items()}
    stray = [k for k in overrides if k not in {a.filename for a in archives}]
    if stray:
        raise FetchError(f"--sha256 {stray[0]}: not one of the archives being fetched "
                         f"({', '.join(a.filename for a in archives)})")
    if url_base:
        check_url_base(url_base, "--url-base")
    elif os.environ.get(MIRROR_ENV):
        url_base = check_url_base(os.environ[MIRROR_ENV], MIRROR_ENV)
    root = Path(root).expanduser()
    for archive in archives:  # before any download: never write into a user's own folder
        if not is_unpacked(root / archive.dest, archive):
            check_ownership(owned_folders(root, archive))
    for archive in archives:
        url = (url_base.rstrip("/") + "/" if url_base else archive.base_url) + archive.filename
        try:
            _fetch_one(archive, url, root, overrides, keep_archives, log,
                       dict(retries=retries, timeout=timeout, backoff=backoff,
                            progress=progress))
        except OSError as exc:  # disk full, no permission, ...: still one line, naming the path
            where = exc.filename or root / archive.dest
            raise FetchError(f"{where}: {one_line(exc.strerror or exc)} "
                             f"(while fetching {archive.filename})") from None
    if name == "benchmark":
        _check_benchmark_scales(root / "benchmark", scales)
        return root / "benchmark"
    return root / "DIV2K"


def _fetch_one(archive: Archive, url: str, root: Path, overrides: Mapping[str, str],
               keep_archives: bool, log: Callable[[str], None], net: dict) -> None:
    """Skip, or download + verify + unpack, one archive."""
    dest = root / archive.dest
    if is_unpacked(dest, archive):
        log(f"{archive.filename}: already unpacked in {dest}, skipping")
        return
    downloads = root / "downloads"
    checksums = downloads / CHECKSUMS_FILE
    expected, source = _expected_hash(archive, overrides, read_checksums(checksums))
    if source == "--sha256" and archive.sha256 and expected != archive.sha256:
        _warn(f"{archive.filename}: --sha256 differs from the published SHA-256 "
              f"{archive.sha256}; checking against --sha256")
    path = downloads / archive.filename
    if path.is_file():
        log(f"{archive.filename}: using the download already in {downloads}")
    else:
        log(f"{archive.filename}: downloading {url}")
        download(url, path, log=log, **net, max_size=_size_cap(archive),
                 size=archive.size if source == "published SHA-256" else None)
    log(f"{archive.filename}: computing its SHA-256")
    digest = sha256_of(path)
    if expected is None:
        record_checksum(checksums, archive.filename, digest)
        _warn(f"{archive.filename}: no published SHA-256, so it could NOT be verified; "
              f"recorded its SHA-256 {digest} in {checksums} (later fetches are checked "
              f"against it; pass --sha256 {archive.filename}=HASH to check it yourself)")
    elif digest != expected:
        path.unlink()
        raise ChecksumError(f"{archive.filename}: SHA-256 mismatch, got {digest}, expected "
                            f"{expected} ({source}); download from {url} deleted, "
                            "nothing unpacked")
    else:
        log(f"{archive.filename}: SHA-256 verified ({source})")
    log(f"{archive.filename}: unpacking into {dest}")
    unpack_into_place(path, root, archive, digest)
    if not keep_archives:
        path.unlink()


def check_url_base(url: str, option: str) -> str:
    """``url`` if it is an http(s) URL with a host or a file URL; a one-line error otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "file"):
        raise FetchError(f"{option} {url}: expected an http://, https:// or file:// URL")
    if parts.scheme != "file" and not parts.hostname:
        raise FetchError(f"{option} {url}: no host name in the URL")
    if parts.scheme == "file" and not parts.path:
        raise FetchError(f"{option} {url}: no folder in the file:// URL")
    return url


def _size_cap(archive: Archive) -> int:
    """The most bytes a download of ``archive`` may take: its published size and a margin (a
    mirror may repack it), else a ceiling above the largest archive of the table."""
    if archive.size is None:
        return MAX_UNKNOWN_SIZE
    return archive.size + max(archive.size // 10, 1 << 20)


def _check_benchmark_scales(folder: Path, scales: Iterable[int]) -> None:
    for set_name in BENCHMARK_SETS:
        for s in scales:
            if not lr_dir(folder / set_name, s).is_dir():
                _warn(f"{folder / set_name}: no LR_bicubic/X{s} folder in the archive")
