"""Scores a finished run's final weights (or a fixed method) on the test sets: ``metrics.json``.

A scoring can take hours (a self-ensembled RNAN-S scores every image 8 times), so each image's
score is appended to ``RUN/scoring.jsonl`` as it lands and an interrupted scoring picks up
where it stopped. The journal's first line fingerprints the weights and the way they are run;
a journal of other weights is started afresh. It is removed once ``metrics.json`` is written.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

import torch

from ..data.benchmark import BenchmarkSet, resolve_benchmark
from ..atomic import write_text_if_changed
from ..engine.checkpoint import BEST, LATEST, load_training_state
from ..engine.rundir import RunLock
from ..evaluate import ImageScore, evaluate
from ..inference import super_resolve
from ..models.registry import build_model, count_parameters
from ..resize import imresize
from ..weights import load_weights, read_record, save_weights
from . import AblationError
from .study import FINAL_WEIGHTS, Job, Study
from .suites import Suite


def test_sets(study: Study):
    return [BenchmarkSet(resolve_benchmark(d, study.data_root), study.scale,
                         name=Path(d).name) for d in study.datasets]


def score_job(study: Study, job: Job, benchmarks) -> Optional[dict]:
    """Score the final weights of a finished run (or a fixed method, or the self-ensemble of a
    run) and write metrics.json; None for a row that cannot be scored (yet): no weights here,
    another scale, a source run without final weights."""
    run = study.run_dir(job.name)
    row = job.row
    record: dict[str, Any] = {"run": job.name, "row": row.key, "model": row.model,
                              "options": dict(row.options), "scale": study.scale}
    if row.model == "bicubic":
        sr_fn = lambda lr: imresize(lr, study.scale)  # noqa: E731
        record["params"] = 0
        model = None
    else:
        model = build_model(row.model, study.scale, **dict(row.options))
        if row.ensemble_of is not None:
            source = study.run_dir(study.run_name(row.ensemble_of, job.seed))
            if not (source / FINAL_WEIGHTS).is_file():
                return None
            load_weights(model, source / FINAL_WEIGHTS)
            record.update(seed=job.seed, budget=study.budget, ensemble_of=source.name)
        elif row.trained and (run / LATEST).is_file():
            state = load_training_state(run / LATEST)
            model.load_state_dict(state["model"])
            record.update(seed=job.seed, budget=study.budget, **_training_facts(state))
        elif row.trained:  # trained elsewhere: its final weights travelled without a checkpoint
            load_weights(model, run / FINAL_WEIGHTS)
            trained = read_record(run / FINAL_WEIGHTS)
            record.update(seed=job.seed, budget=study.budget,
                          **{k: trained[k] for k in TRAINING_FACTS if k in trained})
        else:
            path = Path(study.a2n_weights)
            if study.scale != 2 or not path.is_file():
                return None
            load_weights(model, path)
            record["weights"] = str(path)
        record["params"] = count_parameters(row.model, study.scale, **dict(row.options))
        model.eval()
        ensemble = row.ensemble_of is not None
        sr_fn = lambda lr: super_resolve(model, lr, study.scale, ensemble=ensemble)  # noqa: E731
    run.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run)  # one scorer per run folder (two study workers may meet here)
    journal = ScoreJournal(run / ScoreJournal.NAME, _fingerprint(model, record))
    record["results"] = [
        evaluate(sr_fn, b, progress=False, known=journal.known(b.name),
                 on_image=lambda score, seconds, name=b.name: journal.add(name, score, seconds)
                 ).as_dict(per_image=True)
        for b in benchmarks]
    # seconds spent super-resolving and scoring, over every session it took: plans the "+" rows
    record["score_seconds"] = round(journal.seconds, 1)
    if row.trained and (run / LATEST).is_file():
        save_weights(model, run / FINAL_WEIGHTS, {"run": job.name, **_training_facts(state)})
    write_text_if_changed(run / "metrics.json", json.dumps(record, indent=1) + "\n")
    journal.path.unlink(missing_ok=True)
    if row.trained:  # the optimizer state is no longer needed; the weights are kept
        for name in (LATEST, BEST):
            (run / name).unlink(missing_ok=True)
    lock.release()
    return record


TRAINING_FACTS = ("iterations", "wall_seconds", "devices")  # metrics.json's, from the state


def _training_facts(state: dict) -> dict[str, Any]:
    facts = {"iterations": state["iteration"],
             "wall_seconds": round(state.get("elapsed_seconds", float("nan")), 1)}
    if "devices" in state:
        facts["devices"] = state["devices"]
    return facts


def write_final_weights(study: Study, job: Job) -> bool:
    """A run trained to its budget gets its final weights (``final.safetensors``, recording
    its iterations, wall time and devices), so that the folder can be scored elsewhere
    without its checkpoint (``cclnn ablate --train-only`` on a GPU machine); False for a run
    short of its budget."""
    run = study.run_dir(job.name)
    if not (run / LATEST).is_file():
        return False
    state = load_training_state(run / LATEST)
    if state["iteration"] < study.budget:
        return False
    model = build_model(job.row.model, study.scale, **dict(job.row.options))
    model.load_state_dict(state["model"])
    save_weights(model, run / FINAL_WEIGHTS, {"run": job.name, **_training_facts(state)})
    return True


def _fingerprint(model: Optional[torch.nn.Module], record: dict) -> str:
    """What the scores depend on: the weights, the network and how it is run."""
    h = hashlib.sha256(json.dumps({k: record[k] for k in ("model", "options", "scale")},
                                  sort_keys=True).encode())
    h.update(str(record.get("ensemble_of")).encode())
    if model is not None:
        for name, tensor in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class ScoreJournal:
    """The per-image scores of a scoring in progress, one JSON line each, flushed to disk as
    they land. A line cut short by a kill is ignored."""

    NAME = "scoring.jsonl"

    def __init__(self, path: Path, fingerprint: str):
        self.path = path
        self.seconds = 0.0
        self._known: dict[str, dict[str, ImageScore]] = {}
        text = path.read_text() if path.is_file() else ""
        lines = text.splitlines()
        if not lines or _json_or_none(lines[0]) != {"fingerprint": fingerprint}:
            path.write_text(json.dumps({"fingerprint": fingerprint}) + "\n")
            lines = []
        elif not text.endswith("\n"):  # a line cut short: the next one starts on its own
            with open(path, "a") as f:
                f.write("\n")
        for line in lines[1:]:
            entry = _json_or_none(line)
            try:
                self._remember(entry)
            except (KeyError, TypeError):  # not an entry (a cut line, a foreign one)
                pass

    @staticmethod
    def seconds_in(path: Path) -> float:
        """Seconds the journal at ``path`` records (0 without one), whatever weights it is of."""
        lines = path.read_text().splitlines()[1:] if path.is_file() else []
        return sum(e.get("seconds", 0.0) for e in map(_json_or_none, lines) if e is not None)

    def _remember(self, entry: dict) -> None:
        score = ImageScore(entry["image"], entry["psnr"], entry["ssim"])
        dataset, seconds = entry["dataset"], entry["seconds"]
        self._known.setdefault(dataset, {})[score.name] = score
        self.seconds += seconds

    def known(self, dataset: str) -> dict[str, ImageScore]:
        return dict(self._known.get(dataset, {}))

    def add(self, dataset: str, score: ImageScore, seconds: float) -> None:
        entry = {"dataset": dataset, "image": score.name, "psnr": score.psnr,
                 "ssim": score.ssim, "seconds": round(seconds, 3)}
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._remember(entry)


def _json_or_none(line: str) -> Optional[dict]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None



def read_metrics(path: Path) -> dict:
    """A finished run's metrics.json, or a one-line error naming it."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise AblationError(f"{path}: not valid JSON") from None


def collect(study: Study, suite: Suite) -> dict[str, list[dict]]:
    """row key -> the metrics.json records found for it (one per finished seed)."""
    found: dict[str, list[dict]] = {}
    for row in suite.rows:
        records = []
        for seed in (study.seeds if row.seeded else (None,)):
            path = study.run_dir(study.run_name(row, seed)) / "metrics.json"
            if path.is_file():
                records.append(read_metrics(path))
        found[row.key] = records
    return found


def values_of(records: list[dict], dataset: str, metric: str) -> list[float]:
    return [r[metric] for rec in records for r in rec["results"] if r["dataset"] == dataset]

