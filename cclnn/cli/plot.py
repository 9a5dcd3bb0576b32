"""``cclnn plot``: training curves of runs, or PSNR vs parameters (see
:mod:`cclnn.analysis.plots`)."""
from __future__ import annotations

import argparse
import sys

from ..analysis import AnalysisError, check_png_path, require_matplotlib, save_figure


def add_parser(sub) -> None:
    p = sub.add_parser("plot", help="training curves of runs, or PSNR vs parameters (--scatter)")
    p.add_argument("inputs", nargs="+", metavar="RUN_DIR|RESULT.json")
    p.add_argument("--scatter", action="store_true",
                   help="inputs are `cclnn test --json` outputs: PSNR vs parameters")
    p.add_argument("--label", action="append", metavar="NAME",
                   help="network of each RESULT.json, in order (default: the file's stem)")
    p.add_argument("-o", "--output", required=True, help="picture (.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # the figure code is loaded when run, not for --help
    from ..analysis.plots import (curves_figure, read_run, run_labels, scatter_figure,
                                  scatter_points)
    require_matplotlib()
    check_png_path(args.output)
    if args.scatter:
        points = scatter_points(args.inputs, args.label)
        fig = scatter_figure(points)
        what = f"{len(points)} result(s)"
    else:
        if args.label:
            raise AnalysisError("--label is for --scatter; runs are labelled by folder name")
        labels = run_labels(args.inputs)
        runs = [(label, *read_run(d)) for label, d in zip(labels, args.inputs)]
        for label, train, _ in runs:
            if not train:
                print(f"cclnn plot: {label}: train_log.csv has no rows yet", file=sys.stderr)
        fig = curves_figure(runs)
        what = f"{len(runs)} run(s)"
    out = save_figure(fig, args.output)
    print(f"picture {out} ({what})")
    return 0
