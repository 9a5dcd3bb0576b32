"""The ``cclnn`` command line. Errors are one line on stderr and a non-zero exit status."""
from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version

from . import (ablate, bench, compare, data, demo, export, inspect, lam, models, plot, score,
               serve, stats, test, train, upscale, weights)
from .common import OneLineParser, run_command

# in the order ``cclnn --help`` lists them; each module adds its parser and sets ``func``
COMMANDS = (models, inspect, demo, upscale, test, score, train, export, ablate, stats, bench,
            lam, compare, plot, data, weights, serve)


def package_version() -> str:
    """The installed distribution's version (a source tree that was never installed has none)."""
    try:
        return version("cclnn")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="cclnn", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cclnn {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def parse(argv: list[str] | None = None):
    """The parsed command line. ``key=value`` overrides may also follow the options
    (``cclnn train run.yaml --no-progress optim.lr=1e-4``), which argparse alone rejects."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        if (isinstance(getattr(args, "overrides", None), list)
                and all("=" in e and not e.startswith("-") for e in extras)):
            args.overrides += extras
        else:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_command(parse(argv))
