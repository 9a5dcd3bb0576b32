"""The pretrained weights cclnn knows by name, and fetching one into the cache, verified.

:data:`MANIFEST` holds one :class:`PretrainedFile` per file: the network and scale it is for,
the options it was trained with, where it comes from and how it is checked. Every hash in it
was read from the file itself or from the official repository's own record of it; each entry
says how (``hash_source``). A file is checked, in order of strength, by

* ``sha256``: the SHA-256 of the file's bytes (the shipped CCLNN-T files, A2N x2 and x3);
* ``git_blob``: the git object id the official repository's tree gives the file, a SHA-1 of
  ``blob <size>\\0`` + its bytes, where its bytes could not be read here (A2N x4, RNAN,
  DiVANet: the repository snapshots omit large files, the tree still names them);
* ``sha256_prefix``: only the 8 hex digits an official file name carries by the torch.hub
  convention (EDSR: the host cannot be reached from here); a fetch says it checked no more.

Entries without a plain URL (``manual``: Dropbox, Google Drive) are listed with the official
link and never fetched. Downloads go to ``$CCLNN_CACHE/weights/downloads/FILE(.part)``
(resumable, capped at the known size), are checked there, and only then moved to
``$CCLNN_CACHE/weights/FILE``; a cached file is checked again before each use.
``$CCLNN_WEIGHTS_MIRROR`` (or ``url_base``) replaces everything before the file name of every
URL: a mirror is a folder of the same file names, served over HTTP or ``file://``.
"""
from __future__ import annotations

import hashlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from .config import suggest
from .data.archives import CHUNK, ChecksumError
from .data.download import download, sha256_of
from .data.fetch import check_url_base
from .data.layout import cache_root
from .models.registry import count_parameters, list_models
from .weights import PRETRAINED as PACKAGE_WEIGHTS, WeightsError

MIRROR_ENV = "CCLNN_WEIGHTS_MIRROR"
SHIPPED_SOURCE = "shipped with cclnn"


class PretrainedError(WeightsError):
    """No pretrained file by that name and scale, or none that can be fetched."""


@dataclass(frozen=True)
class PretrainedFile:
    """One pretrained weights file: what it is for, where it is, and how it is checked."""
    network: str                   # a registry name (``cclnn models``)
    scale: int
    filename: str                  # its name in the cache and on a mirror
    source: str                    # who publishes it
    url: Optional[str]             # None: shipped in the package, or a manual download
    sha256: Optional[str]
    size: Optional[int]            # bytes; None where the file could not be read
    hash_source: str               # how the hash was obtained
    licence: str
    options: Mapping[str, Any] = field(default_factory=dict)  # over the registry defaults
    value_range: float = 255.0     # the range its weights work in (EDSR-PyTorch rgb_range)
    sha256_prefix: Optional[str] = None
    git_blob: Optional[str] = None
    manual: Optional[str] = None   # the official page to download it from by hand

    @property
    def label(self) -> str:
        return f"{self.network} x{self.scale}"

    @property
    def check(self) -> str:
        """What a fetch verifies: sha256, git-blob, sha256-prefix, or none."""
        if self.sha256:
            return "sha256"
        return "git-blob" if self.git_blob else "sha256-prefix" if self.sha256_prefix else "none"


def _shipped(scale: int, sha256: str, size: int) -> PretrainedFile:
    return PretrainedFile(
        "cclnn-t", scale, f"cclnn-t_x{scale}.safetensors", SHIPPED_SOURCE, None, sha256, size,
        f"sha256sum of the committed file cclnn/pretrained/cclnn-t_x{scale}.safetensors",
        "MIT (this project); recipe and log in docs/training.md")


A2N_COMMIT = "210b38cbe721f0283aa5ad20c98373c5822f917a"  # github haoyuc/A2N, 2021-10-10
A2N_NOTE = "github haoyuc/A2N (no licence file in the repository)"


def _a2n(scale: int, git_blob: str, sha256: Optional[str] = None,
         size: Optional[int] = None) -> PretrainedFile:
    how = (f"sha256sum of `git show {A2N_COMMIT[:12]}:code/experiment/model/aan_x{scale}.pt` "
           "(the blob's bytes, fetched snapshot of the official repository)" if sha256 else
           f"git blob id from the tree of {A2N_COMMIT[:12]}; the blob's bytes are absent "
           "from the snapshot, so no SHA-256 or size could be computed")
    return PretrainedFile(
        "a2n", scale, f"aan_x{scale}.pt", "official A2N repository",
        f"https://raw.githubusercontent.com/haoyuc/A2N/{A2N_COMMIT}/code/experiment/model/"
        f"aan_x{scale}.pt", sha256, size, how, A2N_NOTE, git_blob=git_blob)


