import json
import subprocess
import sys

import cclnn
from cclnn.cli import main
from cclnn.models import count_parameters


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == set(cclnn.list_models())
    assert all(set(r) == {"name", "scale", "params"} for r in rows)
    lookup = {(r["name"], r["scale"]): r["params"] for r in rows}
    assert lookup[("nlsn", 3)] == count_parameters("nlsn", 3)
    assert len(rows) == 3 * len(cclnn.list_models())


def test_models_table(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "| cclnn | 48.068 M | 51.019 M | 50.429 M |" in out


def test_errors_are_one_line_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "cclnn.cli", "demo", "--model", "cclnn-x"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "unknown model 'cclnn-x'" in proc.stderr


def test_demo_runs(capsys):
    assert main(["demo", "--model", "edsr-baseline", "--repeat", "1"]) == 0
    assert "-> output 256x256" in capsys.readouterr().out
