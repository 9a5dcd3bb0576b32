"""The archives ``cclnn data fetch`` knows: where each one is served, its published SHA-256 and
size, where it unpacks and what it must hold; and the errors of fetching (each names the
archive, file or URL). The sources of the published hashes are given beside them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from ..errors import CclnnError
from .layout import HR_FOLDER, SCALES

DIV2K_URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
BENCHMARK_URL = "https://cv.snu.ac.kr/research/EDSR/"
BENCHMARK_SETS = ("Set5", "Set14", "B100", "Urban100")
CHUNK = 1 << 20  # bytes per read: downloading, hashing, unpacking


def one_line(text: object) -> str:
    return " ".join(str(text).split())


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