EDSR_URL = "https://cv.snu.ac.kr/research/EDSR/models/"


def _edsr(network: str, scale: int, filename: str) -> PretrainedFile:
    prefix = filename.rsplit("-", 1)[1].split(".")[0]
    return PretrainedFile(
        network, scale, filename, "official EDSR-PyTorch model zoo", EDSR_URL + filename, None,
        None, "hash unverified: prefix from the official file name (URL table `url` in "
              "sanghyun-son/EDSR-PyTorch src/model/edsr.py at 3dd71ae5561c; torch.hub naming: "
              "the first 8 hex digits of the SHA-256); the host cannot be reached from here",
        "MIT (sanghyun-son/EDSR-PyTorch LICENSE)", sha256_prefix=prefix)


RNAN_COMMIT = "24b1bad791e493a99140dfe3723f7d47644918cd"  # github yulunzhang/modelzoo, 2019-04-12


def _rnan(scale: int, git_blob: str) -> PretrainedFile:
    path = f"RNAN/SR/experiment/model/RNAN_SR_F64G10P48BIX{scale}.pt"
    return PretrainedFile(
        "rnan", scale, path.rsplit("/", 1)[1], "official RNAN model zoo (linked from the RNAN "
        "README)", f"https://raw.githubusercontent.com/yulunzhang/modelzoo/{RNAN_COMMIT}/{path}",
        None, None, f"git blob id from the tree of yulunzhang/modelzoo {RNAN_COMMIT[:12]}; the "
        "blob's bytes are absent from the snapshot", "github yulunzhang/modelzoo (no licence "
        "file in the repository)", git_blob=git_blob)


DIVANET_COMMIT = "c771a84d77a3f25dbafbda5597622bfc617b55f6"  # github pbehjatii/DiVANet, 2024-04-15


def _divanet(scale: int, filename: str, git_blob: str) -> PretrainedFile:
    path = f"checkpoints/scale_x{scale}/{filename}"
    return PretrainedFile(
        "divanet", scale, filename, "official DiVANet repository",
        f"https://raw.githubusercontent.com/pbehjatii/DiVANet/{DIVANET_COMMIT}/{path}", None, None,
        f"git blob id from the tree of pbehjatii/DiVANet {DIVANET_COMMIT[:12]}; the blob's "
        "bytes are absent from the snapshot", "non-commercial research use only (DiVANet "
        "README)", value_range=1.0, git_blob=git_blob)


RCAN_LINK = ("https://www.dropbox.com/s/qm9vc0p0w9i4s0n/models_ECCV2018RCAN.zip?dl=0 or "
             "https://drive.google.com/file/d/1U0RmWkkacyw0HNC7CBts2LcX1ewAulCn/view")
NLSN_LINK = "https://drive.google.com/drive/folders/1zz2a1ih3euzuH3HvWDN-uSki3USym9Cq"


def _manual(network: str, scale: int, filename: str, source: str, link: str, licence: str,
            **extra: Any) -> PretrainedFile:
    return PretrainedFile(network, scale, filename, source, None, None, None,
                          "none: no plain URL is published, so nothing to hash here", licence,
                          manual=link, **extra)


