"""The paper's experiments at CPU scale: ``cclnn ablate SUITE --budget ITERS``.

A suite is a list of rows (Tables 1-5 of the paper). A trained row is one training run per seed
of a study-size network (``*-s`` in the registry: 32 channels; the EDSR family with 8
ResBlocks), all on the same data with the same schedule: the paper's CCLNN-L ablation protocol
(SPEC section 3: 500 epochs, warm-up 75, lr halved every 150) scaled to the budget, i.e. the
auxiliary loss starts after 15 % of the iterations and the learning rate halves every 30 %.
Fixed rows (bicubic, A2N with its official weights) are only scored.

Runs are named by (row, scale, budget, seed) and shared between suites: CCLNN-S of Table 1 is
also the n = 15 % row of Table 3, the lambda = 2e-3 row of Table 4 and a row of Table 5.
Under ``--out`` (default ``results/experiments``):

* ``configs/RUN.yaml``: the exact config of a run (``cclnn train configs/RUN.yaml`` repeats it);
* ``runs/RUN/``: the trainer's run directory (``config.yaml``, ``train_log.csv``,
  ``val_log.csv``, ``console.log``; ``latest.pt`` while it runs), then ``final.safetensors``
  (the last weights) and ``metrics.json`` (those weights scored on the test sets, wall time);
* ``SUITE.md`` / ``SUITE.json``: the table with the paper's claims checked, ``SUITE.png``: the
  validation PSNR against the iterations (mean over the seeds, band: min-max).

Resumable: a run with ``metrics.json`` is done and skipped, one with ``latest.pt`` is resumed;
a run directory made with a different config is an error, not silently reused. Each run trains
in its own process (``cclnn train``), so ``--jobs 2`` runs two at a time with one thread each,
which on 2 cores trains the NLSA networks about 1.3x faster in total than one run on 2 threads.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from ..errors import CclnnError
from .config import config_from_dict, dump_config, parse_overrides, write_text_if_changed

DEFAULT_TRAIN = ("../shared/data/train/T91", "../shared/data/train/SunHays80")
DEFAULT_A2N = "../shared/weights/a2n/aan_x2.pt"
HOLD_OUT = 10  # validation images held out of the last training folder
WARMUP_FRACTION = 75 / 500  # the ablation protocol's warm-up, as a share of the run
LR_STEP_FRACTION = 150 / 500  # ... and its learning-rate step


class AblationError(CclnnError):
    """A suite cannot run or its results cannot be read (one-line message)."""


class AblationInterrupted(AblationError):
    """SIGINT/SIGTERM stopped the suite after its running trainings saved checkpoints."""
    exit_code = 130


# ----------------------------------------------------------------------------- suites

@dataclass(frozen=True)
class Row:
    """One line of a table: a network trained per seed, or a fixed method only scored."""
    key: str  # run-name stem, the same row in every suite it appears in
    label: str
    model: str  # registry name, or "bicubic"
    options: Mapping[str, Any] = field(default_factory=dict)  # model options
    overrides: tuple[str, ...] = ()  # training-config overrides (key=value)
    weights: Optional[str] = None  # fixed weights: scored, not trained ("a2n" -> --a2n-weights)

    @property
    def trained(self) -> bool:
        return self.model != "bicubic" and self.weights is None


@dataclass(frozen=True)
class Claim:
    """The paper says every row of ``better`` beats every row of ``worse`` (PSNR, datasets)."""
    text: str
    better: tuple[str, ...]
    worse: tuple[str, ...]
    datasets: tuple[str, ...] = ("Set5",)


@dataclass(frozen=True)
class Suite:
    name: str
    title: str
    rows: tuple[Row, ...]
    claims: tuple[Claim, ...]


CCLNN_S = Row("cclnn-s", "CCLNN-S", "cclnn-s")
EDSR_S = Row("edsr-s", "EDSR-S", "edsr-s")
NLSN_S = Row("nlsn-s", "NLSN-S", "nlsn-s")
LOCAL = Row("cclnn-s-local", "CCLNN-S-local", "cclnn-s", {"branches": "local"})
NONLOCAL = Row("cclnn-s-nonlocal", "CCLNN-S-Non-L", "cclnn-s",
               {"branches": "nonlocal", "aux_loss": "none"})
TSPARSE = Row("cclnn-s-tsparse", "CCLNN-S-TSparse", "cclnn-s", {"aux_loss": "sparse"})
NSPARSE = Row("cclnn-s-nsparse", "CCLNN-S-NSparse", "cclnn-s", {"aux_loss": "none"})
N_ROWS = tuple(dataclasses.replace(CCLNN_S, label="n = 15 % (CCLNN-S)") if n == 15 else
               Row(f"cclnn-s-n{n:02d}", f"n = {n} %", "cclnn-s", {"contrast_ratio": n / 100})
               for n in (5, 15, 25, 35, 45))
LAMBDA_ROWS = tuple(dataclasses.replace(CCLNN_S, label="lambda = 2e-3 (CCLNN-S)") if k == 2 else
                    Row(f"cclnn-s-lambda{k}e-3", f"lambda = {k}e-3", "cclnn-s",
                        overrides=(f"loss.aux_weight={k}e-3",))
                    for k in (2, 4, 6, 8))
TABLE5_ROWS = (Row("bicubic", "Bicubic", "bicubic"), Row("srcnn", "SRCNN", "srcnn"),
               Row("vdsr", "VDSR", "vdsr"), EDSR_S, Row("rcan-s", "RCAN-S", "rcan-s"),
               Row("rnan-s", "RNAN-S", "rnan-s"), Row("divanet-s", "DiVANet-S", "divanet-s"),
               NLSN_S, CCLNN_S, Row("a2n", "A2N (official weights)", "a2n", weights="a2n"))


def _keys(rows, *exclude) -> tuple[str, ...]:
    return tuple(r.key for r in rows if r.key not in exclude)


SUITES = {s.name: s for s in (
    Suite("table1", "Table 1: local + non-local (CCLN block) against either alone",
          (CCLNN_S, LOCAL, EDSR_S, NONLOCAL, NLSN_S),
          (Claim("CCLNN-L is the best of the five", ("cclnn-s",),
                 ("cclnn-s-local", "edsr-s", "cclnn-s-nonlocal", "nlsn-s")),
           Claim("NLSN-L beats EDSR-L", ("nlsn-s",), ("edsr-s",)),
           Claim("the CCLN framework helps the NLSA structure (CCLNN-Non-L beats NLSN-L)",
                 ("cclnn-s-nonlocal",), ("nlsn-s",)),
           Claim("... and hurts the EDSR structure (EDSR-L beats CCLNN-local)",
                 ("edsr-s",), ("cclnn-s-local",)))),
    Suite("table2", "Table 2: contrastive CCA against L1-sparse CA and plain CA",
          (CCLNN_S, TSPARSE, NSPARSE),
          (Claim("CCLNN-L is the best of the three", ("cclnn-s",),
                 ("cclnn-s-tsparse", "cclnn-s-nsparse")),
           Claim("NSparse beats TSparse", ("cclnn-s-nsparse",), ("cclnn-s-tsparse",)))),
    Suite("table3", "Table 3: the share n of channels in the contrastive loss", N_ROWS,
          (Claim("n = 15 % is the best", ("cclnn-s",), _keys(N_ROWS, "cclnn-s")),)),
    Suite("table4", "Table 4: the weight lambda of the contrastive loss", LAMBDA_ROWS,
          (Claim("lambda = 2e-3 is the best", ("cclnn-s",), _keys(LAMBDA_ROWS, "cclnn-s")),
           Claim("too large a lambda hurts (8e-3 is the worst)", _keys(LAMBDA_ROWS,
                 "cclnn-s-lambda8e-3"), ("cclnn-s-lambda8e-3",)))),
    Suite("table5", "Table 5: CCLNN against its peers at an equal training budget", TABLE5_ROWS,
          # judged against the rows trained here; A2N's official weights had DIV2K and days
          (Claim("CCLNN is the best on every set", ("cclnn-s",),
                 _keys(TABLE5_ROWS, "cclnn-s", "a2n"), ("Set5", "Set14", "B100")),)),
)}


# ----------------------------------------------------------------------------- runs

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
        from ..data.benchmark import list_images
        *rest, last = self.train_dirs
        count = len(list_images(Path(last))[0])
        if count <= self.hold_out:
            raise AblationError(f"--train: {last} has {count} images; at least "
                                f"{self.hold_out + 1} are needed to hold {self.hold_out} out")
        train = [{"hr": d} for d in rest] + [{"hr": last, "last": count - self.hold_out}]
        return train, {"hr": last, "first": count - self.hold_out + 1}

    def run_name(self, row: Row, seed: Optional[int]) -> str:
        if not row.trained:
            return f"{row.key}_x{self.scale}"
        return f"{row.key}_x{self.scale}_b{self.budget}_s{seed}"

    def run_dir(self, name: str) -> Path:
        return self.out / "runs" / name

    def threads_per_job(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.jobs)


def run_config(study: Study, row: Row, seed: int) -> dict:
    """The config tree of one trained run (validated)."""
    from ..config import ConfigError
    from ..config import config_to_dict
    from ..models.registry import model_config
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
    state: str  # "done", "resume", "new", "fixed"


def plan_jobs(study: Study, suite: Suite) -> list[Job]:
    """Every run of the suite with its state; writes the configs of the trained ones and refuses
    a run directory whose config differs from the one this invocation would use."""
    jobs = []
    for row in suite.rows:
        for seed in (study.seeds if row.trained else (None,)):
            name = study.run_name(row, seed)
            run = study.run_dir(name)
            if (run / "metrics.json").is_file():
                state = "done"
            elif not row.trained:
                state = "fixed"
            else:
                state = "resume" if (run / "latest.pt").is_file() else "new"
            if row.trained:
                config = config_from_dict(run_config(study, row, seed))
                text = dump_config(config)
                if (run / "config.yaml").is_file() and (run / "config.yaml").read_text() != text:
                    raise AblationError(
                        f"{run}: made with a different config than this invocation's (other "
                        f"--set options, data or budget?); use another --out or remove it")
                write_text_if_changed(study.out / "configs" / f"{name}.yaml", text)
            jobs.append(Job(row, seed, name, state))
    return jobs


def _child_env(threads: int) -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    return env


def _start_training(study: Study, job: Job) -> subprocess.Popen:
    run = study.run_dir(job.name)
    if job.state == "resume":
        args = ["train", "--resume", str(run)]
    else:
        args = ["train", str(study.out / "configs" / f"{job.name}.yaml")]
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "console.log", "a") as log:
        return subprocess.Popen([sys.executable, "-m", "cclnn", *args, "--no-progress"],
                                stdout=log, stderr=subprocess.STDOUT,
                                env=_child_env(study.threads_per_job()))


def _benchmarks(study: Study):
    from ..data.benchmark import BenchmarkSet, resolve_benchmark
    return [BenchmarkSet(resolve_benchmark(d, study.data_root), study.scale,
                         name=Path(d).name) for d in study.datasets]


def score_job(study: Study, job: Job, benchmarks) -> Optional[dict]:
    """Score the final weights of a finished run (or a fixed method) and write metrics.json;
    None for a fixed row that cannot be scored here (no weights, another scale)."""
    import torch

    from ..evaluate import evaluate
    from ..inference import super_resolve
    from ..models.registry import build_model, count_parameters
    from ..resize import imresize
    from ..weights import load_weights, save_weights
    run = study.run_dir(job.name)
    row = job.row
    record: dict[str, Any] = {"run": job.name, "row": row.key, "model": row.model,
                              "options": dict(row.options), "scale": study.scale}
    if row.model == "bicubic":
        sr_fn = lambda lr: imresize(lr, study.scale)  # noqa: E731
        record["params"] = 0
    else:
        model = build_model(row.model, study.scale, **dict(row.options))
        if row.trained:
            state = torch.load(run / "latest.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            record.update(seed=job.seed, budget=study.budget, iterations=state["iteration"],
                          wall_seconds=round(state.get("elapsed_seconds", float("nan")), 1))
            if "devices" in state:
                record["devices"] = state["devices"]
        else:
            path = Path(study.a2n_weights)
            if study.scale != 2 or not path.is_file():
                return None
            load_weights(model, path)
            record["weights"] = str(path)
        record["params"] = count_parameters(row.model, study.scale, **dict(row.options))
        model.eval()
        sr_fn = lambda lr: super_resolve(model, lr, study.scale)  # noqa: E731
    record["results"] = [evaluate(sr_fn, b, progress=False).as_dict(per_image=True)
                         for b in benchmarks]
    run.mkdir(parents=True, exist_ok=True)
    if row.trained:
        save_weights(model, run / "final.safetensors", {"run": job.name})
    write_text_if_changed(run / "metrics.json", json.dumps(record, indent=1) + "\n")
    if row.trained:  # the optimizer state is no longer needed; the weights are kept
        for name in ("latest.pt", "best.pt"):
            (run / name).unlink(missing_ok=True)
    return record


def only_rows(suite: Suite, keys) -> Suite:
    """The suite cut down to the rows named by ``keys`` (``--only``); all of it for none."""
    if not keys:
        return suite
    known = [r.key for r in suite.rows]
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise AblationError(f"--only: {suite.name} has no row {unknown[0]!r}; its rows are "
                            f"{', '.join(known)}")
    return dataclasses.replace(suite, rows=tuple(r for r in suite.rows if r.key in keys))


def run_suite(study: Study, suite: Suite, log=print, part: Suite | None = None) -> int:
    """Train what is missing (of ``part``, the ``--only`` rows, if given), score it, write
    the whole suite's tables. Returns the number of failed runs."""
    import torch
    from .trainer import StopRequest
    benchmarks = _benchmarks(study)
    jobs = plan_jobs(study, suite if part is None else part)
    pending = [j for j in jobs if j.state in ("new", "resume")]
    failed = 0
    for job in jobs:
        if job.state == "fixed":
            if score_job(study, job, benchmarks) is None:
                log(f"{job.name}: skipped (no weights at {study.a2n_weights} for x{study.scale})")
    torch.set_num_threads(study.threads_per_job())
    with StopRequest() as stop:
        failed += _train_pending(study, pending, benchmarks, stop, log)
    write_tables(study, suite)
    return failed


