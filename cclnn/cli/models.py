"""``cclnn models``: the registered networks with their parameter counts."""
from __future__ import annotations

import argparse
import json

from ..models import count_parameters, list_models
from ..data.layout import SCALES
from ..models.registry import get_entry
from .common import add_json


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the networks with their parameter counts")
    add_json(p, "JSON list of {name, scale, params}")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = [{"name": n, "scale": s, "params": count_parameters(n, s)}
            for n in list_models() for s in SCALES]
    if args.json:
        print(json.dumps(rows))
        return 0
    by_name: dict[str, dict[int, int]] = {}
    for r in rows:
        by_name.setdefault(r["name"], {})[r["scale"]] = r["params"]
    print("| model | x2 params | x3 params | x4 params | published (x2 / x3 / x4) | description |")
    print("|---|---:|---:|---:|---|---|")
    for name, counts in by_name.items():
        cells = " | ".join(f"{counts[s] / 1e6:.3f} M" for s in SCALES)
        entry = get_entry(name)
        print(f"| {name} | {cells} | {entry.published} | {entry.summary} |")
    return 0
