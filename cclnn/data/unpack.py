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

OWNER_MARKER = ".cclnn-fetched"  # in every folder `cclnn data fetch` made and may write into


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
    """Move the tree ``src`` into ``dst``, a folder cclnn made, merging folders that already
    exist there.

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


def owned_folders(root: Path, archive: Archive) -> list[Path]:
    """The folders an unpack of ``archive`` creates and may later merge into: its
    destination, or, for an archive unpacked into the root itself, its top-level folders."""
    if archive.dest != ".":
        return [root / archive.dest]
    return [root / name for name in sorted({Path(p).parts[0] for p in archive.expect})]


def check_ownership(folders: list[Path]) -> None:
    """Refuse to write into any folder cclnn did not make (a user's own ``DIV2K/``, say)."""
    for folder in folders:
        if (folder.exists() or folder.is_symlink()) and not (folder / OWNER_MARKER).is_file():
            raise FetchError(f"{folder}: already exists and was not made by `cclnn data "
                             "fetch`; it is left alone (move it, or fetch into another --root)")


def _claim(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / OWNER_MARKER).is_file():
        write_text_atomic(folder / OWNER_MARKER, "made by `cclnn data fetch`\n")


def is_unpacked(dest: Path, archive: Archive) -> bool:
    """True when a complete unpack of ``archive`` is recorded and its files are all there."""
    try:
        record = json.loads(_marker(dest, archive).read_text())
        files = record["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(files) and all((dest / rel).is_file() for rel in files)


def unpack_into_place(path: Path, root: Path, archive: Archive, digest: str) -> None:
    """Unpack into a staging folder, check the layout and that every top-level entry lands in
    a new folder or one cclnn made, move it into place, mark it done."""
    dest = root / archive.dest
    check_ownership(owned_folders(root, archive))
    if archive.dest != ".":
        _claim(dest)
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
        if archive.dest == ".":  # the root is the user's: only whole new or owned folders
            top = [dest / entry.name for entry in tmp.iterdir()]
            check_ownership(top)
            stray = [entry for entry in top if not (tmp / entry.name).is_dir()]
            if stray:
                raise ArchiveError(f"{archive.filename}: unexpected file '{stray[0].name}' at "
                                   "the top of the archive")
            for folder in top:
                _claim(folder)
                _merge(tmp / folder.name, folder)
        else:
            _merge(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record = {"archive": archive.filename, "sha256": digest, "files": sorted(files)}
    write_text_atomic(marker, json.dumps(record, indent=0) + "\n")
