"""scripts/gpu_check.sh, the prepared check for a lent GPU, runs end to end (--dry-run: on the
CPU, tiny sizes) and writes its report."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, cli_env


@pytest.mark.slow
def test_gpu_check_dry_run_writes_a_report(tmp_path):
    env = cli_env({"OUT": str(tmp_path), "PYTHON": sys.executable})
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (tmp_path / "report.md").read_text()
    assert "(dry run, CPU)" in report
    rows = [line for line in report.splitlines() if line.startswith("| ") and "step" not in line]
    assert len(rows) == 4, report
    assert all(row.split("|")[2].strip() == "0" for row in rows), report
    assert json.loads((tmp_path / "nlsa_backward.json").read_text())["max_abs_diff"] <= 1e-5
    trains = [json.loads(line) for line in (tmp_path / "train.json").read_text().splitlines()]
    assert [(r["model"], r["amp"], r["device"]) for r in trains] == [("cclnn-t", "bf16", "cpu")]
    assert "fast_suite: {'tests': " in report and "'failures': 0" in report


def test_gpu_check_refuses_an_unknown_option(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--wet-run"],
                          capture_output=True, text=True, env=dict(os.environ, OUT=str(tmp_path)))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "gpu_check.sh: unknown option '--wet-run' (usage: gpu_check.sh [--dry-run])"]
    assert not (tmp_path / "report.md").exists()
