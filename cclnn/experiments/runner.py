"""Trains a suite's pending runs, each in its own ``cclnn train`` process, then scores them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..cpu import usable_threads
from ..engine.processes import StopRequest, TrainingError
from . import AblationInterrupted
from .report import write_tables
from .scoring import score_job, test_sets, write_final_weights
from .study import FINAL_WEIGHTS, Job, Study, plan_jobs
from .suites import Suite


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



def scoring_threads(training: int) -> int:
    """Threads for a scoring while ``training`` threads train: the CPUs they leave, no more
    than other processes leave free (an extra thread on a busy core makes every operation
    wait for it)."""
    return usable_threads(max(1, (os.cpu_count() or 1) - training))


def run_suite(study: Study, suite: Suite, log=print, part: Suite | None = None,
              score: bool = True) -> int:
    """Train what is missing (of ``part``, the ``--only`` rows, if given), score it, write
    the whole suite's tables; without ``score`` only train: each finished run keeps its
    checkpoint and gets its final weights as it ends, so that it can be scored by a later
    call here or, its folder moved without the checkpoint, elsewhere. Returns the number of
    failed runs."""
    benchmarks = test_sets(study) if score else None
    jobs = plan_jobs(study, suite if part is None else part)
    pending = [j for j in jobs if j.state in ("new", "resume")]
    failed = 0
    for job in jobs:
        if job.state == "fixed" and score:
            if score_job(study, job, benchmarks) is None:
                log(f"{job.name}: skipped (no weights at {study.a2n_weights} for x{study.scale})")
    torch.set_num_threads(study.threads_per_job())
    with StopRequest() as stop:
        failed += _train_pending(study, pending, benchmarks, stop, log)
    if not score:
        return failed
    torch.set_num_threads(usable_threads(study.threads_per_job() * study.jobs))  # training's
    # runs trained elsewhere first: the self-ensembles may need their final weights
    for job in sorted((j for j in jobs if j.state in ("trained", "ensemble")),
                      key=lambda j: j.state != "trained"):
        try:
            record = score_job(study, job, benchmarks)
        except TrainingError as exc:  # another worker is scoring it
            log(f"{job.name}: skipped ({exc})")
            continue
        if record is None:
            log(f"{job.name}: not scored yet ({job.row.ensemble_of.label} seed {job.seed} "
                f"has no final weights)")
        elif job.state == "trained":
            cells = ", ".join(f"{r['dataset']} {r['psnr']:.2f}" for r in record["results"])
            log(f"{job.name}: scored (trained elsewhere); {cells}")
        else:
            log(f"{job.name}: scored")
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
            # its weights, to travel without its checkpoint (a GPU's runs; a scoring that
            # outlasts the session resumes from them and its journal)
            write_final_weights(study, job)
            if benchmarks is None:
                log(f"{job.name}: trained in {time.monotonic() - started:.0f} s, not scored; "
                    f"final weights in {FINAL_WEIGHTS}")
                continue
            # scoring holds up the queue, so it may use every core no training is using
            torch.set_num_threads(scoring_threads(len(active) * study.threads_per_job()))
            record = score_job(study, job, benchmarks)
            cells = ", ".join(f"{r['dataset']} {r['psnr']:.2f}" for r in record["results"])
            log(f"{job.name}: done in {time.monotonic() - started:.0f} s; {cells}")
    return failed

