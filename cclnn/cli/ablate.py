"""``cclnn ablate``: the paper's tables at CPU scale (see :mod:`cclnn.experiments`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import suggest
from ..experiments import AblationError
from ..experiments.suites import DEFAULT_A2N, DEFAULT_TRAIN, HOLD_OUT, SUITES, only_rows
from .common import NON_NEGATIVE, POSITIVE, add_data_root, add_scale


def add_parser(sub) -> None:
    p = sub.add_parser("ablate", help="the paper's tables at CPU scale: train a suite, write "
                                      "its table (see docs/experiments.md)")
    p.add_argument("suite", metavar="SUITE", help="one of " + ", ".join(SUITES))
    p.add_argument("--budget", type=POSITIVE, required=True, help="training iterations per run")
    plans = "; ".join(f"{n}: 0-{s.seeds - 1}" for n, s in SUITES.items())
    p.add_argument("--seeds", type=NON_NEGATIVE, nargs="+",
                   help=f"training seeds (default: the study's plan, {plans})")
    p.add_argument("--out", default="results/experiments", help="results folder")
    add_scale(p, default=2)
    p.add_argument("--jobs", type=POSITIVE, default=1, help="runs trained at the same time")
    p.add_argument("--threads", type=POSITIVE, help="threads per run (default: CPUs / jobs)")
    p.add_argument("--train", nargs="+", default=list(DEFAULT_TRAIN), metavar="HR_DIR",
                   help="training image folders (default: T91 and SunHays80 in ../shared)")
    p.add_argument("--hold-out", type=POSITIVE, default=HOLD_OUT, metavar="N",
                   help="the last N images of the last --train folder are not trained on; "
                        f"they validate and pick best.pt (default {HOLD_OUT})")
    p.add_argument("--datasets", nargs="+", default=["Set5", "Set14", "B100"],
                   help="test sets scored with the final weights")
    add_data_root(p, "the test sets")
    p.add_argument("--a2n-weights", default=DEFAULT_A2N, help="official A2N x2 weights "
                                                              "(Table 5 row; skipped if absent)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="config override for every trained run, e.g. data.patch_size=48")
    p.add_argument("--only", nargs="+", metavar="ROW",
                   help="train only these rows of the suite (run names' stems, e.g. rnan-s); "
                        "the table still lists every finished row")
    p.add_argument("--plan", action="store_true",
                   help="list the runs and estimate the time left (training; a "
                        "self-ensemble's scoring where measured); train nothing")
    p.add_argument("--tables-only", action="store_true",
                   help="rewrite the table from finished runs; train nothing")
    p.add_argument("--train-only", action="store_true",
                   help="train the missing runs and stop there: no scoring, no table (train on "
                        "a GPU machine, score where the results are kept)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # training, scoring and tables load torch: not at `cclnn --help`
    from ..experiments.estimate import estimate
    from ..experiments.report import write_tables
    from ..experiments.runner import run_suite
    from ..experiments.study import Study
    from ..inference import ENSEMBLE_VIEWS
    suite = SUITES.get(args.suite)
    if suite is None:
        raise AblationError(f"suite '{args.suite}': expected one of {', '.join(SUITES)}"
                            + suggest(args.suite, SUITES))
    if args.budget < 1:
        raise AblationError("--budget: must be at least 1 iteration")
    if args.jobs < 1:
        raise AblationError("--jobs: must be at least 1")
    study = Study(out=Path(args.out), budget=args.budget, scale=args.scale,
                  seeds=tuple(dict.fromkeys(args.seeds or range(suite.seeds))),
                  train_dirs=tuple(args.train), datasets=tuple(args.datasets),
                  data_root=args.data_root, a2n_weights=args.a2n_weights,
                  overrides=tuple(args.set or ()), jobs=args.jobs, threads=args.threads,
                  hold_out=args.hold_out)
    for d in study.train_dirs:
        if not Path(d).is_dir():
            raise AblationError(f"--train: {d} is not a folder")
    part = only_rows(suite, tuple(args.only or ()))  # an unknown row fails before anything runs
    if args.plan:
        rows = estimate(study, part)
        total = sum(r.get("seconds", 0.0) for r in rows)
        for r in rows:
            extra = (f"~{r['seconds'] / 60:.0f} min ({r['step_seconds']:.3f} s/step)"
                     if "step_seconds" in r else
                     f"~{r['seconds'] / 60:.0f} min of scoring left ({ENSEMBLE_VIEWS} x "
                     f"{r['score_seconds']:.0f} s, {r['scored_seconds'] / 60:.0f} min done)"
                     if "seconds" in r else
                     f"{r['scored_seconds'] / 60:.0f} min of scoring done"
                     if r.get("scored_seconds") else "")
            print(f"{r['run']:<40} {r['state']:<7} {extra}")
        print(f"estimated time left (training, and the self-ensembles' scoring where their "
              f"source rows recorded theirs): {total / 3600:.2f} h with {study.jobs} job(s) "
              f"of {study.threads_per_job()} thread(s); about {total / 3600 / study.jobs:.2f} h "
              f"of wall time if the jobs overlap perfectly")
        return 0
    if args.tables_only and args.train_only:
        raise AblationError("--tables-only and --train-only: choose one")
    if args.tables_only:
        path = write_tables(study, suite, require_runs=True)
    elif args.train_only:
        failed = run_suite(study, suite, part=part, score=False)
        if failed:
            print(f"cclnn ablate: {failed} run(s) failed; finished runs are kept, rerun the same "
                  f"command to retry", file=sys.stderr)
        return 1 if failed else 0
    else:
        failed = run_suite(study, suite, part=part)
        path = study.out / f"{suite.name}_x{study.scale}_b{study.budget}.md"
        if failed:
            print(f"cclnn ablate: {failed} run(s) failed; finished runs are kept, rerun the same "
                  f"command to retry", file=sys.stderr)
            print(path.read_text())
            return 1
    print(path.read_text())
    return 0
