"""The paper's claims checked against the runs: margins against the seed-to-seed spread."""
from __future__ import annotations

import json
import statistics
from typing import Optional

from .scoring import values_of
from .study import Study
from .suites import Claim


def seed_range(study: Study, key: str, dataset: str) -> Optional[float]:
    """Seed-to-seed PSNR range of one row at this budget over every seed on disk (a suite run
    with ``--seeds 0`` still knows the spread its rows showed in another suite); None below two."""
    values = []
    for path in sorted((study.out / "runs").glob(
            f"{key}_x{study.scale}_b{study.budget}_s*/metrics.json")):
        values += values_of([json.loads(path.read_text())], dataset, "psnr")
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
            values = values_of(paired.get(key, []), dataset, "psnr")
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

