"""A suite's table (markdown and JSON, with the claims' verdicts) and its validation plot."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Optional

from ..analysis import save_figure
from ..analysis.plots import band_figure
from ..atomic import write_text_if_changed
from ..engine.logs import VAL_FIELDS, VAL_LOG, read_log
from ..models.registry import model_config
from ..stats import ALPHA, POWER
from .scoring import collect, values_of
from .study import Study
from .suites import Suite
from .verdicts import check_claim


def _summary(values: list[float]) -> tuple[float, float]:
    """(mean, sample standard deviation) over the seeds; the deviation is 0 for one seed."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _wall_kind(record: dict) -> str:
    """'gpu' for a run that trained on a GPU (in part or whole), else 'cpu': their wall times
    differ by a hundredfold, so a table never averages them together. Runs made before the
    devices were recorded trained on the CPU."""
    return "gpu" if any(d.startswith("cuda") for d in record.get("devices", [])) else "cpu"


def _attention_width(config) -> Optional[tuple[int, int]]:
    """(hidden units, reduction) of a network's channel attention; None without one."""
    r = getattr(config, "cca_reduction", None)
    if r is not None and getattr(config, "branches", "both") == "nonlocal":
        r = None
    if r is None and type(config).__name__ == "RCANConfig":
        r = config.reduction
    return (config.channels // r, r) if r else None


def study_facts(suite: Suite) -> str:
    """What a reader needs to know of the study networks: attention widths, value ranges."""
    widths, ranges = {}, {}
    for row in suite.rows:
        if not row.trained:
            continue
        config = model_config(row.model, **dict(row.options))
        if (width := _attention_width(config)) is not None:
            widths[row.label] = width
        if hasattr(config, "rgb_range"):
            ranges.setdefault(f"[0, {config.rgb_range:g}]", []).append(row.label)
    facts = [f"{label}: channel attention with {w} hidden units (r = {r})"
             for label, (w, r) in widths.items()]
    facts += [f"{', '.join(labels)} in {rng}" for rng, labels in ranges.items()]
    return "Study networks: " + "; ".join(facts) + "." if facts else ""


def _row_lines(suite: Suite, found, datasets, summary, wall_total) -> list[str]:
    lines = ["| Network | Params | " + " | ".join(f"{d} PSNR / SSIM" for d in datasets)
             + " | Seeds | Wall time / run |",
             "|---|---:|" + "---:|" * len(datasets) + "---:|---:|"]
    for row in suite.rows:
        records = found[row.key]
        if not records:
            lines.append(f"| {row.label} | | " + " | ".join("-" for _ in datasets)
                         + " | 0 | |")
            continue
        cells, entry = [], {"key": row.key, "label": row.label, "params": records[0]["params"],
                            "seeds": [r.get("seed") for r in records], "datasets": {}}
        for d in datasets:
            psnrs, ssims = values_of(records, d, "psnr"), values_of(records, d, "ssim")
            p_mean, p_sd = _summary(psnrs)
            s_mean, s_sd = _summary(ssims)
            spread = f" ± {p_sd:.2f}" if len(records) > 1 else ""
            cells.append(f"{p_mean:.2f}{spread} / {s_mean:.4f}")
            entry["datasets"][d] = {"psnr": p_mean, "psnr_sd": p_sd,
                                    "psnr_range": max(psnrs) - min(psnrs), "ssim": s_mean,
                                    "ssim_sd": s_sd, "psnr_per_seed": psnrs}
        walls = {"cpu": [], "gpu": []}
        for r in records:
            if "wall_seconds" in r:
                walls[_wall_kind(r)].append(r["wall_seconds"])
        per_kind = [f"{statistics.fmean(w) / 60:.0f} min" + (" (GPU)" if kind == "gpu" else "")
                    for kind, w in walls.items() if w]
        for kind, w in walls.items():
            wall_total[kind] += sum(w)
        params = f"{records[0]['params'] / 1e6:.3f} M" if records[0]["params"] else "-"
        seeds = str(len(records)) if row.seeded else "-"
        lines.append(f"| {row.label} | {params} | " + " | ".join(cells)
                     + f" | {seeds} | {'; '.join(per_kind) or '-'} |")
        summary["rows"].append(entry)
    return lines


def _claim_lines(suite: Suite, found, summary) -> list[str]:
    rows = {row.key: row for row in suite.rows}
    lines = ["Claims: each pair a t-test on the per-seed PSNR (paired where the runs of a seed "
             "share initial weights and batches, else Welch's; a row without seeds is a fixed "
             f"number), Holm-corrected within the claim at alpha = {ALPHA}. Detectable: the "
             f"true difference the test would find with {POWER:.0%} power. Per image: the "
             "paired test over the test images within one seed - these trained instances, not "
             "the architectures.", ""]
    for claim in suite.claims:
        result = check_claim(claim, rows, found)
        summary["claims"].append(result)
        lines += [f"- Paper: {claim.text}. Here: {result['verdict']}.", "",
                  "| Set | Pair | Test | Seeds | Difference (dB) | 95 % CI | p | p (Holm) "
                  "| Detectable (dB) | Per image (instances) |",
                  "|---|---|---|---|---:|---|---:|---:|---:|---|"]
        for t in result["tests"]:
            pair = f"{rows[t['better']].label} > {rows[t['worse']].label}"
            images = ", ".join(f"s{x['seed']} {x['diff']:+.3f} (p {x['p_value']:.2g})"
                               for x in t["per_image"]) or "-"
            if "p_value" not in t:
                lines.append(f"| {t['dataset']} | {pair} | {t['test']} | | | | | | | {images} |")
                continue
            lines.append(f"| {t['dataset']} | {pair} | {t['test']} | {t['n_a']} / {t['n_b']} | "
                         f"{t['diff']:+.3f} | [{t['ci95'][0]:+.3f}, {t['ci95'][1]:+.3f}] | "
                         f"{t['p_value']:.3g} | {t['p_holm']:.3g} | {t['detectable']:.3f} | "
                         f"{images} |")
        lines.append("")
    return lines


def table_markdown(study: Study, suite: Suite, found: dict[str, list[dict]]) -> tuple[str, dict]:
    datasets = [Path(d).name for d in study.datasets]
    lines = [f"### {suite.title} (x{study.scale}, {study.budget} iterations per run)", ""]
    if study.overrides:  # a table must say how it differs from the suite's protocol
        lines += ["Every trained run with " + ", ".join(f"`{o}`" for o in study.overrides)
                  + " (`--set`).", ""]
    facts = study_facts(suite)
    lines += [facts, ""] if facts else []
    summary: dict[str, Any] = {"suite": suite.name, "scale": study.scale, "budget": study.budget,
                               "overrides": list(study.overrides), "rows": [], "claims": []}
    wall_total = {"cpu": 0.0, "gpu": 0.0}
    lines += _row_lines(suite, found, datasets, summary, wall_total)
    lines += ["", "± is the sample standard deviation of the PSNR over the seeds.", ""]
    lines += _claim_lines(suite, found, summary)
    gpu = (f", plus {wall_total['gpu'] / 60:.0f} min on a GPU (runs marked GPU)"
           if wall_total["gpu"] else "")
    lines += [f"Training wall time of the runs found: {wall_total['cpu'] / 3600:.2f} h{gpu}."]
    summary["wall_hours"] = wall_total["cpu"] / 3600
    if wall_total["gpu"]:
        summary["gpu_wall_hours"] = wall_total["gpu"] / 3600
    return "\n".join(lines) + "\n", summary


def validation_curves(study: Study, suite: Suite) -> list[tuple[str, list[dict]]]:
    """(label, [{iteration, mean, low, high}]) of validation PSNR over the seeds of the
    finished runs (as the table: an interrupted run's first points would skew the mean)."""
    curves = []
    for row in suite.rows:
        if not row.trained:
            continue
        by_iteration: dict[int, list[float]] = {}
        for seed in study.seeds:
            run = study.run_dir(study.run_name(row, seed))
            path = run / VAL_LOG
            if not (path.is_file() and (run / "metrics.json").is_file()):
                continue
            for rec in read_log(path, VAL_FIELDS, ("iteration", "psnr")):
                by_iteration.setdefault(int(rec["iteration"]), []).append(rec["psnr"])
        points = [{"iteration": it, "mean": statistics.fmean(v), "low": min(v), "high": max(v)}
                  for it, v in sorted(by_iteration.items())]
        if points:
            curves.append((row.label, points))
    return curves


def validation_set(study: Study, suite: Suite) -> str:
    """The name the runs' val_log.csv gives their validation images (Set5, or a held-out
    split such as SunHays80[71-80])."""
    for row in suite.rows:
        for seed in study.seeds if row.trained else ():
            path = study.run_dir(study.run_name(row, seed)) / VAL_LOG
            if path.is_file():
                for rec in read_log(path, VAL_FIELDS, ("iteration",)):
                    return rec["dataset"]
    return "no"


def write_tables(study: Study, suite: Suite) -> Path:
    found = collect(study, suite)
    text, summary = table_markdown(study, suite, found)
    stem = study.out / f"{suite.name}_x{study.scale}_b{study.budget}"
    write_text_if_changed(stem.with_suffix(".md"), text)
    write_text_if_changed(stem.with_suffix(".json"), json.dumps(summary, indent=1) + "\n")
    curves = validation_curves(study, suite)
    if curves:
        fig = band_figure(curves, f"{suite.title} - {validation_set(study, suite)} "
                                  f"x{study.scale} validation")
        save_figure(fig, stem.with_suffix(".png"))
    return stem.with_suffix(".md")

