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
    retried (``--retries``, with back-off); the last one is reported with the URL.

    Before anything is unpacked the archive's SHA-256 is compared with, in this order:

    1. a hash the user gave with ``--sha256 FILE=HASH`` (for a mirror that repacked a file);
    2. the published hash in the ``ARCHIVES`` table of this module (each says its source);
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

``--url-base URL`` (or the ``CCLNN_DATA_MIRROR`` environment variable) fetches every archive
from ``URL/FILE`` instead of the official servers; the published hashes still apply.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence

from tqdm import tqdm

from ..atomic import write_text_atomic
from ..errors import CclnnError
from .layout import HR_FOLDER, SCALES, lr_dir

DIV2K_URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
BENCHMARK_URL = "https://cv.snu.ac.kr/research/EDSR/"
MIRROR_ENV = "CCLNN_DATA_MIRROR"
DEFAULT_ROOT = "./datasets"
BENCHMARK_SETS = ("Set5", "Set14", "B100", "Urban100")
CHECKSUMS_FILE = "checksums.sha256"
CHUNK = 1 << 20
USER_AGENT = "cclnn-data-fetch/0.1"


class FetchError(CclnnError):
    """A dataset cannot be fetched; the message names the archive, file or URL."""


class DownloadError(FetchError):
    """The server could not be reached or did not deliver the archive."""


class ChecksumError(FetchError):
    """The downloaded archive is not the expected one (SHA-256 mismatch)."""


class ArchiveError(FetchError):
    """The archive is corrupt or does not have the expected layout."""


class UnsafeArchiveError(ArchiveError):
    """A member would land outside the target folder (or is a link or device)."""


@dataclass(frozen=True)
class Archive:
    """One downloadable archive and where its content goes."""

    part: str                 # the name ``--parts`` uses
    filename: str
    base_url: str
    sha256: Optional[str]     # published SHA-256, None where none was found
    size: Optional[int]       # published size in bytes, None where unknown
    dest: str                 # folder under ROOT it is unpacked into
    expect: tuple[str, ...]   # folders (relative to dest) the archive must create


# SHA-256 and sizes of the DIV2K archives: tensorflow/datasets,
# tensorflow_datasets/datasets/div2k/checksums.tsv (commit 64fa5464e5cc); the four it shared
# with the older tensorflow_datasets/url_checksums/div2k.txt (commit 1054f22dfd67) agree.
_DIV2K_PUBLISHED = {
    "DIV2K_train_HR.zip":
        ("9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335", 3530603713),
    "DIV2K_valid_HR.zip":
        ("20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc", 448993893),
    "DIV2K_train_LR_bicubic_X2.zip":
        ("a53a424317575838dadce4bcd97cf7b744d6855f43740ed5f0245af3cf4bd850", 925390592),
    "DIV2K_train_LR_bicubic_X3.zip":
        ("ad5c8e5507e2765823d3c2c5bd0934842efcd487c5370604c224090898b3163a", 427847282),
    "DIV2K_train_LR_bicubic_X4.zip":
        ("f006b837f4eb52b82909aa01478e6d6d199eefce932179491d0c9dbb706dde3a", 246914039),
    "DIV2K_valid_LR_bicubic_X2.zip":
        ("60eed9875c697df51204aa579e2a699e1d5215095788a097ff54dd17e2664d57", 117763600),
    "DIV2K_valid_LR_bicubic_X3.zip":
        ("04b9a2ed3b4a0715d3924d3ae8514830c3328fac8d30512ce716d6f419e052a3", 54513392),
    "DIV2K_valid_LR_bicubic_X4.zip":
        ("a50a5d1c4b88de4e8d300d8fb2b904c52fe93b2b298a4899697760d7cbb6d553", 31505881),
}

# benchmark.tar: SHA-256 and size as pinned in YeapJieShen/single-image-super-resolution
# (tests/reference/fetch_urban100.py and tests/utils/test_imresize.py), which checks its
# downloads of https://cv.snu.ac.kr/research/EDSR/benchmark.tar against it. The EDSR authors
# publish no checksum themselves.
_BENCHMARK_PUBLISHED = (
    "80c21c333bbf6ceb5308b7243761f8284478274413a97b96f1d63e9045fd93e8", 250112000)


def _div2k_archives() -> dict[str, Archive]:
    out = {}
    for split in ("train", "valid"):
        name = f"DIV2K_{split}_HR.zip"
        out[f"{split}_hr"] = Archive(f"{split}_hr", name, DIV2K_URL, *_DIV2K_PUBLISHED[name],
                                     "DIV2K", (f"DIV2K_{split}_HR",))
        for s in SCALES:
            name = f"DIV2K_{split}_LR_bicubic_X{s}.zip"
            out[f"{split}_lr_x{s}"] = Archive(
                f"{split}_lr_x{s}", name, DIV2K_URL, *_DIV2K_PUBLISHED[name], "DIV2K",
                (f"DIV2K_{split}_LR_bicubic/X{s}",))
    return out