def exit_reason(returncode: int) -> str:
    """'exit 1', or the signal that killed the process (the OOM killer sends SIGKILL)."""
    if returncode >= 0:
        return f"exit {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by {name}" + (" - out of memory?" if name == "SIGKILL" else "")


def _train_pending(study: Study, pending: list[Job], benchmarks, stop, log) -> int:
    """Train and score the pending jobs, ``study.jobs`` at a time; returns the failures. On
    SIGINT/SIGTERM the running trainings are asked to stop (each saves a checkpoint) and
    waited for."""
    import torch
    failed = 0
    active: list[tuple[Job, subprocess.Popen, float]] = []
    while pending or active:
        if stop.requested:
            for _, proc, _ in active:
                proc.send_signal(signal.SIGTERM)
            for job, proc, _ in active:
                saved = proc.wait() == 130  # TrainingInterrupted: checkpoint written
                log(f"{job.name}: " + ("stopped, checkpoint saved" if saved else
                                       f"stopped ({exit_reason(proc.returncode)})"))
            raise AblationInterrupted("interrupted; repeat the command to resume the "
                                      "unfinished runs from their checkpoints")
        while pending and len(active) < study.jobs:
            job = pending.pop(0)
            log(f"{job.name}: {'resuming' if job.state == 'resume' else 'training'} "
                f"({study.run_dir(job.name) / 'console.log'})")
            active.append((job, _start_training(study, job), time.monotonic()))
        time.sleep(0.2)
        for item in list(active):
            job, proc, started = item
            if proc.poll() is None:
                continue
            active.remove(item)
            if proc.returncode != 0:
                failed += 1
                log(f"{job.name}: training failed ({exit_reason(proc.returncode)}); see "
                    f"{study.run_dir(job.name) / 'console.log'}")
                continue
            # scoring holds up the queue, so it may use every core no training is using
            torch.set_num_threads(max(1, (os.cpu_count() or 1)
                                      - len(active) * study.threads_per_job()))
            record = score_job(study, job, benchmarks)
            cells = ", ".join(f"{r['dataset']} {r['psnr']:.2f}" for r in record["results"])
            log(f"{job.name}: done in {time.monotonic() - started:.0f} s; {cells}")
    return failed


