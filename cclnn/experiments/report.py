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
from ..config import ConfigError
from ..engine.train_config import load_config
from ..stats import ALPHA, POWER
from . import AblationError
from .scoring import collect, read_metrics, values_of
from .study import Study
from .suites import SUITES, Row, Suite
from .verdicts import check_claim


def _summary(values: list[float]) -> tuple[float, float]:
    """(mean, sample standard deviation) over the seeds; the deviation is 0 for one seed."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _wall_kind(record: dict) -> str:
    """'gpu' for a run that trained on a GPU (in part or whole), else 'cpu': their wall times
    differ by a hundredfold, so a table never averages them together. Runs made before the
    devices were recorded trained on the CPU."""
    return "gpu" if any(d.startswith("cuda") for d in record.get("devices", [])) else "cpu"


def recorded_options(study: Study, row: Row) -> Optional[dict]:
    """The model options a finished run of ``row`` wrote in its config.yaml: what it trained
    with, whatever the registry's defaults are now; None without a readable one."""
    for seed in study.seeds:
        run = study.run_dir(study.run_name(row, seed))
        path = run / "config.yaml"
        if path.is_file() and (run / "metrics.json").is_file():
            try:
                return dict(load_config(path).model.options)
            except ConfigError:
                return None
    return None


def _attention_width(model: str, options: dict) -> Optional[tuple[int, int]]:
    """(hidden units, reduction) of the channel attention the options record; None when the
    network has none or the run did not write it down."""
    key = ("cca_reduction" if model.startswith("cclnn") else
           "reduction" if model.startswith("rcan") else None)
    if key is None or options.get("branches") == "nonlocal":
        return None
    if key not in options or "channels" not in options:
        return None
    return options["channels"] // options[key], options[key]


def study_facts(study: Study, suite: Suite) -> str:
    """What a reader needs to know of the study networks, as their runs recorded it: channel
    attention widths and value ranges."""
    widths: dict[tuple[int, int], list[str]] = {}
    ranges: dict[str, list[str]] = {}
    for row in suite.rows:
        options = recorded_options(study, row) if row.trained else None
        if options is None:
            continue
        if (width := _attention_width(row.model, options)) is not None:
            widths.setdefault(width, []).append(row.label)
        if "rgb_range" in options:
            ranges.setdefault(f"[0, {float(options['rgb_range']):g}]", []).append(row.label)
    facts = [f"channel attention with {w} hidden units (r = {r}): {', '.join(labels)}"
             for (w, r), labels in widths.items()]
    facts += [f"in {rng}: {', '.join(labels)}" for rng, labels in ranges.items()]
    return "Study networks, as their runs recorded them: " + "; ".join(facts) + "." \
        if facts else ""


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
    facts = study_facts(study, suite)
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


def claims_overview(out: Path, scale: int, budget: int) -> Optional[str]:
    """One line per claim of every suite table written in ``out`` at ``scale`` and
    ``budget``: its verdict, how its pairs came out, their Holm p-values and the largest
    difference the tests could have missed (None when no table is there yet)."""
    lines = [f"# The paper's claims at x{scale}, {budget} iterations per run", "",
             f"Collected from the suite tables beside this file (`*_x{scale}_b{budget}.json`), "
             f"which give every pair's test. Pairs: significant in the claim's favour / against "
             f"it / neither / not testable yet, at alpha = {ALPHA} after Holm's correction "
             f"within the claim. Detectable: the largest over the claim's pairs of the true "
             f"difference its test would find with {POWER:.0%} power.", "",
             "| Table | Paper's claim | Verdict | Pairs (for / against / neither / untested) "
             "| p (Holm) | Detectable (dB) |", "|---|---|---|---|---|---:|"]
    found = False
    for name, suite in SUITES.items():
        path = out / f"{name}_x{scale}_b{budget}.json"
        if not path.is_file():
            continue
        found = True
        for claim in json.loads(path.read_text())["claims"]:
            tested = [t for t in claim["tests"] if "p_holm" in t]
            significant = [t for t in tested if t["p_holm"] < claim["alpha"]]
            against = sum(t["diff"] < 0 for t in significant)
            p_holm = sorted(t["p_holm"] for t in tested)
            span = (f"{p_holm[0]:.2g}" if len(p_holm) == 1 else
                    f"{p_holm[0]:.2g} - {p_holm[-1]:.2g}") if p_holm else "-"
            detectable = (f"{max(t['detectable'] for t in tested):.3f}" if tested else "-")
            lines.append(f"| {suite.title.split(':')[0]} | {claim['claim']} | "
                         f"{claim['verdict']} | {len(significant) - against} / {against} / "
                         f"{len(tested) - len(significant)} / "
                         f"{len(claim['tests']) - len(tested)} | {span} | {detectable} |")
    return "\n".join(lines) + "\n" if found else None


