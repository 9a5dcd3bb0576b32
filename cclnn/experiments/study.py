"""A study (what every run of an invocation shares), each run's config, and the plan of jobs."""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from ..config import ConfigError, config_to_dict
from ..data.benchmark import list_images
from ..atomic import write_text_if_changed
from ..engine.checkpoint import LATEST
from ..engine.train_config import config_from_dict, dump_config, parse_overrides, read_yaml
from ..models.registry import model_config
from . import AblationError
from .suites import (DEFAULT_A2N, DEFAULT_TRAIN, HOLD_OUT, LR_STEP_FRACTION, WARMUP_FRACTION,
                     Row, Suite)

FINAL_WEIGHTS = "final.safetensors"  # a trained run's final weights, once trained


@dataclass(frozen=True)
class Study:
    """What is shared by every run of an invocation."""
    out: Path
    budget: int
    scale: int = 2
    seeds: tuple[int, ...] = (0, 1)
    train_dirs: tuple[str, ...] = DEFAULT_TRAIN
    datasets: tuple[str, ...] = ("Set5", "Set14", "B100")
    data_root: Optional[str] = None
    a2n_weights: str = DEFAULT_A2N
    overrides: tuple[str, ...] = ()  # applied to every trained run, after the row's own
    jobs: int = 1
    threads: Optional[int] = None  # per run; default: the CPU count divided by jobs
    hold_out: int = HOLD_OUT

    def split(self) -> tuple[list[dict], dict]:
        """(data.train, val.held_out): the last ``hold_out`` images (in name order) of the last
        training folder validate and pick best.pt; no benchmark test set chooses anything."""
        *rest, last = self.train_dirs
        count = len(list_images(Path(last))[0])
        if count <= self.hold_out:
            raise AblationError(f"--train: {last} has {count} images; at least "
                                f"{self.hold_out + 1} are needed to hold {self.hold_out} out")
        train = [{"hr": d} for d in rest] + [{"hr": last, "last": count - self.hold_out}]
        return train, {"hr": last, "first": count - self.hold_out + 1}

    def run_name(self, row: Row, seed: Optional[int]) -> str:
        if not row.seeded:
            return f"{row.key}_x{self.scale}"
        return f"{row.key}_x{self.scale}_b{self.budget}_s{seed}"

    def run_dir(self, name: str) -> Path:
        return self.out / "runs" / name

    def runs_of_any_seed(self, row: Row) -> list[Path]:
        """The folders of ``row``'s runs at this scale and budget, whatever their seed: also
        those of seeds this invocation does not ask for."""
        prefix = f"{row.key}_x{self.scale}_b{self.budget}_s"
        return sorted(p for p in (self.out / "runs").glob(glob.escape(prefix) + "*")
                      if p.name[len(prefix):].isdigit())

    def threads_per_job(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.jobs)


def run_config(study: Study, row: Row, seed: int) -> dict:
    """The config tree of one trained run (validated)."""
    b = study.budget
    train, held_out = study.split()
    tree = {
        "name": study.run_name(row, seed),
        # every option written out, so that a run says what it trained without the registry
        "model": {"name": row.model, "scale": study.scale,
                  "options": config_to_dict(model_config(row.model, **dict(row.options)))},
        "data": {"train": train, "patch_size": 32, "batch_size": 16, "repeat": 20},
        "optim": {"lr": 2.0e-4, "lr_step_iterations": max(1, round(LR_STEP_FRACTION * b))},
        "loss": {"aux_weight": 2.0e-3, "warmup_iterations": round(WARMUP_FRACTION * b)},
        "epochs": b,  # an epoch has at least one iteration: the budget ends the run
        "max_iterations": b,
        "seed": seed,
        "val": {"held_out": held_out, "every": max(1, b // 10)},
        "checkpoint_every": max(1, min(100, b // 10)),
        "log_every": max(1, min(10, b // 10)),
        "out_dir": str(study.out / "runs"),
    }
    for key, value in parse_overrides(list(row.overrides) + list(study.overrides)):
        node = tree
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise AblationError(f"--set {key}: '{part}' is not a section")
        node[last] = value
    try:
        config_from_dict(tree)
    except ConfigError as exc:
        raise AblationError(f"run {tree['name']}: {exc}") from None
    return tree


@dataclass
class Job:
    row: Row
    seed: Optional[int]
    name: str
    state: str  # "done", "resume", "new", "trained" (not scored), "fixed", "ensemble"


def config_text(study: Study, row: Row, seed: Optional[int]) -> str:
    """The YAML config a trained row's run of ``seed`` trains with."""
    return dump_config(config_from_dict(run_config(study, row, seed)))


def _changes(there: str, here: str, shown: int = 2) -> str:
    """The first keys two run configs differ in, ``key: old there, new here``."""
    def flat(value, prefix=""):
        if isinstance(value, dict):
            return {k: v for key, item in value.items()
                    for k, v in flat(item, f"{prefix}{key}.").items()}
        return {prefix[:-1]: value}
    try:
        old, new = flat(read_yaml(there)), flat(read_yaml(here))
    except yaml.YAMLError:
        return "its config.yaml does not parse"
    keys = [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
    if not keys:
        return "the same values, written otherwise"
    text = "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys[:shown])
    return text + (f"; {len(keys) - shown} more" if len(keys) > shown else "")


def plan_jobs(study: Study, suite: Suite, write: bool = True) -> list[Job]:
    """Every run of the suite with its state; writes the configs of the trained ones (unless
    ``write`` is off: ``--plan`` leaves the disk as it was) and refuses a run directory whose
    config differs from the one this invocation would use."""
    jobs = []
    for row in suite.rows:
        for seed in (study.seeds if row.seeded else (None,)):
            name = study.run_name(row, seed)
            run = study.run_dir(name)
            if (run / "metrics.json").is_file():
                state = "done"
            elif row.ensemble_of is not None:
                state = "ensemble"  # scored once its source run has final weights
            elif not row.trained:
                state = "fixed"
            elif (run / LATEST).is_file():
                state = "resume"
            elif (run / FINAL_WEIGHTS).is_file():
                state = "trained"  # elsewhere (--train-only): only its scoring is left
            else:
                state = "new"
            if row.trained:
                text = config_text(study, row, seed)
                if (run / "config.yaml").is_file() and (run / "config.yaml").read_text() != text:
                    raise AblationError(
                        f"{run}: made with a different config than this invocation's "
                        f"({_changes((run / 'config.yaml').read_text(), text)}); use another "
                        f"--out or remove it")
                if write:
                    write_text_if_changed(study.out / "configs" / f"{name}.yaml", text)
            jobs.append(Job(row, seed, name, state))
    return jobs