# ----------------------------------------------------------------------------- tables

def collect(study: Study, suite: Suite) -> dict[str, list[dict]]:
    """row key -> the metrics.json records found for it (one per finished seed)."""
    found: dict[str, list[dict]] = {}
    for row in suite.rows:
        records = []
        for seed in (study.seeds if row.trained else (None,)):
            path = study.run_dir(study.run_name(row, seed)) / "metrics.json"
            if path.is_file():
                try:
                    records.append(json.loads(path.read_text()))
                except json.JSONDecodeError:
                    raise AblationError(f"{path}: not valid JSON") from None
        found[row.key] = records
    return found


def _values(records: list[dict], dataset: str, metric: str) -> list[float]:
    return [r[metric] for rec in records for r in rec["results"] if r["dataset"] == dataset]


def _summary(values: list[float]) -> tuple[float, float]:
    """(mean, range) over the seeds; the range is 0 for one seed."""
    return statistics.fmean(values), max(values) - min(values)


def seed_range(study: Study, key: str, dataset: str) -> Optional[float]:
    """Seed-to-seed PSNR range of one row at this budget over every seed on disk (a suite run
    with ``--seeds 0`` still knows the spread its rows showed in another suite); None below two."""
    values = []
    for path in sorted((study.out / "runs").glob(
            f"{key}_x{study.scale}_b{study.budget}_s*/metrics.json")):
        values += _values([json.loads(path.read_text())], dataset, "psnr")
    return max(values) - min(values) if len(values) > 1 else None


