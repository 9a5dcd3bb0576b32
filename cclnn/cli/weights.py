"""``cclnn weights list|fetch``: the pretrained weights cclnn knows by name (see
:mod:`cclnn.manifest`), and fetching them into ``$CCLNN_CACHE/weights``, verified."""
from __future__ import annotations

import argparse
import json

from ..manifest import (MIRROR_ENV, SHIPPED_SOURCE, PretrainedFile, fetch_pretrained,
                        find_pretrained, list_pretrained, local_path)
from .common import add_json, scale_factor


def add_parser(sub) -> None:
    p = sub.add_parser("weights", help="pretrained weights by name: list, fetch (verified)")
    weights_sub = p.add_subparsers(dest="weights_command", required=True)
    q = weights_sub.add_parser("list", help="every pretrained file: source, size, hash, cached")
    add_json(q, "JSON list on stdout")
    q.set_defaults(func=run_list)
    q = weights_sub.add_parser("fetch", help="download a network's pretrained weights into "
                                             "the cache, checked against their hash first")
    q.add_argument("name", help="network (cclnn weights list)")
    q.add_argument("--scale", type=scale_factor, nargs="+",
                   help="scales (default: every scale the network has weights for)")
    q.add_argument("--url-base", metavar="URL",
                   help=f"fetch URL/FILE instead of the official URL (default: ${MIRROR_ENV}, "
                        "else the official servers); http://, https:// or file://")
    q.set_defaults(func=run_fetch)


def status(entry: PretrainedFile) -> str:
    """shipped, cached, not cached, or manual download."""
    if entry.source == SHIPPED_SOURCE:
        return "shipped"
    if entry.url is None:
        return "manual download"
    return "cached" if local_path(entry).is_file() else "not cached"


def _size(entry: PretrainedFile) -> str:
    return f"{entry.size / 2**20:.1f} MiB" if entry.size is not None else "?"


def run_list(args: argparse.Namespace) -> int:
    entries = list_pretrained()
    if args.json:
        rows = [{"network": e.network, "scale": e.scale, "file": e.filename,
                 "source": e.source, "url": e.url, "manual": e.manual, "size": e.size,
                 "sha256": e.sha256, "sha256_prefix": e.sha256_prefix, "git_blob": e.git_blob,
                 "check": e.check, "hash_source": e.hash_source, "licence": e.licence,
                 "options": dict(e.options), "value_range": e.value_range,
                 "status": status(e),
                 "path": str(local_path(e)) if status(e) in ("shipped", "cached") else None}
                for e in entries]
        print(json.dumps({"weights": rows}))
        return 0
    print("| network | scale | file | source | size | check | status |\n"
          "|---|---|---|---|---:|---|---|")
    for e in entries:
        print(f"| {e.network} | x{e.scale} | {e.filename} | {e.source} | {_size(e)} | "
              f"{e.check} | {status(e)} |")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    """Every requested scale is looked up before anything is downloaded."""
    if args.scale:
        entries = [find_pretrained(args.name, s) for s in dict.fromkeys(args.scale)]
    else:
        entries = list_pretrained(args.name)
        if not entries:
            find_pretrained(args.name, 2)  # raises: the names there are, "did you mean"
    for entry in entries:
        path = fetch_pretrained(entry, url_base=args.url_base, log=print)
        print(f"{entry.label}: ready: {path}")
    return 0