MANIFEST: tuple[PretrainedFile, ...] = (
    _shipped(2, "1d1aef7934116441e4a2926a820665aed08a93f76e20f89ef25c8663560d52b0", 3858684),
    _shipped(3, "f134023b8cfc8d6c8b22e206d4162348af782d1fcefe0697f180deb31cc2fe58", 4597244),
    _shipped(4, "717a3b81eee84ef4fbbae81c8ddbae169a1a888227a9d6f8295c5001a3f41d0c", 4449692),
    # x2: the same bytes as ../shared/weights/a2n/aan_x2.pt (tests/test_manifest.py checks it)
    _a2n(2, "71a4d623e7fa19e685f6e9586a72b7b0ebef6dea",
         "076f3ef50212a0641262d71210aeeda71e03324ecec14032630d1f2225887dfb", 4172225),
    _a2n(3, "585872e88b53c4a883fc0334c2389ffe19170f9f",
         "7fe6fa3a4b9d666f5b0afe2c9e91ce30551477114ffc7971c218c70899bc84ea", 4172225),
    _a2n(4, "4e9b8e575cefb11619338587c41a45a144a4cea5"),
    _edsr("edsr-baseline", 2, "edsr_baseline_x2-1bc95232.pt"),
    _edsr("edsr-baseline", 3, "edsr_baseline_x3-abf2a44e.pt"),
    _edsr("edsr-baseline", 4, "edsr_baseline_x4-6b446fab.pt"),
    _edsr("edsr", 2, "edsr_x2-0edfb8a3.pt"),
    _edsr("edsr", 3, "edsr_x3-ea3ef2c6.pt"),
    _edsr("edsr", 4, "edsr_x4-4f62e9ef.pt"),
    _rnan(2, "bcbd786263f86e20a567f346f5eb10a697f219a0"),
    _rnan(3, "73f062e37f4741950590a3dbfa7ed79308577b2d"),
    _rnan(4, "76660d18ae0877510e380e132e21866c45b59804"),
    _divanet(2, "carn_test_513000.pth.tar", "3a43d1332e360cdda6bb4366c56c3028508de535"),
    _divanet(3, "carn_test_597000.pth.tar", "023f6e56fef680d20d9c5c0e4256319c322e9694"),
    _divanet(4, "carn_test_500000.pth.tar", "0cdf81ec5c9073e71cb566b7aa1ed6845fb45d31"),
    # RCAN: one zip of all scales on Dropbox / Google Drive / Baidu (RCAN README, "Test")
    *(_manual("rcan", s, f"RCAN_BIX{s}.pt", "official RCAN models_ECCV2018RCAN.zip", RCAN_LINK,
              "github yulunzhang/RCAN (no licence file in the repository)") for s in (2, 3, 4)),
    # NLSN: a Google Drive folder (NLSN README, "Test"); trained with --rgb_range 1
    *(_manual("nlsn", s, f"model_x{s}.pt", "official NLSN Google Drive folder", NLSN_LINK,
              "github HarukiYqM/Non-Local-Sparse-Attention", options={"rgb_range": 1.0},
              value_range=1.0) for s in (2, 3, 4)),
)


def list_pretrained(network: Optional[str] = None) -> list[PretrainedFile]:
    """The manifest's entries, or those of ``network``."""
    return [e for e in MANIFEST if network is None or e.network == network]


def find_pretrained(network: str, scale: int) -> PretrainedFile:
    """The entry for ``network`` at ``scale``; a one-line :class:`PretrainedError` naming the
    networks (with "did you mean") or the scales there are otherwise."""
    entries = list_pretrained(network)
    if not entries:
        names = sorted({e.network for e in MANIFEST})
        if network in list_models():
            what = f"no pretrained weights are known for '{network}'"
        else:
            what = f"no pretrained weights named '{network}'{suggest(network, names)}"
        raise PretrainedError(f"{what}; networks with pretrained weights: {', '.join(names)}")
    for entry in entries:
        if entry.scale == scale:
            return entry
    scales = ", ".join(f"x{e.scale}" for e in entries)
    raise PretrainedError(f"no pretrained weights for '{network}' at x{scale} (only {scales})")


def how_to_get(network: str, scale: int) -> str:
    """One clause for error messages: which pretrained weights exist for ``network`` and the
    command that gets them."""
    try:
        entry = find_pretrained(network, scale)
    except PretrainedError as exc:
        return f"{exc} (cclnn weights list)"
    if entry.url is None and entry.manual:
        return (f"the {entry.source} holds {entry.filename}: download it from {entry.manual} "
                "and pass --weights FILE")
    return (f"pretrained: {entry.filename} from the {entry.source} (--weights pretrained, or "
            f"cclnn weights fetch {network} --scale {scale})")


def weights_cache() -> Path:
    """``$CCLNN_CACHE/weights``: where fetched weights are kept."""
    return cache_root() / "weights"


def local_path(entry: PretrainedFile) -> Path:
    """Where the file is (shipped) or will be once fetched (the cache)."""
    if entry.source == SHIPPED_SOURCE:
        return PACKAGE_WEIGHTS / entry.filename
    return weights_cache() / entry.filename


