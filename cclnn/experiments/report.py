"""A suite's table (markdown and JSON, with the claims' verdicts) and its validation plot."""
from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

from ..analysis import save_figure
from ..analysis.plots import band_figure
from ..engine.config import write_text_if_changed
from .scoring import collect, values_of
from .study import Study
from .suites import Suite
from .verdicts import check_claim


def _summary(values: list[float]) -> tuple[float, float]:
    """(mean, range) over the seeds; the range is 0 for one seed."""
    return statistics.fmean(values), max(values) - min(values)



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
            p_mean, p_range = _summary(values_of(records, d, "psnr"))
            s_mean, s_range = _summary(values_of(records, d, "ssim"))
            spread = f" ± {p_range / 2:.2f}" if len(records) > 1 else ""
            cells.append(f"{p_mean:.2f}{spread} / {s_mean:.4f}")
            entry["datasets"][d] = {"psnr": p_mean, "psnr_range": p_range, "ssim": s_mean,
                                    "ssim_range": s_range,
                                    "psnr_per_seed": values_of(records, d, "psnr")}
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
        fig = band_figure(curves, f"{suite.title} - Set5 x{study.scale} validation")
        save_figure(fig, stem.with_suffix(".png"))
    return stem.with_suffix(".md")