def runs_overview(out: Path, scale: int, budget: int) -> Optional[str]:
    """One line per finished run in ``out/runs`` at ``scale`` and ``budget`` (every suite's):
    its seed, PSNR on each set, training length and wall time, and scoring time; so that a
    study's progress and each run's numbers are read from one file (None when none is
    finished)."""
    records = []
    tail = f"_x{scale}_b{budget}_s"
    for path in (out / "runs").glob(f"*{tail}*/metrics.json"):
        row, _, seed = path.parent.name.rpartition(tail)
        if not seed.isdigit():
            continue
        records.append((row, int(seed), read_metrics(path)))
    if not records:
        return None
    records.sort(key=lambda found: found[:2])
    sets = list(dict.fromkeys(r["dataset"] for *_, rec in records for r in rec.get("results", [])))
    trained = [rec for *_, rec in records if not rec.get("ensemble_of")]
    lines = [f"# The finished runs at x{scale}, {budget} iterations per run", "",
             f"{len(trained)} trained runs and {len(records) - len(trained)} self-ensembles "
             f"scored, from `runs/*/metrics.json` beside this file. Training: iterations and "
             f"wall time as the run recorded them; scoring: seconds summed over the images; `-` "
             f"where the code that made the run did not record it.", "",
             "| Run | Seed | " + " | ".join(f"{d} PSNR / SSIM" for d in sets)
             + " | Iterations | Training (min) | Scoring (s) |",
             "|---|---:|" + "---:|" * len(sets) + "---:|---:|---:|"]
    for row, seed, rec in records:
        by_set = {r["dataset"]: r for r in rec.get("results", [])}
        cells = [f"{by_set[d]['psnr']:.2f} / {by_set[d]['ssim']:.4f}" if d in by_set else "-"
                 for d in sets]
        if rec.get("ensemble_of"):
            training = f"x8 views of {rec['ensemble_of']}"
            iterations = "-"
        else:
            iterations = str(rec.get("iterations", "-"))
            wall = rec.get("wall_seconds")
            training = ("-" if wall is None else
                        f"{wall / 60:.0f} ({', '.join(rec.get('devices', ['cpu']))})")
        score = "-" if rec.get("score_seconds") is None else f"{rec['score_seconds']:.0f}"
        lines.append(f"| {row} | {seed} | " + " | ".join(cells)
                     + f" | {iterations} | {training} | {score} |")
    return "\n".join(lines) + "\n"


def write_tables(study: Study, suite: Suite, require_runs: bool = False) -> Path:
    """The suite's table (.md, .json, .png) and the overviews of claims and runs; with
    ``require_runs``, none without a finished run of the suite (a mistyped --out or --budget)."""
    found = collect(study, suite)
    if require_runs and not any(found.values()):
        raise AblationError(f"{study.out}: no finished run of {suite.name} at x{study.scale}, "
                            f"{study.budget} iterations, seeds "
                            f"{' '.join(map(str, study.seeds))} (no metrics.json); check --out, "
                            f"--budget, --seeds and --scale")
    text, summary = table_markdown(study, suite, found)
    stem = study.out / f"{suite.name}_x{study.scale}_b{study.budget}"
    write_text_if_changed(stem.with_suffix(".md"), text)
    write_text_if_changed(stem.with_suffix(".json"), json.dumps(summary, indent=1) + "\n")
    curves = validation_curves(study, suite)
    if curves:
        fig = band_figure(curves, f"{suite.title} - {validation_set(study, suite)} "
                                  f"x{study.scale} validation")
        save_figure(fig, stem.with_suffix(".png"))
    overview = claims_overview(study.out, study.scale, study.budget)
    if overview:
        write_text_if_changed(study.out / f"claims_x{study.scale}_b{study.budget}.md", overview)
    runs = runs_overview(study.out, study.scale, study.budget)
    if runs:
        write_text_if_changed(study.out / f"runs_x{study.scale}_b{study.budget}.md", runs)
    return stem.with_suffix(".md")

