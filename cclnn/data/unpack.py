"""Unpacking archives safely: every member is checked before anything is written (no absolute
paths, ``..``, drive letters, links or device files), the archive is unpacked into a hidden
temporary folder beside its destination, its layout checked, then moved into place and marked
complete (see :mod:`cclnn.data.fetch`)."""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

from ..atomic import write_text_atomic
from .archives import CHUNK, Archive, ArchiveError, FetchError, UnsafeArchiveError, one_line


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
        raise ArchiveError(f"{archive}: corrupt archive ({one_line(exc)})") from None
    except OSError as exc:
        raise FetchError(f"{archive}: cannot unpack into {into} "
                         f"({one_line(exc.strerror or exc)})") from None
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


def unpack_into_place(path: Path, dest: Path, archive: Archive, digest: str) -> None:
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