def download_url(entry: PretrainedFile, url_base: Optional[str] = None) -> str:
    """The entry's URL, or the same file name under ``url_base`` / ``$CCLNN_WEIGHTS_MIRROR``."""
    if entry.url is None:
        if entry.manual:
            raise PretrainedError(f"{entry.label}: no direct download; get {entry.filename} "
                                  f"from {entry.manual} and pass --weights FILE")
        raise PretrainedError(f"{entry.label}: ships with cclnn, nothing to download")
    if url_base:
        check_url_base(url_base, "--url-base")
    elif os.environ.get(MIRROR_ENV):
        url_base = check_url_base(os.environ[MIRROR_ENV], MIRROR_ENV)
    if not url_base:
        return entry.url
    return url_base.rstrip("/") + "/" + entry.filename


def max_download_size(entry: PretrainedFile) -> int:
    """The most bytes a download may take: the known size, else room for the network's fp32
    tensors four times over (a checkpoint may carry optimizer state) and 16 MiB."""
    if entry.size is not None:
        return entry.size
    return 16 * count_parameters(entry.network, entry.scale, **entry.options) + (16 << 20)


def git_blob_id(path: Path) -> str:
    """The id git gives ``path``'s bytes: SHA-1 of ``blob <size>\\0`` + the bytes."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(entry: PretrainedFile, path: Path, shown: Optional[str] = None) -> str:
    """What was verified of ``path`` against the entry (one phrase); a one-line
    :class:`ChecksumError` naming the file (``shown``, else ``path``) and the expected and
    actual hash otherwise."""
    shown = shown or str(path)
    if entry.sha256 or entry.sha256_prefix:
        digest = sha256_of(path)
        expected = entry.sha256 or entry.sha256_prefix
        if not digest.startswith(expected):
            what = "" if entry.sha256 else " (first 8 hex digits, from the official file name)"
            raise ChecksumError(f"{shown}: SHA-256 mismatch: expected {expected}{what}, "
                                f"got {digest}")
        if entry.sha256:
            return "SHA-256 verified"
        return (f"only the 8-digit prefix {expected} from the official file name matched "
                f"(its SHA-256 is {digest})")
    if entry.git_blob:
        blob = git_blob_id(path)
        if blob != entry.git_blob:
            raise ChecksumError(f"{shown}: git blob id mismatch: expected {entry.git_blob} (the "
                                f"official repository's), got {blob}")
        return "git blob id verified against the official repository's tree (SHA-1)"
    raise ChecksumError(f"{shown}: {entry.label} has no hash to verify it with")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def fetch_pretrained(entry: PretrainedFile, *, url_base: Optional[str] = None,
                     log: Callable[[str], None] = _stderr, progress: bool = True,
                     retries: int = 3, timeout: float = 30.0, backoff: float = 2.0) -> Path:
    """The entry's file, checked: shipped, cached, or downloaded (resuming a ``.part``) and
    checked before it is moved into the cache. A file that fails its check is deleted and
    the error names the expected and actual hash; nothing is cached."""
    target = local_path(entry)
    if entry.url is None:
        if entry.source != SHIPPED_SOURCE:
            download_url(entry)  # raises: where to get it by hand
        verify_file(entry, target)
        return target
    url = download_url(entry, url_base)
    if target.is_file():
        try:
            verify_file(entry, target)
            return target
        except ChecksumError as exc:
            target.unlink()
            log(f"{exc}; removed from the cache, fetching it again")
    staged = weights_cache() / "downloads" / entry.filename
    if not staged.is_file():
        log(f"{entry.filename}: downloading {url}")
        download(url, staged, size=entry.size, max_size=max_download_size(entry), log=log,
                 progress=progress, retries=retries, timeout=timeout, backoff=backoff)
    try:
        checked = verify_file(entry, staged, f"{entry.filename} ({entry.label})")
    except ChecksumError as exc:
        staged.unlink(missing_ok=True)
        raise ChecksumError(f"{exc}; the download from {url} was deleted, nothing cached") \
            from None
    if entry.check == "sha256-prefix":
        warnings.warn(f"{entry.filename}: hash unverified: {checked}", stacklevel=2)
    os.replace(staged, target)
    log(f"{entry.filename}: {checked}; cached as {target}")
    return target


def pretrained_path(network: str, scale: int) -> Path:
    """The checked local file of ``network``'s pretrained weights at ``scale``, fetched on
    first use (from ``$CCLNN_WEIGHTS_MIRROR`` if set)."""
    return fetch_pretrained(find_pretrained(network, scale))


__all__ = ["MANIFEST", "MIRROR_ENV", "PretrainedError", "PretrainedFile", "download_url",
           "fetch_pretrained", "find_pretrained", "how_to_get", "list_pretrained", "local_path",
           "pretrained_path", "verify_file", "weights_cache"]
