"""The training time a suite has left: from the runs' own logs, else measured now."""
from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Optional

import torch

from ..engine.logs import STEP_TIME_FIELDS, TRAIN_LOG, read_log
from ..inference import ENSEMBLE_VIEWS
from ..data.benchmark import resolve_benchmark
from ..speed import bench_train
from .scoring import ScoreJournal, read_metrics
from .study import Job, Study, config_text, plan_jobs
from .suites import Suite


def logged_steps(run: Path) -> tuple[int, Optional[float]]:
    """(iterations done, median seconds per step) from a run's ``train_log.csv``: the step time
    the run really had, under the load it shared the CPU with; (0, None) without a log."""
    if not (run / TRAIN_LOG).is_file():
        return 0, None
    rows = read_log(run / TRAIN_LOG, STEP_TIME_FIELDS, STEP_TIME_FIELDS)
    if not rows:
        return 0, None
    return int(rows[-1]["iteration"]), statistics.median(r["data_s"] + r["compute_s"]
                                                          for r in rows)


def _measured_step(study: Study, job: Job, steps: int) -> float:
    """Seconds per step of ``job``'s config, trained for a few steps now (written to a
    temporary file: a plan leaves the study's folders as they were)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / f"{job.name}.yaml"
        config.write_text(config_text(study, job.row, job.seed))
        return bench_train(str(config), steps, 1)["step_seconds"]


def estimate(study: Study, suite: Suite, steps: int = 3) -> list[dict]:
    """Each run's state and, for unfinished ones, the seconds left: at the step time the logs of
    the row's runs show (of any seed on disk, asked for or not), else measured now over a few
    steps with this invocation's threads per run (which another process's load inflates); for
    a self-ensemble row, 8 times the scoring time of its source row's finished runs, where they
    recorded it, less what an interrupted scoring of it has done."""

    for dataset in study.datasets:  # what the runs will be scored on: a wrong --data-root
        resolve_benchmark(dataset, study.data_root)  # fails the plan, not the runs hours later
    jobs = plan_jobs(study, suite, write=False)
    logged = {j.name: logged_steps(study.run_dir(j.name)) for j in jobs if j.row.trained}
    step_seconds: dict[str, float] = {}
    for job in jobs:  # logged step times, per row, over every seed on disk
        if job.row.trained and job.row.key not in step_seconds:
            times = [logged_steps(run)[1] for run in study.runs_of_any_seed(job.row)]
            times = [t for t in times if t is not None]
            if times:
                step_seconds[job.row.key] = statistics.median(times)
    score_seconds = _score_seconds(study, jobs)
    rows = []
    torch.set_num_threads(study.threads_per_job())
    for job in jobs:
        entry = {"run": job.name, "state": job.state}
        if job.state in ("new", "resume"):
            if job.row.key not in step_seconds:
                step_seconds[job.row.key] = _measured_step(study, job, steps)
            done = logged[job.name][0] if job.state == "resume" else 0
            entry["step_seconds"] = step_seconds[job.row.key]
            entry["seconds"] = step_seconds[job.row.key] * (study.budget - done)
        elif job.state == "ensemble":
            # an interrupted scoring's journal: the part already done
            entry["scored_seconds"] = ScoreJournal.seconds_in(
                study.run_dir(job.name) / ScoreJournal.NAME)
            if job.row.ensemble_of.key in score_seconds:
                entry["score_seconds"] = score_seconds[job.row.ensemble_of.key]
                entry["seconds"] = max(0.0, ENSEMBLE_VIEWS * entry["score_seconds"]
                                       - entry["scored_seconds"])
        rows.append(entry)
    return rows


def _score_seconds(study: Study, jobs: list[Job]) -> dict[str, float]:
    """Source row key of each self-ensemble row -> median seconds its finished runs (of any
    seed) took to be scored (as their metrics.json recorded it; older records do not say)."""
    found: dict[str, float] = {}
    sources = {job.row.ensemble_of.key: job.row.ensemble_of for job in jobs
               if job.row.ensemble_of is not None}
    for source in sources.values():
        times = []
        for run in study.runs_of_any_seed(source):
            if (run / "metrics.json").is_file():
                seconds = read_metrics(run / "metrics.json").get("score_seconds")
                if seconds is not None:
                    times.append(seconds)
        if times:
            found[source.key] = statistics.median(times)
    return found
