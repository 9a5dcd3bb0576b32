"""cclnn ablate: suites, run configs, resumable execution, tables and the claim verdicts."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from cclnn.experiments import AblationError
from cclnn.experiments.estimate import estimate
from cclnn.experiments.report import study_facts, validation_curves, write_tables
from cclnn.experiments.runner import exit_reason
from cclnn.experiments import scoring
from cclnn.experiments.scoring import collect
from cclnn.experiments.study import Study, plan_jobs, run_config
from cclnn.experiments.suites import SUITES, Claim, only_rows
from cclnn.experiments.verdicts import check_claim
from cclnn.stats import compare, holm
from cclnn.engine.processes import TrainingError
from cclnn.errors import CclnnError
from cclnn.engine.rundir import RunLock
from cclnn.engine.train_config import config_from_dict
from cclnn.inference import super_resolve
from cclnn.models.registry import build_model
from cclnn.weights import read_record, save_weights

from conftest import ROOT, cli_env, run_cli, tiny_image_folder


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    train = tiny_image_folder(tmp_path / "train", 3, 5, 5, rng, block=8, prefix="t")
    test = tiny_image_folder(tmp_path / "Tiny" / "HR", 2, 24, 20, rng, prefix="v")
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
        # written before the scoring (which may outlast a session), with the training's facts
        assert read_record(run / "final.safetensors")["iterations"] == 4
        assert not (run / "latest.pt").exists()
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
                 and r.trained and not r.options and not r.overrides} for s, suite in SUITES.items()}
    assert names["table1"] == names["table2"] == names["table3"] == names["table4"] \
        == names["table5"] == {"cclnn-s_x2_b2000_s0"}


@pytest.mark.slow  # a CLI subprocess: about 4 s here
def test_bad_override_and_unknown_suite_are_one_line_errors(tmp_path):
    study = Study(out=tmp_path, budget=10, overrides=("optim.lrr=1",))
    with pytest.raises(AblationError, match="lrr"):
        plan_jobs(study, SUITES["table1"])
    proc = ablate(["tabel1", "--budget", "10", "--out", str(tmp_path)])
    assert proc.returncode == 2 and "suite 'tabel1'" in proc.stderr
    assert "did you mean 'table1'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_plan_or_a_table_of_nothing_is_refused_before_anything_is_written(tmp_path):
    study = Study(out=tmp_path / "out", budget=10, data_root=str(tmp_path / "nowhere"),
                  datasets=("Set14",))
    with pytest.raises(CclnnError, match="nowhere: not a folder"):  # not when scored, hours on
        estimate(study, SUITES["table1"])
    with pytest.raises(AblationError, match="no finished run of table3 at x2, 10 iterations"):
        write_tables(study, SUITES["table3"], require_runs=True)
    assert not study.out.exists()


def test_a_run_made_with_another_config_is_refused_naming_what_differs(tmp_path):
    study = Study(out=tmp_path, budget=100, seeds=(0,), datasets=("Set5",))
    suite = only_rows(SUITES["table2"], ("cclnn-s",))
    run = tmp_path / "runs" / "cclnn-s_x2_b100_s0"
    run.mkdir(parents=True)
    written = tmp_path / "configs" / "cclnn-s_x2_b100_s0.yaml"
    plan_jobs(study, suite)
    moved = written.read_text().replace("out_dir: ", "out_dir: /elsewhere/")
    (run / "config.yaml").write_text(moved)
    with pytest.raises(AblationError, match=r"cclnn-s_x2_b100_s0: made with a different config "
                       r"than this invocation's \(out_dir: '/elsewhere/.*runs' there, "
                       r"'.*runs' now\); use another --out or remove it"):
        plan_jobs(study, suite)
    (run / "config.yaml").write_text(written.read_text() + "\n# a comment\n")
    with pytest.raises(AblationError, match="the same values, written otherwise"):
        plan_jobs(study, suite)
    (run / "config.yaml").write_text("a: [")
    with pytest.raises(AblationError, match="its config.yaml does not parse"):
        plan_jobs(study, suite)


def test_seeds_default_to_the_suites_planned_seeds(tmp_path, capsys):
    from cclnn.cli import main
    assert {n: s.seeds for n, s in SUITES.items()} == {
        "table1": 4, "table2": 4, "table3": 2, "table4": 2, "table5": 4}
    for name, seeds in (("table1", "0 1 2 3"), ("table4", "0 1"), ("table4 --seeds 3 3", "3")):
        argv = ["ablate", *name.split(), "--budget", "10", "--out", str(tmp_path), "--tables-only"]
        assert main(argv) == 2
        assert f"iterations, seeds {seeds} (no metrics.json)" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


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
    study = Study(out=tmp_path, budget=100, seeds=(0, 1), datasets=("Set5",))
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
    assert not (tmp_path / "configs").exists()  # a plan writes nothing
    # a plan of seed 2 alone still reads seed 0's log (no benchmark)
    other = Study(out=tmp_path, budget=100, seeds=(2,), datasets=("Set5",))
    plan = estimate(other, only_rows(SUITES["table2"], ("cclnn-s",)))
    assert [(r["run"], r["step_seconds"]) for r in plan] == [("cclnn-s_x2_b100_s2", 1.0)]


def test_exit_reasons_name_the_signal():
    assert exit_reason(1) == "exit 1"
    assert exit_reason(-9) == "killed by SIGKILL - out of memory?"
    assert exit_reason(-15) == "killed by SIGTERM"


def _fake_metrics(study, key, seed, psnr5, per_image=None, **extra):
    run = study.run_dir(f"{key}_x2_b{study.budget}_s{seed}" if seed is not None
                        else f"{key}_x2")
    run.mkdir(parents=True, exist_ok=True)
    results = [{"dataset": "Set5", "scale": 2, "psnr": psnr5, "ssim": 0.9, "images": 5}]
    if per_image:
        results[0]["per_image"] = {name: [v, 0.9] for name, v in per_image.items()}
    (run / "metrics.json").write_text(json.dumps({"params": 1000, "seed": seed,
                                                  "wall_seconds": 60.0, "results": results,
                                                  **extra}))


def _rows(suite):
    return {r.key: r for r in suite.rows}


TABLE2_SEEDS = [(35.00, 34.50, 34.95), (35.10, 34.62, 34.85), (35.05, 34.55, 34.93),
                (35.12, 34.60, 34.90)]


def test_claims_are_paired_t_tests_for_runs_that_share_their_start_holm_corrected(tmp_path):
    study = Study(out=tmp_path, budget=100, seeds=(0, 1, 2, 3), datasets=("Set5",))
    suite = SUITES["table2"]
    for seed, (c, t, n) in enumerate(TABLE2_SEEDS):
        _fake_metrics(study, "cclnn-s", seed, c)
        _fake_metrics(study, "cclnn-s-tsparse", seed, t)
        _fake_metrics(study, "cclnn-s-nsparse", seed, n)
    found = collect(study, suite)
    best, order = (check_claim(c, _rows(suite), found) for c in suite.claims)
    # CCLNN-S, TSparse and NSparse are one network with different losses: paired over seeds
    assert [t["test"] for t in best["tests"]] == ["paired", "paired"]
    c = [x[0] for x in TABLE2_SEEDS]
    expected = [compare(c, [x[k] for x in TABLE2_SEEDS], paired=True) for k in (1, 2)]
    assert [t["p_value"] for t in best["tests"]] == [e.p_value for e in expected]
    assert [t["p_holm"] for t in best["tests"]] == holm([e.p_value for e in expected])
    assert best["tests"][1]["diff"] == pytest.approx(0.16)
    assert best["verdict"] == "holds" and order["verdict"] == "holds"
    text = write_tables(study, suite).read_text()
    assert "| CCLNN-S | 0.001 M | 35.07 ± 0.05 / 0.9000 | 4 | 1 min |" in text
    assert "- Paper: CCLNN-L is the best of the three. Here: holds." in text
    assert "| Set5 | CCLNN-S > CCLNN-S-NSparse | paired | 4 / 4 | +0.160 |" in text
    assert "Training wall time of the runs found: 0.20 h." in text
    summary = json.loads((study.out / "table2_x2_b100.json").read_text())
    row = summary["rows"][0]
    assert row["seeds"] == [0, 1, 2, 3] and row["datasets"]["Set5"]["psnr_per_seed"] == c
    # a seed trained on a GPU: its wall time is shown apart, never averaged with the CPU's
    _fake_metrics(study, "cclnn-s", 1, 35.1, wall_seconds=180.0, devices=["cpu", "cuda (X)"])
    text = write_tables(study, suite).read_text()
    assert "| CCLNN-S | 0.001 M | 35.07 ± 0.05 / 0.9000 | 4 | 1 min; 3 min (GPU) |" in text
    assert "found: 0.18 h, plus 3 min on a GPU (runs marked GPU)." in text


def test_a_significant_pair_against_the_claim_contradicts_it_and_noise_is_undecided(tmp_path):
    study = Study(out=tmp_path, budget=100, seeds=(0, 1, 2, 3), datasets=("Set5",))
    for key, values in [("cclnn-s", (35.0, 35.1, 35.05, 35.08)),
                        ("divanet-s", (35.3, 35.4, 35.35, 35.32)),
                        ("vdsr", (36.9, 35.6, 34.0, 33.9)), ("edsr-s", (34.9, 35.0, 34.95, 34.9))]:
        for seed, value in enumerate(values):
            _fake_metrics(study, key, seed, value)
    rows = _rows(SUITES["table5"])
    found = collect(study, SUITES["table5"])
    claim = Claim("CCLNN is the best", ("cclnn-s",), ("divanet-s", "vdsr", "edsr-s"))
    result = check_claim(claim, rows, found)
    assert result["verdict"] == "contradicted"
    # different networks: Welch's test on the seeds
    divanet = result["tests"][0]
    assert divanet["test"] == "welch" and divanet["diff"] == pytest.approx(-0.285)
    assert divanet["p_value"] == compare((35.0, 35.1, 35.05, 35.08),
                                         (35.3, 35.4, 35.35, 35.32)).p_value
    assert divanet["p_holm"] < 0.05
    # without DiVANet-S: VDSR's seeds scatter, EDSR-S is behind: nothing decided
    claim = Claim("CCLNN is the best", ("cclnn-s",), ("vdsr", "edsr-s"))
    result = check_claim(claim, rows, found)
    assert result["verdict"] == "undecided"
    vdsr = result["tests"][0]
    assert vdsr["p_value"] > 0.05 and vdsr["detectable"] > abs(vdsr["diff"])


def test_rows_without_seeds_are_fixed_numbers_and_one_seed_decides_nothing(tmp_path):
    study = Study(out=tmp_path, budget=100, seeds=(0, 1, 2), datasets=("Set5",))
    for seed, value in enumerate((35.0, 35.1, 35.2)):
        _fake_metrics(study, "cclnn-s", seed, value)
    _fake_metrics(study, "bicubic", None, 33.6)
    _fake_metrics(study, "edsr-s", 0, 35.0)
    rows = _rows(SUITES["table5"])
    found = collect(study, SUITES["table5"])
    result = check_claim(Claim("beats bicubic", ("cclnn-s",), ("bicubic",)), rows, found)
    assert result["tests"][0]["test"] == "welch" and result["tests"][0]["n_b"] == 1
    assert result["tests"][0]["diff"] == pytest.approx(1.5) and result["verdict"] == "holds"
    result = check_claim(Claim("edsr", ("cclnn-s",), ("edsr-s",)), rows, found)
    assert result["tests"][0]["test"] == "too few seeds"
    assert result["verdict"] == "undecided (too few seeds)"


def test_per_image_differences_are_reported_per_seed_apart_from_the_verdict(tmp_path):
    study = Study(out=tmp_path, budget=100, seeds=(0, 1), datasets=("Set5",))
    a = {"bird": 36.0, "baby": 35.0, "head": 34.0, "woman": 33.0}
    b = {"bird": 35.9, "baby": 34.95, "head": 33.92, "woman": 32.93}
    for seed in (0, 1):
        _fake_metrics(study, "cclnn-s", seed, 35.0 + seed / 10, per_image=a)
        _fake_metrics(study, "edsr-s", seed, 35.05 - seed / 10, per_image=b)
    found = collect(study, SUITES["table1"])
    claim = Claim("x", ("cclnn-s",), ("edsr-s",))
    test = check_claim(claim, _rows(SUITES["table1"]), found)["tests"][0]
    assert [x["seed"] for x in test["per_image"]] == [0, 1]
    first = test["per_image"][0]
    assert first["images"] == 4 and first["diff"] == pytest.approx(0.075)
    assert first["p_value"] == compare(list(a.values()), list(b.values()), paired=True).p_value


def test_study_facts_are_what_the_runs_recorded(tmp_path):
    study = Study(out=tmp_path, budget=2000, seeds=(0,))
    suite = SUITES["table5"]
    assert study_facts(study, suite) == ""  # no run: nothing is claimed
    plan_jobs(study, suite)  # writes the configs the runs would train with
    for row in suite.rows:
        if row.trained:
            run = study.run_dir(study.run_name(row, 0))
            run.mkdir(parents=True)
            (run / "config.yaml").write_text((study.out / "configs" / f"{run.name}.yaml")
                                             .read_text())
            if row.key == "rcan-s":
                assert "RCAN-S" not in study_facts(study, suite)  # not finished yet
            (run / "metrics.json").write_text("{}")
    facts = study_facts(study, suite)
    assert "channel attention with 8 hidden units (r = 4): RCAN-S, CCLNN-S." in facts \
        or "channel attention with 8 hidden units (r = 4): RCAN-S, CCLNN-S;" in facts
    assert "in [0, 1]: EDSR-S, RCAN-S, NLSN-S, CCLNN-S" in facts
    # a run made before every option was written down: its width is not guessed
    cclnn = study.run_dir(study.run_name(SUITES["table1"].rows[0], 0)) / "config.yaml"
    cclnn.write_text(cclnn.read_text().replace("    cca_reduction: 4\n", ""))
    assert "(r = 4): RCAN-S;" in study_facts(study, suite)


def test_curves_use_finished_runs_only(tmp_path):
    study = Study(out=tmp_path, budget=100, datasets=("Set5",))
    _fake_metrics(study, "cclnn-s", 0, 35.0)
    for seed, values in [(0, (30.0, 35.0)), (1, (20.0,))]:  # seed 1 interrupted at its first point
        run = study.run_dir(f"cclnn-s_x2_b100_s{seed}")
        run.mkdir(parents=True, exist_ok=True)
        (run / "val_log.csv").write_text("iteration,epoch,dataset,psnr,ssim,images\n" + "".join(
            f"{50 * (i + 1)},0,Set5,{v},0.9,5\n" for i, v in enumerate(values)))
    curves = dict(validation_curves(study, SUITES["table2"]))
    assert [p["mean"] for p in curves["CCLNN-S"]] == [30.0, 35.0]




def test_the_claims_overview_counts_each_claims_pairs(tmp_path):
    from cclnn.experiments.report import claims_overview
    assert claims_overview(tmp_path, 2, 100) is None
    tests = [{"dataset": "Set5", "diff": 0.2, "p_holm": 0.01, "detectable": 0.15},
             {"dataset": "Set14", "diff": -0.1, "p_holm": 0.03, "detectable": 0.25},
             {"dataset": "B100", "diff": 0.05, "p_holm": 0.4, "detectable": 0.2},
             {"dataset": "Set5", "test": "too few seeds"}]
    claim = {"claim": "A beats B", "verdict": "contradicted", "alpha": 0.05, "tests": tests}
    (tmp_path / "table2_x2_b100.json").write_text(json.dumps({"claims": [claim]}))
    (tmp_path / "table1_x2_b200.json").write_text(json.dumps({"claims": [claim]}))  # other budget
    lines = claims_overview(tmp_path, 2, 100).splitlines()
    assert lines[-1] == "| Table 2 | A beats B | contradicted | 1 / 1 / 1 / 1 | 0.01 - 0.4 | 0.250 |"
    assert not any(line.startswith("| Table 1 ") for line in lines)


def test_the_runs_overview_lists_each_finished_run_of_the_scale_and_budget(tmp_path):
    from cclnn.experiments.report import runs_overview
    assert runs_overview(tmp_path, 2, 100) is None
    results = [{"dataset": "Set5", "psnr": 35.123, "ssim": 0.94441},
               {"dataset": "B100", "psnr": 30.5, "ssim": 0.87}]
    records = {"rcan-s_x2_b100_s1": {"row": "rcan-s", "seed": 1, "results": results,
                                     "iterations": 100, "wall_seconds": 600.0,
                                     "devices": ["cuda:0"], "score_seconds": 12.4},
               "rcan-s_x2_b100_s0": {"row": "rcan-s", "seed": 0, "results": results[:1]},
               "rcan-s-plus_x2_b100_s0": {"row": "rcan-s-plus", "seed": 0, "results": results,
                                          "ensemble_of": "rcan-s_x2_b100_s0"},
               "rcan-s_x2_b200_s0": {"row": "rcan-s", "seed": 0, "results": results}}
    for name, record in records.items():
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "metrics.json").write_text(json.dumps(record))
    (tmp_path / "runs" / "rcan-s_x2_b100_s2").mkdir()  # unfinished: no metrics.json
    lines = runs_overview(tmp_path, 2, 100).splitlines()
    assert "2 trained runs and 1 self-ensembles" in lines[2]
    assert lines[-3:] == [
        "| rcan-s | 0 | 35.12 / 0.9444 | - | - | - | - |",
        "| rcan-s | 1 | 35.12 / 0.9444 | 30.50 / 0.8700 | 100 | 10 (cuda:0) | 12 |",
        "| rcan-s-plus | 0 | 35.12 / 0.9444 | 30.50 / 0.8700 | - | x8 views of "
        "rcan-s_x2_b100_s0 | - |"]
    (tmp_path / "runs" / "rcan-s_x2_b100_s2" / "metrics.json").write_text("{")
    with pytest.raises(AblationError, match="rcan-s_x2_b100_s2.*not valid JSON"):
        runs_overview(tmp_path, 2, 100)


@pytest.mark.slow  # a few training steps: ~5 s
def test_a_plan_measures_a_new_row_without_writing_anything(tmp_path):
    # a tiny network and batch: the step is measured, from a config kept in a temporary file
    study = Study(out=tmp_path, budget=100, seeds=(0,), datasets=("Set5",), overrides=(
        "model.options={channels: 8, n_resblocks: 1}", "data.batch_size=2", "data.patch_size=16"))
    plan = estimate(study, only_rows(SUITES["table2"], ("cclnn-s",)), steps=1)
    assert plan[0]["state"] == "new" and plan[0]["step_seconds"] > 0
    assert list(tmp_path.iterdir()) == []


def test_a_plan_counts_a_self_ensemble_as_eight_scorings_of_its_source(tmp_path):
    study = Study(out=tmp_path, budget=100, seeds=(0, 1), datasets=("Set5",))
    run = study.run_dir("rnan-s_x2_b100_s0")
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"score_seconds": 90.0, "results": []}))
    plan = {r["run"]: r for r in estimate(study, only_rows(SUITES["table5"], ("rnan-s-plus",)))}
    assert [r["seconds"] for r in plan.values()] == [8 * 90.0, 8 * 90.0]  # seed 1: as seed 0
    # an interrupted scoring of seed 1 has done 100 s of it, as its journal says
    journal = study.run_dir("rnan-s-plus_x2_b100_s1") / scoring.ScoreJournal.NAME
    journal.parent.mkdir(parents=True)
    journal.write_text('{"fingerprint": "f"}\n' + '{"dataset": "Set5", "image": "baby", '
                       '"psnr": 30.0, "ssim": 0.9, "seconds": 100.0}\n{"dataset": "S')
    plan = {r["run"]: r for r in estimate(study, only_rows(SUITES["table5"], ("rnan-s-plus",)))}
    assert plan["rnan-s-plus_x2_b100_s1"]["seconds"] == 8 * 90.0 - 100.0
    other = Study(out=tmp_path, budget=100, seeds=(2,), datasets=("Set5",))  # seed 0 not asked
    plan = estimate(other, only_rows(SUITES["table5"], ("rnan-s-plus",)))
    assert [r["seconds"] for r in plan] == [8 * 90.0]


def _ensemble_study(tmp_path, seed_weights=0):
    """A study of one tiny test set whose RNAN-S seed 0 has final weights: RNAN-S+ can score."""
    rng = np.random.default_rng(1)
    test = tiny_image_folder(tmp_path / "Tiny" / "HR", 3, 20, 16, rng, prefix="v").parent
    study = Study(out=tmp_path / "out", budget=100, seeds=(0,), datasets=(str(test),))
    source = study.run_dir("rnan-s_x2_b100_s0")
    source.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed_weights)
    save_weights(build_model("rnan-s", 2), source / "final.safetensors")
    job = next(j for j in plan_jobs(study, only_rows(SUITES["table5"], ("rnan-s-plus",)))
               if j.state == "ensemble")
    return study, job


def _counting_super_resolve(monkeypatch, stop_after=None):
    """Count the images scoring super-resolves; stop it (as a kill would) after ``stop_after``."""
    calls = []

    def counted(*args, **kwargs):
        if stop_after is not None and len(calls) == stop_after:
            raise KeyboardInterrupt
        calls.append(1)
        return super_resolve(*args, **kwargs)
    monkeypatch.setattr(scoring, "super_resolve", counted)
    return calls


def test_an_interrupted_scoring_resumes_at_the_next_image_with_the_same_scores(tmp_path,
                                                                              monkeypatch):
    study, job = _ensemble_study(tmp_path)
    fresh_study, fresh_job = _ensemble_study(tmp_path / "fresh")
    _counting_super_resolve(monkeypatch)
    fresh = scoring.score_job(fresh_study, fresh_job, scoring.test_sets(fresh_study))

    _counting_super_resolve(monkeypatch, stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        scoring.score_job(study, job, scoring.test_sets(study))
    journal = study.run_dir(job.name) / scoring.ScoreJournal.NAME
    assert len(journal.read_text().splitlines()) == 1 + 1  # fingerprint, 1 image
    with open(journal, "a") as f:
        f.write('{"dataset": "Tiny", "ima')  # a line cut short by a kill
    calls = _counting_super_resolve(monkeypatch, stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        scoring.score_job(study, job, scoring.test_sets(study))
    assert len(calls) == 1  # the second image: the first was journaled
    assert scoring.ScoreJournal.seconds_in(journal) > 0
    assert len([line for line in journal.read_text().splitlines()
                if line.startswith('{"dataset": "Tiny", "image"')]) == 2  # the cut one apart
    calls = _counting_super_resolve(monkeypatch)
    resumed = scoring.score_job(study, job, scoring.test_sets(study))
    assert len(calls) == 1  # only the third image
    assert resumed["results"] == fresh["results"]  # per image, exactly
    assert resumed["score_seconds"] > 0
    assert not journal.exists()  # metrics.json holds it all now


def test_a_journal_of_other_weights_is_started_afresh(tmp_path, monkeypatch):
    study, job = _ensemble_study(tmp_path)
    _counting_super_resolve(monkeypatch, stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        scoring.score_job(study, job, scoring.test_sets(study))
    _ensemble_study(tmp_path, seed_weights=1)  # the source run's weights changed
    calls = _counting_super_resolve(monkeypatch)
    scoring.score_job(study, job, scoring.test_sets(study))
    assert len(calls) == 3


def test_a_run_folder_being_scored_is_not_scored_twice(tmp_path):
    study, job = _ensemble_study(tmp_path)
    run = study.run_dir(job.name)
    run.mkdir(parents=True)
    held = RunLock(run)
    with pytest.raises(TrainingError, match="in use by pid"):
        scoring.score_job(study, job, scoring.test_sets(study))
    held.release()
    assert not (run / "metrics.json").exists()


@pytest.mark.slow  # two CLI subprocesses, a few training steps: ~15 s
def test_train_only_leaves_finished_checkpoints_that_a_later_call_only_scores(tmp_path, data):
    train, test = data
    out = tmp_path / "out"
    args = ["table2", "--budget", "2", "--seeds", "0", "--only", "cclnn-s", "--out", str(out),
            "--train", str(train), "--datasets", str(test), *TINY, "--set",
            f"val.dataset={test}"]
    trained = ablate(args + ["--train-only"])
    assert trained.returncode == 0, trained.stderr
    run = out / "runs" / "cclnn-s_x2_b2_s0"
    assert "cclnn-s_x2_b2_s0: trained in" in trained.stdout
    assert (run / "latest.pt").is_file() and not (run / "metrics.json").exists()
    assert not (out / "table2_x2_b2.md").exists()
    log_lines = (run / "train_log.csv").read_text().splitlines()
    # the folder travels without its checkpoints (a GPU machine's $OUT): final weights and logs
    assert read_record(run / "final.safetensors")["iterations"] == 2
    (run / "latest.pt").unlink()
    (run / "best.pt").unlink(missing_ok=True)
    scored = ablate(args)
    assert scored.returncode == 0, scored.stderr
    assert "scored (trained elsewhere)" in scored.stdout
    assert (run / "train_log.csv").read_text().splitlines() == log_lines  # not trained again
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["iterations"] == 2 and metrics["devices"] and metrics["wall_seconds"] > 0
    both = ablate(args + ["--train-only", "--tables-only"])
    assert both.returncode == 2 and "choose one" in both.stderr


def test_scoring_leaves_the_cores_other_processes_use(monkeypatch):
    import cclnn.cpu as cpu
    from cclnn.experiments.runner import scoring_threads
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    monkeypatch.setattr(cpu, "idle_cores", lambda: 4.0)
    assert scoring_threads(training=0) == 4 and scoring_threads(training=3) == 1
    monkeypatch.setattr(cpu, "idle_cores", lambda: 1.2)  # another process keeps 3 cores busy
    assert scoring_threads(training=0) == 1
