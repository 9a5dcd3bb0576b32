import json
import subprocess
import sys

import pytest

import cclnn
from cclnn.cli import main
from cclnn.models import count_parameters


@pytest.mark.slow  # every network at every scale built (on the meta device): 5-9 s here
def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == set(cclnn.list_models())
    assert all(set(r) == {"name", "scale", "params"} for r in rows)
    lookup = {(r["name"], r["scale"]): r["params"] for r in rows}
    assert lookup[("nlsn", 3)] == count_parameters("nlsn", 3)
    assert len(rows) == 3 * len(cclnn.list_models())


@pytest.mark.slow  # every network at every scale built (on the meta device): 5-9 s here
def test_models_table(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "| cclnn | 48.068 M | 51.019 M | 50.429 M | NLSN + 15 % / 14 % / 14 %" in out
    assert "| divanet | 0.902 M | 0.949 M | 0.940 M | 902 K / 949 K / 939 K (paper) |" in out


@pytest.mark.slow  # a CLI subprocess: 4-7 s here
def test_errors_are_one_line_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "cclnn.cli", "demo", "--model", "cclnn-x"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "unknown model 'cclnn-x'" in proc.stderr


@pytest.mark.slow  # EDSR-baseline on the butterfly and Set5: ~14 s here
def test_demo_upscales_and_scores(capsys, tmp_path):
    from cclnn.data.images import read_image
    from conftest import tiny_weights
    weights = tiny_weights(tmp_path / "w.safetensors", "edsr-baseline", 2)
    out = tmp_path / "b.png"
    assert main(["demo", "--model", "edsr-baseline", "--weights", str(weights), "-o",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{out}: butterfly 128x128 -> 256x256 with edsr-baseline x2" in text
    assert "| bicubic | 33.67 | 0.9303 |" in text  # Set5 x2 bicubic, as `cclnn test` gives
    assert read_image(out).shape == (256, 256, 3)
    assert main(["demo", "--model", "edsr-baseline"]) == 2  # no weights ship for it
    assert "--weights: required for model 'edsr-baseline'" in capsys.readouterr().err


def _json_results(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out)["results"]


def test_test_bicubic_matches_literature_set5(capsys):
    results = _json_results(capsys, ["test", "--model", "bicubic", "--scale", "2", "3", "4",
                                     "--datasets", "Set5", "--json"])
    published = {2: 33.66, 3: 30.39, 4: 28.42}
    assert [r["scale"] for r in results] == [2, 3, 4]
    for r in results:
        assert r["dataset"] == "Set5" and r["images"] == 5
        assert abs(r["psnr"] - published[r["scale"]]) <= 0.02


@pytest.mark.slow  # 100 images at three scales: ~40 s here
def test_test_bicubic_b100(capsys):
    from conftest import shared_path
    b100 = shared_path("data", "benchmark", "B100")
    results = _json_results(capsys, ["test", "--model", "bicubic", "--scale", "2", "3", "4",
                                     "--datasets", str(b100), "--json"])
    published = {2: 29.56, 3: 27.21, 4: 25.96}
    for r in results:
        assert r["images"] == 100 and abs(r["psnr"] - published[r["scale"]]) <= 0.02


@pytest.mark.slow  # A2N on Set5: ~14 s here
def test_test_a2n_official_weights(capsys):
    from conftest import shared_path
    weights = shared_path("weights", "a2n", "aan_x2.pt")
    [r] = _json_results(capsys, ["test", "--model", "a2n", "--weights", str(weights),
                                 "--scale", "2", "--datasets", "Set5", "--json",
                                 "--device", "cpu"])
    assert abs(r["psnr"] - 38.06) <= 0.005 and abs(r["ssim"] - 0.9607) <= 0.0002


def test_test_table_and_errors(capsys, tmp_path):
    assert main(["test", "--model", "bicubic", "--scale", "4", "--datasets", "Set5",
                 "--save-images", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| Model | Scale | Set5 |") and "| bicubic | x4 | 28.4" in out
    assert len(list((tmp_path / "bicubic_x4" / "Set5").glob("*.png"))) == 5
    assert main(["test", "--model", "edsr", "--scale", "2", "--datasets", "Set5"]) == 2
    assert "--weights: required" in capsys.readouterr().err
    assert main(["test", "--model", "edsr", "--weights", "w.pt", "--scale", "2", "3",
                 "--datasets", "Set5"]) == 2
    assert "{scale}" in capsys.readouterr().err
    assert main(["test", "--model", "bicubic", "--scale", "2", "--datasets", "Urban100",
                 "--data-root", str(tmp_path)]) == 2
    assert "Urban100" in capsys.readouterr().err


def test_score_matches_test(capsys, tmp_path):
    from cclnn.assets import SET5
    from cclnn.data.images import read_image, write_image
    from cclnn.resize import imresize
    sr_dir = tmp_path / "sr"
    sr_dir.mkdir()
    for lr_file in sorted((SET5 / "LR_bicubic" / "X3").glob("*.png")):
        stem = lr_file.stem[:-2]
        write_image(sr_dir / f"{stem}_RCAN_x3.png", imresize(read_image(lr_file), 3))
    assert main(["score", "--hr", str(SET5 / "HR"), "--sr", str(sr_dir), "--scale", "3",
                 "--sr-suffix", "_RCAN_x3", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert len(scored["images"]) == 5
    [tested] = _json_results(capsys, ["test", "--model", "bicubic", "--scale", "3",
                                      "--datasets", "Set5", "--json"])
    assert abs(scored["psnr"] - tested["psnr"]) < 1e-9
    for f in sr_dir.iterdir():  # default suffixes: _x3
        f.rename(f.with_name(f.name.replace("_RCAN_x3", "_x3")))
    assert main(["score", "--hr", str(SET5 / "HR"), "--sr", str(sr_dir), "--scale", "3"]) == 0
    assert "| **mean (5)** |" in capsys.readouterr().out


def test_make_lr_reproduces_matlab(tmp_path, capsys):
    import shutil

    import numpy as np

    from cclnn.assets import SET5
    from cclnn.data.images import read_image
    shutil.copytree(SET5 / "HR", tmp_path / "HR")
    assert main(["data", "make-lr", str(tmp_path / "HR"), "--scales", "2", "3", "4"]) == 0
    for s in (2, 3, 4):
        for ref in (SET5 / "LR_bicubic" / f"X{s}").glob("*.png"):
            assert np.array_equal(read_image(tmp_path / "LR_bicubic" / f"X{s}" / ref.name),
                                  read_image(ref))


def test_bench_resize_smoke():
    from cclnn.speed import bench_resize
    r = bench_resize(width=200, height=100, repeat=1)
    assert r["cclnn_seconds"] > 0 and r["pil_seconds"] > 0 and r["ratio"] > 0


@pytest.mark.slow  # a CLI subprocess: 4-7 s here
def test_usage_errors_are_one_line():
    proc = subprocess.run([sys.executable, "-m", "cclnn", "upscale", "x.png", "--tile", "big"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--tile" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv, option", [
    (["test", "--model", "bicubic", "--scale", "2", "--datasets", "Set5", "--tile", "-3"],
     "--tile"),
    (["bench", "model", "--size", "0", "0"], "--size"),
    (["bench", "resize", "--repeat", "0"], "--repeat"),
    (["ablate", "table1", "--budget", "0"], "--budget"),
    (["ablate", "table1", "--budget", "10", "--jobs", "two"], "--jobs"),
])
def test_counts_are_checked_by_the_parser(argv, option, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and option in err


def test_overrides_may_follow_the_options(capsys):
    from cclnn.cli import parse
    args = parse(["train", "run.yaml", "optim.lr=1e-4", "--no-progress", "val.every=5"])
    assert args.config == "run.yaml" and args.no_progress
    assert args.overrides == ["optim.lr=1e-4", "val.every=5"]
    for argv in (["train", "run.yaml", "--no-progress", "--bogus"],
                 ["models", "extra=1"]):  # `models` takes no overrides
        with pytest.raises(SystemExit) as stop:
            parse(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.count("\n") == 1 and "unrecognized" in err
