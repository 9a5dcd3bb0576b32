"""The paper's claims tested on the runs, with seeds as the unit.

A claim says every row of ``better`` beats every row of ``worse`` on some test sets. Each such
pair on each set is a t-test on the rows' per-seed PSNR: paired where the two runs of a seed
share their initial weights and batches (the same network, differing only in the loss), else
Welch's; a row without seeds (bicubic, official weights) is a fixed number. The p-values of
all a claim's tests are Holm-corrected together. The claim *holds* when every test is
significant in its favour, *is contradicted* when any is significant against it, and is
*undecided* otherwise (or when a row has fewer than two seeds).

Per-image differences within one seed (each test image a pair) are reported beside it: they
describe the trained instances, not the architectures, and decide nothing.
"""
from __future__ import annotations

from typing import Optional

from ..stats import ALPHA, Comparison, compare, compare_with_value, holm
from .suites import Claim, Row

LOSS_OPTIONS = frozenset({"aux_loss", "contrast_ratio", "contrast_margin"})


def shares_initialisation(a: Row, b: Row) -> bool:
    """Runs of one seed start from the same weights and see the same batches: the same network
    with the same parameters (only the loss, its options or its weight may differ)."""
    if not (a.trained and b.trained) or a.model != b.model:
        return False
    def architecture(row):
        return {k: v for k, v in row.options.items() if k not in LOSS_OPTIONS}
    return architecture(a) == architecture(b)


def psnr_by_seed(records: list[dict], dataset: str) -> dict[Optional[int], float]:
    return {rec.get("seed"): r["psnr"] for rec in records for r in rec["results"]
            if r["dataset"] == dataset}


def _per_image(records_a: list[dict], records_b: list[dict], dataset: str) -> list[dict]:
    """Per seed both rows have: the paired t-test over the test images."""
    def images(records):
        return {rec.get("seed"): r.get("per_image", {}) for rec in records for r in rec["results"]
                if r["dataset"] == dataset}
    by_a, by_b = images(records_a), images(records_b)
    out = []
    for seed in sorted(s for s in by_a if s in by_b and s is not None):
        names = sorted(set(by_a[seed]) & set(by_b[seed]))
        if len(names) < 2:
            continue
        c = compare([by_a[seed][n][0] for n in names], [by_b[seed][n][0] for n in names],
                    paired=True)
        out.append({"seed": seed, "images": len(names), "diff": round(c.diff, 4),
                    "p_value": c.p_value})
    return out


def test_pair(row_a: Row, row_b: Row, records_a: list[dict], records_b: list[dict],
              dataset: str) -> Optional[Comparison]:
    """The t-test of 'row_a beats row_b' on ``dataset``; None with fewer than two seeds."""
    a, b = psnr_by_seed(records_a, dataset), psnr_by_seed(records_b, dataset)
    if not a or not b:
        return None
    if not row_b.seeded and row_a.seeded and len(a) > 1:
        return compare_with_value(list(a.values()), next(iter(b.values())))
    if not row_a.seeded and row_b.seeded and len(b) > 1:
        return compare_with_value(list(b.values()), next(iter(a.values()))).negated()
    common = sorted(s for s in a if s in b)
    if shares_initialisation(row_a, row_b) and len(common) > 1:
        return compare([a[s] for s in common], [b[s] for s in common], paired=True)
    if len(a) > 1 and len(b) > 1:
        return compare(list(a.values()), list(b.values()))
    return None


def check_claim(claim: Claim, rows: dict[str, Row], found: dict[str, list[dict]]) -> dict:
    """Every pair's test, Holm-adjusted over the claim, and the verdict (see the module)."""
    tests = []
    for dataset in claim.datasets:
        for a in claim.better:
            for b in claim.worse:
                c = test_pair(rows[a], rows[b], found.get(a, []), found.get(b, []), dataset)
                entry = {"dataset": dataset, "better": a, "worse": b}
                if c is None:
                    entry["test"] = "too few seeds"
                else:
                    entry.update(test=c.test, n_a=c.n_a, n_b=c.n_b, diff=round(c.diff, 4),
                                 ci95=[round(c.ci95[0], 4), round(c.ci95[1], 4)],
                                 p_value=c.p_value, detectable=round(c.detectable, 4))
                entry["per_image"] = _per_image(found.get(a, []), found.get(b, []), dataset)
                tests.append(entry)
    done = [t for t in tests if "p_value" in t]
    for t, p in zip(done, holm([t["p_value"] for t in done])):
        t["p_holm"] = p
    significant = [t for t in done if t["p_holm"] < ALPHA]
    if any(t["diff"] < 0 for t in significant):
        verdict = "contradicted"
    elif len(significant) == len(tests) and all(t["diff"] > 0 for t in significant):
        verdict = "holds"
    else:
        verdict = "undecided" + (" (too few seeds)" if len(done) < len(tests) else "")
    return {"claim": claim.text, "verdict": verdict, "alpha": ALPHA, "tests": tests}