def _widest_range(study: Study, keys, dataset: str) -> Optional[float]:
    ranges = [r for k in keys if (r := seed_range(study, k, dataset)) is not None]
    return max(ranges) if ranges else None


def _paired(found: dict[str, list[dict]], keys) -> tuple[list[int], dict[str, list[dict]]]:
    """The seeds every trained row of ``keys`` has, and the rows' runs cut to them, so that a
    claim compares like with like (rows of one seed share its initialisation and data order);
    rows not trained (bicubic, official weights) are kept as they are."""
    seed_sets = [{r["seed"] for r in found.get(k, [])} for k in keys
                 if any(r.get("seed") is not None for r in found.get(k, []))]
    common = set.intersection(*seed_sets) if seed_sets else set()
    return sorted(common), {k: [r for r in found.get(k, [])
                                if r.get("seed") is None or r["seed"] in common] for k in keys}


def check_claim(study: Study, claim: Claim, found: dict[str, list[dict]]) -> dict:
    """Verdict of one claim per dataset, judged pair by pair ("A beats B" for every row A of
    'better' and B of 'worse'): the margin mean(A) - mean(B) over the seeds all the claim's rows
    have, against the larger seed-to-seed range of the two rows (over all their seeds: a row cut
    to the shared seeds keeps its spread) or, where both have one seed, the largest range of any
    row of the suite. The claim holds when every pair does, and does not hold when any pair fails
    by more than its spread: one noisy row cannot blur a comparison it is not part of. The
    margin, spread and rows reported are the deciding pair's."""
    out = {"claim": claim.text, "datasets": {}}
    keys = claim.better + claim.worse
    out["seeds"], paired = _paired(found, keys)
    for dataset in claim.datasets:
        means = {}
        for key in keys:
            values = _values(paired.get(key, []), dataset, "psnr")
            if not values:
                break
            means[key] = statistics.fmean(values)
        else:
            ranges = {k: seed_range(study, k, dataset) for k in keys}  # read once per dataset
            suite_range = None
            pairs = []  # (margin, spread or None, better row, worse row)
            for a in claim.better:
                for b in claim.worse:
                    known = [r for r in (ranges[a], ranges[b]) if r is not None]
                    if not known and suite_range is None:
                        suite_range = _widest_range(study, found, dataset)
                    pairs.append((means[a] - means[b], max(known) if known else suite_range,
                                  a, b))
            failed = [p for p in pairs if p[1] is not None and p[0] < -p[1]]
            if failed:  # the clearest refutation decides
                margin, spread, a, b = min(failed, key=lambda p: p[0] + p[1])
                verdict = "does not hold"
            elif all(p[1] is not None and p[0] > p[1] for p in pairs):
                margin, spread, a, b = min(pairs, key=lambda p: p[0] - p[1])
                verdict = "holds"
            else:
                margin, spread, a, b = min(pairs, key=lambda p: p[0])
                verdict = "holds" if margin > 0 else "does not hold"
                verdict += (" (one seed, spread unknown)" if spread is None
                            else " on the means, within the seed spread")
            out["datasets"][dataset] = {
                "margin": round(margin, 4), "verdict": verdict, "better": a, "worse": b,
                "spread": None if spread is None else round(spread, 4)}
            continue
        out["datasets"][dataset] = {"verdict": "incomplete (runs missing)"}
    return out


