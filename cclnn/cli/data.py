"""``cclnn data make-lr|fetch``: dataset tools (fetching is described in
:mod:`cclnn.data.fetch`, whose docstring is also ``cclnn data fetch --help``)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..data import fetch as fetching
from ..data.benchmark import DatasetError, list_images, make_lr_files
from ..data.images import IMAGE_SUFFIXES
from ..data.layout import DATA_ENV, LR_FOLDER, SCALES, lr_dir, lr_file_name
from .common import NON_NEGATIVE, positive_number, scale_factor


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    add_make_lr_parser(data_sub)
    add_fetch_parser(data_sub)


def add_make_lr_parser(data_sub) -> None:
    """Add ``make-lr`` to the ``cclnn data`` sub-commands."""
    q = data_sub.add_parser("make-lr", help="write MATLAB-bicubic LR_bicubic/X{s}/ beside HR_DIR")
    q.add_argument("hr_dir")
    q.add_argument("--scales", type=scale_factor, nargs="+", default=list(SCALES))
    q.add_argument("--overwrite", action="store_true")
    q.set_defaults(func=run_make_lr)


def add_fetch_parser(data_sub) -> None:
    """Add ``fetch`` to the ``cclnn data`` sub-commands."""
    p = data_sub.add_parser(
        "fetch", help="download, verify and unpack DIV2K or the SR benchmark sets",
        description=fetching.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=tuple(fetching.ARCHIVES), help="which dataset")
    p.add_argument("--root", default=None,
                   help=f"datasets folder (default: ${DATA_ENV}, else "
                        f"{fetching.DEFAULT_ROOT})")
    p.add_argument("--scales", type=scale_factor, nargs="+", default=list(SCALES),
                   help=f"LR scales (default: {' '.join(map(str, SCALES))})")
    p.add_argument("--parts", nargs="+", metavar="PART",
                   help="archives to fetch; div2k: "
                        + ", ".join(fetching.ARCHIVES["div2k"])
                        + " (default: train_hr valid_hr and train/valid LR of --scales)")
    p.add_argument("--url-base", metavar="URL",
                   help=f"fetch every archive from URL/FILE (default: ${fetching.MIRROR_ENV}, "
                        "else the official servers)")
    p.add_argument("--sha256", action="append", metavar="FILE=HASH",
                   help="expected SHA-256 of an archive (repeatable); overrides the table")
    p.add_argument("--keep-archives", action="store_true",
                   help="keep the downloaded archives in ROOT/downloads after unpacking")
    p.add_argument("--retries", type=NON_NEGATIVE, default=3,
                   help="retries per download (default 3)")
    p.add_argument("--timeout", type=positive_number, default=30.0,
                   help="network timeout in seconds (default 30)")
    p.set_defaults(func=run_fetch)


def run_make_lr(args: argparse.Namespace) -> int:
    """Existing outputs are kept and counted unless ``--overwrite`` (as ``cclnn upscale``); a
    folder without images is an error, not a run that silently writes nothing."""
    hr_dir = Path(args.hr_dir)
    images, _ = list_images(hr_dir)
    if not images:
        raise DatasetError(f"{hr_dir}: no images in the folder (expected "
                           f"{', '.join(sorted(IMAGE_SUFFIXES))})")
    scales = list(dict.fromkeys(args.scales))
    existing = 0 if args.overwrite else sum(
        (lr_dir(hr_dir.parent, s) / lr_file_name(p.stem, s)).exists()
        for s in scales for p in images)
    written = make_lr_files(hr_dir, scales, overwrite=args.overwrite)
    kept = f"; kept {existing} existing (--overwrite replaces them)" if existing else ""
    print(f"wrote {written} LR image(s) under {hr_dir.parent / LR_FOLDER}{kept}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    """0 on success; a :class:`~cclnn.data.fetch.FetchError` otherwise."""
    root = args.root or os.environ.get(DATA_ENV) or fetching.DEFAULT_ROOT
    folder = fetching.fetch(args.name, root, scales=args.scales, parts=args.parts,
                            url_base=args.url_base,
                            sha256=fetching.parse_sha256_overrides(args.sha256),
                            keep_archives=args.keep_archives, retries=getattr(args, "retries", 3),
                            timeout=getattr(args, "timeout", 30.0))
    print(f"{args.name}: ready in {folder}")
    return 0
