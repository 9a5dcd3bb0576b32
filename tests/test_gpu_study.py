"""scripts/gpu_study.sh (the study's remaining runs trained on a lent GPU) and
scripts/import_gpu_runs.sh, end to end on the CPU (QUICK=1): trained there, packed without
checkpoints, unpacked here, scored by `cclnn ablate` without training again."""
import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from conftest import ROOT, cli_env, run_cli, tiny_image_folder

QUICK_SETS = ["--set", "data.patch_size=8", "--set", "data.batch_size=2", "--set",
              "data.repeat=1", "--set", "model.options.chunk_size=16", "--set", "device=cpu",
              "--hold-out", "1"]


@pytest.mark.slow  # two tiny trainings in subprocesses, one scoring: ~25 s
def test_gpu_runs_travel_without_checkpoints_and_are_scored_here(tmp_path):
    if not (ROOT.parent / "shared" / "data" / "train").is_dir():
        pytest.skip("needs ../shared/data/train")
    out, here = tmp_path / "out", tmp_path / "here"  # the GPU machine's $OUT; the study here
    results = here / "results" / "experiments"  # where both the GPU run and the study put it
    env = cli_env({"OUT": str(out), "QUICK": "1", "PYTHON": sys.executable,
                   "RESULTS": str(results)})
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_study.sh")], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (out / "gpu_study.log").read_text()
    assert "table2: exit 0" in log and "packed 2 finished run(s) into 1 tar(s)" in log
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["gpu_study.log",
                                                                   "study_runs_0.tar"]
    with tarfile.open(out / "study_runs_0.tar") as tar:
        names = tar.getnames()
    assert "cclnn-s_x2_b2_s0/final.safetensors" in names
    assert not [n for n in names if n.endswith(".pt")]  # no checkpoint travels

    # the run folders as they travel: final weights, config and logs replace them
    imported = subprocess.run(["bash", str(ROOT / "scripts" / "import_gpu_runs.sh"), str(out),
                               str(here)], capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.count("imported (trained on the GPU") == 2

    test = tiny_image_folder(tmp_path / "Tiny" / "HR", 2, 24, 20, np.random.default_rng(0))
    scored = run_cli(["ablate", "table2", "--budget", "2", "--seeds", "0", "--only", "cclnn-s",
                      "--out", str(results), "--datasets",
                      str(test.parent), "--data-root", str(ROOT.parent / "shared" / "data"),
                      *QUICK_SETS], check=False)
    assert scored.returncode == 0, scored.stderr
    assert "cclnn-s_x2_b2_s0: scored (trained elsewhere)" in scored.stdout
    assert "training" not in scored.stdout
    run = results / "runs" / "cclnn-s_x2_b2_s0"
    assert not (run / "latest.pt").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["iterations"] == 2 and metrics["devices"]