def _wall_kind(record: dict) -> str:
    """'gpu' for a run that trained on a GPU (in part or whole), else 'cpu': their wall times
    differ by a hundredfold, so a table never averages them together. Runs made before the
    devices were recorded trained on the CPU."""
    return "gpu" if any(d.startswith("cuda") for d in record.get("devices", [])) else "cpu"


def table_markdown(study: Study, suite: Suite, found: dict[str, list[dict]]) -> tuple[str, dict]:
    datasets = [Path(d).name for d in study.datasets]
    lines = [f"### {suite.title} (x{study.scale}, {study.budget} iterations per run)", ""]
    if study.overrides:  # a table must say how it differs from the suite's protocol
        lines += ["Every trained run with " + ", ".join(f"`{o}`" for o in study.overrides)
                  + " (`--set`).", ""]
    lines += ["| Network | Params | " + " | ".join(f"{d} PSNR / SSIM" for d in datasets)
              + " | Seeds | Wall time / run |",
              "|---|---:|" + "---:|" * len(datasets) + "---:|---:|"]
    summary: dict[str, Any] = {"suite": suite.name, "scale": study.scale, "budget": study.budget,
                               "overrides": list(study.overrides), "rows": [], "claims": []}
    wall_total = {"cpu": 0.0, "gpu": 0.0}
    for row in suite.rows:
        records = found[row.key]
        if not records:
            lines.append(f"| {row.label} | | " + " | ".join("-" for _ in datasets)
                         + " | 0 | |")
            continue
        cells, entry = [], {"key": row.key, "label": row.label, "params": records[0]["params"],
                            "seeds": [r.get("seed") for r in records], "datasets": {}}
        for d in datasets:
            p_mean, p_range = _summary(_values(records, d, "psnr"))
            s_mean, s_range = _summary(_values(records, d, "ssim"))
            spread = f" ± {p_range / 2:.2f}" if len(records) > 1 else ""
            cells.append(f"{p_mean:.2f}{spread} / {s_mean:.4f}")
            entry["datasets"][d] = {"psnr": p_mean, "psnr_range": p_range, "ssim": s_mean,
                                    "ssim_range": s_range,
                                    "psnr_per_seed": _values(records, d, "psnr")}
        walls = {"cpu": [], "gpu": []}
        for r in records:
            if "wall_seconds" in r:
                walls[_wall_kind(r)].append(r["wall_seconds"])
        per_kind = [f"{statistics.fmean(w) / 60:.0f} min" + (" (GPU)" if kind == "gpu" else "")
                   for kind, w in walls.items() if w]
        wall = "; ".join(per_kind) or "-"
        for kind, w in walls.items():
            wall_total[kind] += sum(w)
        params = f"{records[0]['params'] / 1e6:.3f} M" if records[0]["params"] else "-"
        seeds = str(len(records)) if row.trained else "-"
        lines.append(f"| {row.label} | {params} | " + " | ".join(cells) + f" | {seeds} | {wall} |")
        summary["rows"].append(entry)
    lines += ["", "± is half the PSNR range over the seeds (with two seeds: each seed's distance "
              "from the mean).", ""]
    labels = {row.key: row.label for row in suite.rows}
    for claim in suite.claims:
        result = check_claim(study, claim, found)
        summary["claims"].append(result)
        parts = []
        for d, v in result["datasets"].items():
            if "margin" in v:
                spread = "unknown" if v["spread"] is None else f"{v['spread']:.3f} dB"
                rows = (f", {labels[v['better']]} over {labels[v['worse']]}"
                        if len(claim.better) * len(claim.worse) > 1 else "")
                parts.append(f"{d}: {v['verdict']} (margin {v['margin']:+.3f} dB{rows}, seed "
                             f"range {spread})")
            else:
                parts.append(f"{d}: {v['verdict']}")
        seeds = (f" (seed{'s' if len(result['seeds']) > 1 else ''} "
                 f"{', '.join(map(str, result['seeds']))})" if result["seeds"] else "")
        lines.append(f"- Paper: {claim.text}. Here{seeds}: " + "; ".join(parts) + ".")
    gpu = (f", plus {wall_total['gpu'] / 60:.0f} min on a GPU (runs marked GPU)"
           if wall_total["gpu"] else "")
    lines += ["", f"Training wall time of the runs found: {wall_total['cpu'] / 3600:.2f} h{gpu}."]
    summary["wall_hours"] = wall_total["cpu"] / 3600
    if wall_total["gpu"]:
        summary["gpu_wall_hours"] = wall_total["gpu"] / 3600
    return "\n".join(lines) + "\n", summary