ARCHIVES: dict[str, dict[str, Archive]] = {
    "div2k": _div2k_archives(),
    "benchmark": {"benchmark": Archive(
        "benchmark", "benchmark.tar", BENCHMARK_URL, *_BENCHMARK_PUBLISHED, ".",
        tuple(f"benchmark/{name}/{HR_FOLDER}" for name in BENCHMARK_SETS))},
}


def default_parts(name: str, scales: Iterable[int] = SCALES) -> list[str]:
    """DIV2K: train HR, valid HR and the bicubic LR of each scale; benchmark: its one tar."""
    if name == "benchmark":
        return ["benchmark"]
    parts = ["train_hr", "valid_hr"]
    for s in sorted(set(scales)):
        parts += [f"train_lr_x{s}", f"valid_lr_x{s}"]
    return parts


def select_archives(name: str, parts: Optional[Sequence[str]] = None,
                    scales: Iterable[int] = SCALES) -> list[Archive]:
    """The archives of dataset ``name`` the user asked for, in a stable order."""
    if name not in ARCHIVES:
        raise FetchError(f"unknown dataset '{name}' (choose from {', '.join(ARCHIVES)})")
    table = ARCHIVES[name]
    bad = [s for s in scales if s not in SCALES]
    if bad:
        raise FetchError(f"--scales: {bad[0]} is not one of {', '.join(map(str, SCALES))}")
    wanted = list(parts) if parts else default_parts(name, scales)
    unknown = [p for p in wanted if p not in table]
    if unknown:
        raise FetchError(f"--parts: '{unknown[0]}' is not a part of {name} "
                         f"(choose from {', '.join(table)})")
    return [table[p] for p in dict.fromkeys(wanted)]


# ---------------------------------------------------------------------------------------------
# downloading


class _Transient(Exception):
    """A failure worth retrying (network trouble, 5xx, a connection that closed early)."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


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
        raise DownloadError(f"{url}: HTTP {exc.code} {_one_line(exc.reason)}") from None
    except urllib.error.URLError as exc:
        raise _Transient(_one_line(exc.reason)) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Transient(_one_line(exc) or type(exc).__name__) from None


def _range_start_total(content_range: Optional[str]) -> tuple[Optional[int], Optional[int]]:
    """``bytes 100-199/1000`` -> (100, 1000); ``bytes */1000`` -> (None, 1000)."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", content_range or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _download_once(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One attempt: resume ``part`` from its current size, or restart it from zero."""
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
                    raise _Transient(_one_line(exc) or type(exc).__name__) from None
                if not chunk:
                    break
                f.write(chunk)  # an OSError here (disk full) is not retried
                written += len(chunk)
                bar.update(len(chunk))
        if total is not None and written != total:
            raise _Transient(f"connection closed after {written} of {total} bytes")


def download(url: str, dest: Path, *, retries: int = 3, timeout: float = 30.0,
             backoff: float = 2.0, progress: bool = True, size: Optional[int] = None,
             log: Callable[[str], None] = print) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming it, retrying transient errors.

    ``dest`` itself appears only when the transfer is complete. ``size`` (the published size,
    if known) lets a full-size ``.part`` left by an earlier run skip the network.
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
            _download_once(url, part, timeout, progress)
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


# ---------------------------------------------------------------------------------------------
# verifying


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


# ---------------------------------------------------------------------------------------------
# unpacking


def _safe_relpath(name: str, archive: str) -> str:
    """The member path, normalised; refuses anything that could leave the target folder."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if (name.startswith(("/", "\\")) or ".." in parts
            or (parts and re.match(r"^[A-Za-z]:", parts[0]))):
        raise UnsafeArchiveError(f"{archive}: refusing member '{name}' (path outside the target)")
    return "/".join(parts)


def _zip_members(zf: zipfile.ZipFile, archive: str) -> list[tuple[zipfile.ZipInfo, str]]:
    out = []
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(f"{archive}: refusing member '{info.filename}' (a link)")
        rel = _safe_relpath(info.filename, archive)
        if rel:
            out.append((info, rel))
    return out


def _tar_members(tf: tarfile.TarFile, archive: str) -> list[tuple[tarfile.TarInfo, str]]:
    out = []
    for info in tf.getmembers():
        if not (info.isfile() or info.isdir()):
            kind = "a link" if info.issym() or info.islnk() else "not a file or folder"
            raise UnsafeArchiveError(f"{archive}: refusing member '{info.name}' ({kind})")
        rel = _safe_relpath(info.name, archive)
        if rel:
            out.append((info, rel))
    return out


