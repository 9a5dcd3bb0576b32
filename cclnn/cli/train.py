"""``cclnn train``: train a network from a YAML config, or resume a run."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..engine.train_config import load_config
from .common import CLIError


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a network from a YAML config (see configs/)")
    p.add_argument("config", nargs="?", help="YAML config file")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=2e-4")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.trainer import Trainer, resume_config  # ~0.1 s: loaded when run, not for --help
    overrides = list(args.overrides)
    if args.resume:
        if args.config:
            overrides.insert(0, args.config)
        run_dir = Path(args.resume)
        trainer = Trainer(resume_config(run_dir, overrides), run_dir, resume=True,
                          progress=not args.no_progress)
    else:
        if not args.config:
            raise CLIError("train: give a CONFIG file, or --resume RUN_DIR")
        trainer = Trainer(load_config(args.config, overrides), progress=not args.no_progress)
    if trainer.is_main:
        print(f"run {trainer.run_dir}: {trainer.config.model.name} x{trainer.scale}, "
              f"{len(trainer.dataset.pairs)} training images, {trainer.iters_per_epoch} "
              f"iterations/epoch, iterations {trainer.iteration} -> {trainer.total_iterations} "
              f"on {trainer.devices[-1]}",
              file=sys.stderr)
    result = trainer.train()
    if trainer.is_main and result:
        print(f"validation at iteration {result['iteration']}: {result['dataset']} "
              f"x{trainer.scale} {result['psnr']:.2f} dB / {result['ssim']:.4f}; best "
              f"{trainer.best_psnr:.2f} dB at iteration {trainer.best_iteration}")
    return 0