def validation_curves(study: Study, suite: Suite) -> list[tuple[str, list[dict]]]:
    """(label, [{iteration, mean, low, high}]) of Set5 validation PSNR over the seeds of the
    finished runs (as the table: an interrupted run's first points would skew the mean)."""
    import csv
    curves = []
    for row in suite.rows:
        if not row.trained:
            continue
        by_iteration: dict[int, list[float]] = {}
        for seed in study.seeds:
            run = study.run_dir(study.run_name(row, seed))
            path = run / "val_log.csv"
            if not (path.is_file() and (run / "metrics.json").is_file()):
                continue
            with open(path, newline="") as f:
                for rec in csv.DictReader(f):
                    by_iteration.setdefault(int(rec["iteration"]), []).append(float(rec["psnr"]))
        points = [{"iteration": it, "mean": statistics.fmean(v), "low": min(v), "high": max(v)}
                  for it, v in sorted(by_iteration.items())]
        if points:
            curves.append((row.label, points))
    return curves


def write_tables(study: Study, suite: Suite) -> Path:
    found = collect(study, suite)
    text, summary = table_markdown(study, suite, found)
    stem = study.out / f"{suite.name}_x{study.scale}_b{study.budget}"
    write_text_if_changed(stem.with_suffix(".md"), text)
    write_text_if_changed(stem.with_suffix(".json"), json.dumps(summary, indent=1) + "\n")
    curves = validation_curves(study, suite)
    if curves:
        from ..analysis.plots import band_figure
        from ..analysis import save_figure
        fig = band_figure(curves, f"{suite.title} - Set5 x{study.scale} validation")
        save_figure(fig, stem.with_suffix(".png"))
    return stem.with_suffix(".md")


