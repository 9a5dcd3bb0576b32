"""Scores a finished run's final weights (or a fixed method) on the test sets: ``metrics.json``."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

from ..data.benchmark import BenchmarkSet, resolve_benchmark
from ..atomic import write_text_if_changed
from ..engine.checkpoint import BEST, LATEST, load_training_state
from ..evaluate import evaluate
from ..inference import super_resolve
from ..models.registry import build_model, count_parameters
from ..resize import imresize
from ..weights import load_weights, save_weights
from . import AblationError
from .study import Job, Study
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
    else:
        model = build_model(row.model, study.scale, **dict(row.options))
        if row.ensemble_of is not None:
            source = study.run_dir(study.run_name(row.ensemble_of, job.seed))
            if not (source / "final.safetensors").is_file():
                return None
            load_weights(model, source / "final.safetensors")
            record.update(seed=job.seed, budget=study.budget, ensemble_of=source.name)
        elif row.trained:
            state = load_training_state(run / LATEST)
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
        ensemble = row.ensemble_of is not None
        sr_fn = lambda lr: super_resolve(model, lr, study.scale, ensemble=ensemble)  # noqa: E731
    start = time.perf_counter()
    record["results"] = [evaluate(sr_fn, b, progress=False).as_dict(per_image=True)
                         for b in benchmarks]
    record["score_seconds"] = round(time.perf_counter() - start, 1)  # plans the "+" rows
    run.mkdir(parents=True, exist_ok=True)
    if row.trained:
        save_weights(model, run / "final.safetensors", {"run": job.name})
    write_text_if_changed(run / "metrics.json", json.dumps(record, indent=1) + "\n")
    if row.trained:  # the optimizer state is no longer needed; the weights are kept
        for name in (LATEST, BEST):
            (run / name).unlink(missing_ok=True)
    return record



def collect(study: Study, suite: Suite) -> dict[str, list[dict]]:
    """row key -> the metrics.json records found for it (one per finished seed)."""
    found: dict[str, list[dict]] = {}
    for row in suite.rows:
        records = []
        for seed in (study.seeds if row.seeded else (None,)):
            path = study.run_dir(study.run_name(row, seed)) / "metrics.json"
            if path.is_file():
                try:
                    records.append(json.loads(path.read_text()))
                except json.JSONDecodeError:
                    raise AblationError(f"{path}: not valid JSON") from None
        found[row.key] = records
    return found


def values_of(records: list[dict], dataset: str, metric: str) -> list[float]:
    return [r[metric] for rec in records for r in rec["results"] if r["dataset"] == dataset]