def _write_member(src, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def unpack(archive: Path, into: Path) -> list[str]:
    """Unpack a zip or tar into the (empty) folder ``into``; returns the files written.

    Every member is checked before the first byte is written, and each target is checked to
    resolve inside ``into`` as a second line of defence.
    """
    base = into.resolve()
    files = []

    def target_of(rel: str) -> Path:
        target = (base / rel).resolve()
        if target != base and base not in target.parents:
            raise UnsafeArchiveError(f"{archive.name}: refusing member '{rel}' "
                                     "(path outside the target)")
        return target

    try:
        if archive.suffix == ".zip" or (archive.suffix != ".tar" and zipfile.is_zipfile(archive)):
            with zipfile.ZipFile(archive) as zf:
                for info, rel in _zip_members(zf, archive.name):
                    target = target_of(rel)
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    with zf.open(info) as src:
                        _write_member(src, target)
                    files.append(rel)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                for info, rel in _tar_members(tf, archive.name):
                    target = target_of(rel)
                    if info.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    src = tf.extractfile(info)
                    with src:
                        _write_member(src, target)
                    files.append(rel)
        else:
            raise ArchiveError(f"{archive}: neither a zip nor a tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zipfile.LargeZipFile) as exc:
        raise ArchiveError(f"{archive}: corrupt archive ({_one_line(exc)})") from None
    except OSError as exc:
        raise FetchError(f"{archive}: cannot unpack into {into} "
                         f"({_one_line(exc.strerror or exc)})") from None
    return files


def _merge(src: Path, dst: Path) -> None:
    """Move the tree ``src`` into ``dst``, merging folders that already exist there.

    DIV2K's X2/X3/X4 archives share the ``DIV2K_*_LR_bicubic`` folder, so a plain rename of
    the top folder would not do; every file move is still an atomic ``os.replace``.
    """
    dst.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        target = dst / entry.name
        if entry.is_dir() and target.is_dir() and not target.is_symlink():
            _merge(entry, target)
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.is_symlink() or (entry.is_dir() and target.exists()):
            target.unlink()
        os.replace(entry, target)


def _marker(dest: Path, archive: Archive) -> Path:
    return dest / f".{archive.filename}.complete"


def is_unpacked(dest: Path, archive: Archive) -> bool:
    """True when a complete unpack of ``archive`` is recorded and its files are all there."""
    try:
        record = json.loads(_marker(dest, archive).read_text())
        files = record["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(files) and all((dest / rel).is_file() for rel in files)


def _unpack_into_place(path: Path, dest: Path, archive: Archive, digest: str) -> None:
    """Unpack into a temporary folder, check the layout, move it into ``dest``, mark it done."""
    dest.mkdir(parents=True, exist_ok=True)
    marker = _marker(dest, archive)
    marker.unlink(missing_ok=True)
    tmp = dest / f".{archive.filename}.unpacking"
    shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted run
    tmp.mkdir()
    try:
        files = unpack(path, tmp)
        missing = [p for p in archive.expect if not (tmp / p).is_dir()]
        if missing:
            raise ArchiveError(f"{archive.filename}: unexpected layout, no '{missing[0]}/' "
                               "inside (is the mirror serving the right file?)")
        _merge(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record = {"archive": archive.filename, "sha256": digest, "files": sorted(files)}
    write_text_atomic(marker, json.dumps(record, indent=0) + "\n")


# ---------------------------------------------------------------------------------------------
# the whole fetch


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
    url_base = url_base or os.environ.get(MIRROR_ENV) or None
    root = Path(root).expanduser()
    for archive in archives:
        url = (url_base.rstrip("/") + "/" if url_base else archive.base_url) + archive.filename
        try:
            _fetch_one(archive, url, root, overrides, keep_archives, log,
                       dict(retries=retries, timeout=timeout, backoff=backoff,
                            progress=progress))
        except OSError as exc:  # disk full, no permission, ...: still one line, naming the path
            where = exc.filename or root / archive.dest
            raise FetchError(f"{where}: {_one_line(exc.strerror or exc)} "
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
        download(url, path, log=log, **net,
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
    _unpack_into_place(path, dest, archive, digest)
    if not keep_archives:
        path.unlink()


def _check_benchmark_scales(folder: Path, scales: Iterable[int]) -> None:
    for set_name in BENCHMARK_SETS:
        for s in scales:
            if not lr_dir(folder / set_name, s).is_dir():
                _warn(f"{folder / set_name}: no LR_bicubic/X{s} folder in the archive")