# ----------------------------------------------------------------------------- plan

TRAIN_LOG_COLUMNS = ("iteration", "data_s", "compute_s")


def logged_steps(run: Path) -> tuple[int, Optional[float]]:
    """(iterations done, median seconds per step) from a run's ``train_log.csv``: the step time
    the run really had, under the load it shared the CPU with; (0, None) without a log."""
    from ..analysis.plots import read_log
    if not (run / "train_log.csv").is_file():
        return 0, None
    rows = read_log(run / "train_log.csv", TRAIN_LOG_COLUMNS, TRAIN_LOG_COLUMNS)
    if not rows:
        return 0, None
    return int(rows[-1]["iteration"]), statistics.median(r["data_s"] + r["compute_s"]
                                                          for r in rows)


def estimate(study: Study, suite: Suite, steps: int = 3) -> list[dict]:
    """Each run's state and, for unfinished ones, the seconds left: at the step time its own log
    (or the log of the row's other seeds) shows, else measured now over a few steps with this
    invocation's threads per run (which another process's load inflates)."""
    import torch

    from ..bench import bench_train
    jobs = plan_jobs(study, suite)
    logged = {j.name: logged_steps(study.run_dir(j.name)) for j in jobs if j.row.trained}
    step_seconds: dict[str, float] = {}
    for job in jobs:  # logged step times, per row
        if job.row.trained and job.row.key not in step_seconds:
            times = [logged[j.name][1] for j in jobs if j.row == job.row]
            times = [t for t in times if t is not None]
            if times:
                step_seconds[job.row.key] = statistics.median(times)
    rows = []
    torch.set_num_threads(study.threads_per_job())
    for job in jobs:
        entry = {"run": job.name, "state": job.state}
        if job.state in ("new", "resume"):
            if job.row.key not in step_seconds:
                config = study.out / "configs" / f"{job.name}.yaml"
                step_seconds[job.row.key] = bench_train(str(config), steps, 1)["step_seconds"]
            done = logged[job.name][0] if job.state == "resume" else 0
            entry["step_seconds"] = step_seconds[job.row.key]
            entry["seconds"] = step_seconds[job.row.key] * (study.budget - done)
        rows.append(entry)
    return rows

