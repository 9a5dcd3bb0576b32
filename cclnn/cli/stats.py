"""``cclnn stats``: is a difference between two sets of numbers (seeds, runs) real?"""
from __future__ import annotations

import argparse
import json


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None


def add_parser(sub) -> None:
    p = sub.add_parser("stats", help="compare two sets of numbers: Welch's or the paired t-test, "
                                     "95 %% CI, p-value, the smallest detectable difference")
    p.add_argument("--a", type=_number, nargs="+", required=True, metavar="X",
                   help="the first side's values (e.g. one PSNR per seed)")
    p.add_argument("--b", type=_number, nargs="+", required=True, metavar="X",
                   help="the second side's values")
    p.add_argument("--paired", action="store_true",
                   help="a[i] and b[i] belong together (same seed and start): the paired t-test")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..stats import compare, describe  # scipy: not at `cclnn --help`
    result = compare(args.a, args.b, paired=args.paired)
    print(json.dumps(result.as_dict()) if args.json else describe(result))
    return 0
