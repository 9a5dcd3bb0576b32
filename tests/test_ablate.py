"""cclnn ablate: suites, run configs, resumable execution, tables and the claim verdicts."""
import dataclasses
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from cclnn.data.images import write_image
from cclnn.engine.ablate import (SUITES, AblationError, Claim, Study, check_claim, collect,
                                 estimate, only_rows, plan_jobs, run_config, write_tables)
from cclnn.engine.config import config_from_dict

from conftest import ROOT, cli_env, run_cli, tiny_image


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    train = tmp_path / "train"
    train.mkdir()
    for i in range(3):
        write_image(train / f"t{i}.png", tiny_image(5, 5, rng, block=8))
    test = tmp_path / "Tiny" / "HR"
    test.mkdir(parents=True)
    for i in range(2):
        write_image(test / f"v{i}.png", tiny_image(24, 20, rng))
    return train, test.parent


def ablate(args, env_extra=None):
    return run_cli(["ablate", *args], env_extra, check=False)


TINY = ["--hold-out", "1", "--set", "data.patch_size=8", "--set", "data.batch_size=2", "--set", "data.repeat=1",
        "--set", "model.options.chunk_size=16", "--set", "device=cpu"]


@pytest.mark.slow
def test_suite_trains_scores_resumes_and_skips(tmp_path, data):
    train, test = data
    out = tmp_path / "out"
    args = ["table2", "--budget", "4", "--seeds", "0", "--out", str(out), "--train", str(train),
            "--datasets", str(test), "--jobs", "2", *TINY, "--set", f"val.dataset={test}"]
    # every run is killed before its 4th iteration: the command fails, checkpoints remain
    first = ablate(args, {"CCLNN_FAULT": "kill@iteration:4"})
    assert first.returncode == 1, first.stderr
    assert "3 run(s) failed" in first.stderr
    runs = sorted((out / "runs").iterdir())
    assert [r.name for r in runs] == ["cclnn-s-nsparse_x2_b4_s0", "cclnn-s-tsparse_x2_b4_s0",
                                      "cclnn-s_x2_b4_s0"]
    assert all((r / "latest.pt").is_file() and not (r / "metrics.json").exists() for r in runs)

    second = ablate(args)
    assert second.returncode == 0, second.stderr
    for run in runs:
        log = (run / "console.log").read_text()
        assert "iterations 3 -> 4" in log  # resumed, not restarted
        iterations = [line.split(",")[0] for line in
                      (run / "train_log.csv").read_text().splitlines()[1:]]
        assert iterations == ["1", "2", "3", "4"]
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["iterations"] == 4 and metrics["seed"] == 0
        assert metrics["results"][0]["dataset"] == "Tiny" and metrics["results"][0]["images"] == 2
        assert (run / "final.safetensors").is_file() and not (run / "latest.pt").exists()
        assert (out / "configs" / f"{run.name}.yaml").is_file()
    table = (out / "table2_x2_b4.md").read_text()
    assert "CCLNN-S-TSparse" in table and "Paper: NSparse beats TSparse" in table
    assert "### Table 2" in second.stdout
    assert (out / "table2_x2_b4.png").stat().st_size > 1000

    mtimes = [(r / "metrics.json").stat().st_mtime_ns for r in runs]
    third = ablate(args)  # everything done: nothing is trained again
    assert third.returncode == 0 and "training" not in third.stdout
    assert mtimes == [(r / "metrics.json").stat().st_mtime_ns for r in runs]

    other = ablate(args[:-2] + ["--set", "optim.lr=1e-3", "--set", f"val.dataset={test}"])
    assert other.returncode == 2
    assert "made with a different config" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_sigterm_stops_the_suite_with_every_running_run_checkpointed(tmp_path, data):
    train, test = data
    out = tmp_path / "out"
    args = ["table2", "--budget", "100000", "--seeds", "0", "--out", str(out), "--train",
            str(train), "--datasets", str(test), "--jobs", "2", *TINY]
    env = cli_env()
    proc = subprocess.Popen([sys.executable, "-m", "cclnn", "ablate", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logs = [out / "runs" / name / "train_log.csv"
            for name in ("cclnn-s_x2_b100000_s0", "cclnn-s-tsparse_x2_b100000_s0")]
    deadline = time.monotonic() + 120
    while not all(p.is_file() and len(p.read_text().splitlines()) > 1 for p in logs):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == [
        "cclnn ablate: interrupted; repeat the command to resume the unfinished runs from "
        "their checkpoints"]
    for log in logs:
        run = log.parent
        assert f"{run.name}: stopped, checkpoint saved" in stdout
        iteration = torch.load(run / "latest.pt", weights_only=True)["iteration"]
        assert iteration >= 10 and "interrupted at iteration" in (run / "console.log").read_text()
    assert not (out / "runs" / "cclnn-s-nsparse_x2_b100000_s0").exists()  # never started


def test_run_configs_follow_the_scaled_protocol(tmp_path):
    study = Study(out=tmp_path, budget=2000, seeds=(0, 1))
    tree = run_config(study, SUITES["table1"].rows[0], seed=1)
    config = config_from_dict(tree)
    assert config.max_iterations == 2000 and config.seed == 1
    assert config.loss.warmup_iterations == 300 and config.optim.lr_step_iterations == 600
    assert config.data.patch_size == 32 and config.data.batch_size == 16
    assert config.model.name == "cclnn-s" and config.name == "cclnn-s_x2_b2000_s1"
    lam = next(r for r in SUITES["table4"].rows if r.key == "cclnn-s-lambda8e-3")
    assert config_from_dict(run_config(study, lam, 0)).loss.aux_weight == 8e-3
    n5 = next(r for r in SUITES["table3"].rows if r.key == "cclnn-s-n05")
    assert config_from_dict(run_config(study, n5, 0)).model.options["contrast_ratio"] == 0.05
    # the CCLNN-S runs are one and the same in every suite that has them
    names = {s: {study.run_name(r, 0) for r in suite.rows if r.model == "cclnn-s"
                 and not r.options and not r.overrides} for s, suite in SUITES.items()}
    assert names["table1"] == names["table2"] == names["table3"] == names["table4"] \
        == names["table5"] == {"cclnn-s_x2_b2000_s0"}


@pytest.mark.slow  # a CLI subprocess: about 4 s here
def test_bad_override_and_unknown_suite_are_one_line_errors(tmp_path):
    study = Study(out=tmp_path, budget=10, overrides=("optim.lrr=1",))
    with pytest.raises(AblationError, match="lrr"):
        plan_jobs(study, SUITES["table1"])
    proc = ablate(["table9", "--budget", "10", "--out", str(tmp_path)])
    assert proc.returncode == 2 and "suite 'table9'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a CLI subprocess: about 4 s here
def test_only_picks_rows_and_names_the_known_ones(tmp_path):
    suite = only_rows(SUITES["table5"], ("rnan-s", "divanet-s"))
    assert [r.key for r in suite.rows] == ["rnan-s", "divanet-s"]  # the suite's order
    assert only_rows(SUITES["table5"], ()) is SUITES["table5"]
    proc = ablate(["table5", "--budget", "10", "--out", str(tmp_path), "--only", "rnan"])
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "--only: table5 has no row 'rnan'" in proc.stderr and "rnan-s" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_plan_estimates_from_the_step_times_the_runs_logged(tmp_path):
    study = Study(out=tmp_path, budget=100, seeds=(0, 1))
    run = study.run_dir("cclnn-s_x2_b100_s0")
    run.mkdir(parents=True)
    (run / "latest.pt").write_bytes(b"")  # an interrupted run: resumed, not benchmarked
    rows = ["iteration,epoch,lr,loss,l_rec,l_aux,data_s,compute_s"]
    rows += [f"{i},0,1e-4,1,1,0,0.1,{c}" for i, c in ((10, 0.9), (20, 1.9), (30, 0.7))]
    (run / "train_log.csv").write_text("\n".join(rows) + "\n")
    plan = estimate(study, only_rows(SUITES["table2"], ("cclnn-s",)))
    assert [(r["run"], r["state"]) for r in plan] == [("cclnn-s_x2_b100_s0", "resume"),
                                                      ("cclnn-s_x2_b100_s1", "new")]
    assert [r["step_seconds"] for r in plan] == pytest.approx([1.0, 1.0])  # median of 3 steps
    assert [r["seconds"] for r in plan] == pytest.approx([70.0, 100.0])  # 30 of 100 done


def test_exit_reasons_name_the_signal():
    from cclnn.engine.ablate import exit_reason
    assert exit_reason(1) == "exit 1"
    assert exit_reason(-9) == "killed by SIGKILL - out of memory?"
    assert exit_reason(-15) == "killed by SIGTERM"


def _fake_metrics(study, key, seed, psnr5, **extra):
    run = study.run_dir(f"{key}_x2_b{study.budget}_s{seed}")
    run.mkdir(parents=True, exist_ok=True)
    results = [{"dataset": "Set5", "scale": 2, "psnr": psnr5, "ssim": 0.9, "images": 5}]
    (run / "metrics.json").write_text(json.dumps({"params": 1000, "seed": seed,
                                                  "wall_seconds": 60.0, "results": results,
                                                  **extra}))


def test_claim_verdicts_compare_margins_with_the_seed_spread(tmp_path):
    study = Study(out=tmp_path, budget=100, datasets=("Set5",))
    suite = SUITES["table2"]
    for seed, (c, t, n) in enumerate([(35.0, 34.5, 34.95), (35.1, 34.6, 34.85)]):
        _fake_metrics(study, "cclnn-s", seed, c)
        _fake_metrics(study, "cclnn-s-tsparse", seed, t)
        _fake_metrics(study, "cclnn-s-nsparse", seed, n)
    found = collect(study, suite)
    best, order = (check_claim(study, c, found)["datasets"]["Set5"] for c in suite.claims)
    # CCLNN 35.05 vs NSparse 34.90: margin 0.15 > largest range 0.10 -> holds
    assert best["verdict"] == "holds" and best["margin"] == pytest.approx(0.15)
    assert best["spread"] == pytest.approx(0.1)
    assert order["verdict"] == "holds"  # NSparse 34.90 vs TSparse 34.55
    path = write_tables(study, suite)
    text = path.read_text()
    assert "| CCLNN-S | 0.001 M | 35.05 ± 0.05 / 0.9000 | 2 | 1 min |" in text
    assert "Training wall time of the runs found: 0.10 h." in text
    # a seed trained on a GPU: its wall time is shown apart, never averaged with the CPU's
    _fake_metrics(study, "cclnn-s", 1, 35.1, wall_seconds=180.0, devices=["cpu", "cuda (X)"])
    text = write_tables(study, suite).read_text()
    assert "| CCLNN-S | 0.001 M | 35.05 ± 0.05 / 0.9000 | 2 | 1 min; 3 min (GPU) |" in text
    assert "found: 0.08 h, plus 3 min on a GPU (runs marked GPU)." in text

    (study.run_dir("cclnn-s-nsparse_x2_b100_s1") / "metrics.json").unlink()
    _fake_metrics(study, "cclnn-s-nsparse", 1, 35.1)  # now NSparse 35.025: within the spread
    best = check_claim(study, suite.claims[0], collect(study, suite))["datasets"]["Set5"]
    assert best["verdict"] == "holds on the means, within the seed spread"


def test_claims_compare_rows_on_the_seeds_they_share(tmp_path):
    study = Study(out=tmp_path, budget=100, datasets=("Set5",))
    suite = SUITES["table2"]
    _fake_metrics(study, "cclnn-s", 0, 35.0)
    _fake_metrics(study, "cclnn-s", 1, 34.8)  # a poor second seed the other rows do not have yet
    _fake_metrics(study, "cclnn-s-tsparse", 0, 34.98)
    _fake_metrics(study, "cclnn-s-nsparse", 0, 34.99)
    result = check_claim(study, suite.claims[0], collect(study, suite))
    assert result["seeds"] == [0]
    assert result["datasets"]["Set5"]["margin"] == pytest.approx(0.01)  # not 34.9 - 34.99
    assert result["datasets"]["Set5"]["spread"] == pytest.approx(0.2)  # CCLNN-S's seed range
    text = write_tables(study, suite).read_text()
    assert ("Here (seed 0): Set5: holds on the means, within the seed spread (margin +0.010 dB"
            in text)
    assert "`--set`" not in text
    other = dataclasses.replace(study, overrides=("model.options.rgb_range=1",))
    assert ("Every trained run with `model.options.rgb_range=1` (`--set`)."
            in write_tables(other, suite).read_text())
    _fake_metrics(study, "cclnn-s-tsparse", 1, 34.7)  # NSparse has no seed 1 yet: still seed 0
    assert check_claim(study, suite.claims[1], collect(study, suite))["seeds"] == [0]
    # judged on seed 0, but TSparse's own seed range (0.28) still bounds what a margin means
    order = check_claim(study, suite.claims[1], collect(study, suite))["datasets"]["Set5"]
    assert order["margin"] == pytest.approx(0.01) and order["spread"] == pytest.approx(0.28)
    # ... and only where TSparse is compared: CCLNN-S vs NSparse decides the first claim
    best = check_claim(study, suite.claims[0], collect(study, suite))["datasets"]["Set5"]
    assert (best["better"], best["worse"]) == ("cclnn-s", "cclnn-s-nsparse")
    assert best["spread"] == pytest.approx(0.2)


def test_curves_use_finished_runs_only(tmp_path):
    from cclnn.engine.ablate import validation_curves
    study = Study(out=tmp_path, budget=100, datasets=("Set5",))
    _fake_metrics(study, "cclnn-s", 0, 35.0)
    for seed, values in [(0, (30.0, 35.0)), (1, (20.0,))]:  # seed 1 interrupted at its first point
        run = study.run_dir(f"cclnn-s_x2_b100_s{seed}")
        run.mkdir(parents=True, exist_ok=True)
        (run / "val_log.csv").write_text("iteration,epoch,dataset,psnr,ssim,images\n" + "".join(
            f"{50 * (i + 1)},0,Set5,{v},0.9,5\n" for i, v in enumerate(values)))
    curves = dict(validation_curves(study, SUITES["table2"]))
    assert [p["mean"] for p in curves["CCLNN-S"]] == [30.0, 35.0]


def test_single_seed_rows_use_the_largest_seed_spread_of_the_suite(tmp_path):
    study = Study(out=tmp_path, budget=100, seeds=(0,), datasets=("Set5",))
    _fake_metrics(study, "cclnn-s", 0, 35.0)
    _fake_metrics(study, "cclnn-s", 1, 35.2)  # a second seed from Table 1: range 0.2
    for key, value in [("cclnn-s-n05", 34.9), ("cclnn-s-n25", 35.1), ("cclnn-s-n35", 34.5),
                       ("cclnn-s-n45", 34.0)]:
        _fake_metrics(study, key, 0, value)
    suite = SUITES["table3"]
    verdict = check_claim(study, suite.claims[0], collect(study, suite))["datasets"]["Set5"]
    assert verdict["margin"] == pytest.approx(-0.1) and verdict["spread"] == pytest.approx(0.2)
    assert verdict["verdict"] == "does not hold on the means, within the seed spread"
    _fake_metrics(study, "cclnn-s-n45", 1, 34.6)  # a noisy row outside the deciding pair
    verdict = check_claim(study, suite.claims[0], collect(study, suite))["datasets"]["Set5"]
    assert verdict["margin"] == pytest.approx(-0.1) and verdict["spread"] == pytest.approx(0.2)
    # a pair of two one-seed rows is judged by the widest range of any row of the suite
    for key, values in [("cclnn-s-lambda4e-3", (34.9, 34.4)), ("cclnn-s-lambda6e-3", (34.8,)),
                        ("cclnn-s-lambda8e-3", (34.5,))]:
        for seed, value in enumerate(values):
            _fake_metrics(study, key, seed, value)
    suite = SUITES["table4"]
    verdict = check_claim(study, suite.claims[1], collect(study, suite))["datasets"]["Set5"]
    assert (verdict["better"], verdict["worse"]) == ("cclnn-s-lambda6e-3", "cclnn-s-lambda8e-3")
    assert verdict["margin"] == pytest.approx(0.3) and verdict["spread"] == pytest.approx(0.5)
    assert verdict["verdict"] == "holds on the means, within the seed spread"
    text = write_tables(study, suite).read_text()
    assert "(margin +0.300 dB, lambda = 6e-3 over lambda = 8e-3, seed range 0.500 dB)" in text


def test_a_claim_fails_on_one_pair_beyond_its_own_spread(tmp_path):
    """One row beating the claimed best by more than the two rows' seed ranges refutes the
    claim, even when a third row's seeds differ by more (a failed start, say)."""
    study = Study(out=tmp_path, budget=100, datasets=("Set5",))
    for key, values in [("cclnn-s", (35.0, 35.1)), ("divanet-s", (35.3, 35.4)),
                        ("vdsr", (36.9, 35.6)), ("edsr-s", (34.9, 35.0))]:
        for seed, value in enumerate(values):
            _fake_metrics(study, key, seed, value)
    claim = Claim("CCLNN is the best", ("cclnn-s",), ("divanet-s", "vdsr", "edsr-s"))
    verdict = check_claim(study, claim, collect(study, SUITES["table5"]))["datasets"]["Set5"]
    assert verdict["verdict"] == "does not hold"
    assert (verdict["worse"], verdict["margin"]) == ("divanet-s", pytest.approx(-0.3))
    assert verdict["spread"] == pytest.approx(0.1)
