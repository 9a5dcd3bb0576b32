"""docs/experiments.md reports the committed study: its claims table is the committed claims
file's, its run counts are the committed runs', and the committed suite tables keep the
per-seed values that every claim's test is recomputed from."""
import json
import re
from pathlib import Path

from cclnn.experiments.suites import SUITES

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "experiments"
DOC = ROOT / "docs" / "experiments.md"


def _claim_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"\| Table \d \|", line)]


def _planned() -> tuple[set[str], set[str]]:
    trained, ensembles = set(), set()
    for suite in SUITES.values():
        for row in suite.rows:
            runs = {f"{row.key}_s{seed}" for seed in range(suite.seeds)}
            if row.trained:
                trained |= runs
            elif row.ensemble_of is not None:
                ensembles |= runs
    return trained, ensembles


def test_the_docs_claims_table_is_the_committed_claims_file():
    committed = _claim_rows((RESULTS / "claims_x2_b2000.md").read_text())
    assert len(committed) == sum(len(s.claims) for s in SUITES.values())
    section = DOC.read_text().split("## Results at the last sync", 1)[1].split("\n## ", 1)[0]
    assert _claim_rows(section) == committed


def test_the_docs_run_counts_are_the_committed_runs():
    overview = (RESULTS / "runs_x2_b2000.md").read_text()
    trained, ensembles = map(int, re.search(
        r"(\d+) trained runs and (\d+) self-ensembles scored", overview).groups())
    finished = [p.parent.name for p in RESULTS.glob("runs/*_x2_b2000_s*/metrics.json")]
    assert trained + ensembles == len(finished)
    planned_trained, planned_ensembles = _planned()
    assert (len(planned_trained), len(planned_ensembles)) == (62, 12)
    line = re.search(r"Last sync: [^,]+, (\d+) of (\d+) training runs and (\d+) of (\d+) "
                     r"self-ensembles", " ".join(DOC.read_text().split()))
    assert line, "docs/experiments.md: no 'Last sync: ...' line"
    assert tuple(map(int, line.groups())) == (trained, len(planned_trained), ensembles,
                                              len(planned_ensembles))


def test_the_committed_suite_tables_keep_every_seed():
    for name in SUITES:
        table = json.loads((RESULTS / f"{name}_x2_b2000.json").read_text())
        for row in table["rows"]:
            seeds = row["seeds"]
            for dataset, values in row["datasets"].items():
                per_seed = values["psnr_per_seed"]
                assert len(per_seed) == len(seeds), (name, row["key"], dataset)
                if len(per_seed) > 1:
                    mean = sum(per_seed) / len(per_seed)
                    assert abs(mean - values["psnr"]) < 1e-9, (name, row["key"], dataset)
