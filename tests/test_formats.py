"""The on-disk formats and their one owner each: training checkpoints, the CSV logs, the data
layout (scales, benchmark names, LR file names, roots) and the HR -> LR degradation."""
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import cclnn
from cclnn.assets import SET5, set5_hr, set5_lr
from cclnn.cli import main
from cclnn.data import layout
from cclnn.data.benchmark import BenchmarkSet, resolve_benchmark
from cclnn.data.images import read_image
from cclnn.engine import logs
from cclnn.engine.checkpoint import (CHECKPOINT_FORMAT, CheckpointError, export_checkpoint,
                                     load_checkpoint, load_training_state, write_checkpoint)
from cclnn.models.registry import SCALES as REGISTRY_SCALES
from cclnn.resize import degrade, imresize, mod_crop
from cclnn.weights import WeightsError

from conftest import tiny_image

# ----------------------------------------------------------------------------- checkpoints

TINY = {"name": "edsr-baseline", "scale": 2, "options": {"channels": 8, "n_resblocks": 1}}


def _model():
    return cclnn.build_model(TINY["name"], TINY["scale"], **TINY["options"])


def _latest(model) -> dict:
    return {"format": CHECKPOINT_FORMAT, "iteration": 7, "model": model.state_dict(),
            "config": {"name": "tiny", "model": TINY}}


class _Hostile:
    """Unpickling this would create the folder ``marker``."""
    marker = ""

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _bad_files(tmp_path) -> dict[str, Path]:
    """name -> a file no loader may accept."""
    good = tmp_path / "good.pt"
    torch.save(_latest(_model()), good)
    files = {"empty": tmp_path / "empty.pt", "truncated": tmp_path / "truncated.pt",
             "text": tmp_path / "text.pt", "missing": tmp_path / "missing.pt"}
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["text"].write_text("iteration,loss\n1,2\n")
    return files


def _one_line(message: str, path: Path) -> None:
    assert "\n" not in message and str(path) in message and "Traceback" not in message, message


def test_checkpoint_round_trip_is_atomic(tmp_path):
    path = tmp_path / "latest.pt"
    model = _model()
    write_checkpoint(_latest(model), path)
    state = load_training_state(path)
    assert state["iteration"] == 7
    assert all(torch.equal(v, state["model"][k]) for k, v in model.state_dict().items())
    assert load_checkpoint(path)["config"]["name"] == "tiny"

    def fail():  # killed between writing the temporary file and the rename
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        write_checkpoint({**_latest(model), "iteration": 8}, path, before_replace=fail)
    assert load_training_state(path)["iteration"] == 7  # the previous checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]  # no temporary file


@pytest.mark.parametrize("kind, needle", [
    ("missing", "checkpoint not found"),
    ("empty", "not a readable training checkpoint (empty file)"),
    ("truncated", "not a readable training checkpoint (truncated or damaged: "),
    ("text", "not a readable training checkpoint (not a file torch.save writes)"),
])
def test_unreadable_checkpoints_are_one_line_errors(tmp_path, kind, needle):
    path = _bad_files(tmp_path)[kind]
    for load in (load_training_state, load_checkpoint):
        with pytest.raises(CheckpointError) as caught:
            load(path)
        _one_line(str(caught.value), path)
        assert needle in str(caught.value)
        assert isinstance(caught.value, WeightsError)  # what export always raised


def test_foreign_checkpoints_are_refused(tmp_path):
    model = _model()
    plain = tmp_path / "plain.pt"  # a state dict, not a `cclnn train` checkpoint
    torch.save(model.state_dict(), plain)
    other = tmp_path / "other.pt"  # someone else's format tag
    torch.save({**_latest(model), "format": "cclnn-train-checkpoint/0"}, other)
    best = tmp_path / "best.pt"  # best.pt: weights with config, no format tag
    torch.save({"model": model.state_dict(), "iteration": 3, "psnr": 30.0, "ssim": 0.9,
                "dataset": "Set5", "config": {"name": "tiny", "model": TINY}}, best)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    for path in (plain, other, best, tensor):
        with pytest.raises(CheckpointError, match="not a cclnn training checkpoint") as caught:
            load_training_state(path)
        _one_line(str(caught.value), path)
    with pytest.raises(CheckpointError, match=r"format 'cclnn-train-checkpoint/0', expected "
                                              r"'cclnn-train-checkpoint/1'"):
        load_checkpoint(other)
    for path in (plain, tensor):
        with pytest.raises(CheckpointError, match="no training config inside"):
            load_checkpoint(path)
    assert load_checkpoint(best)["iteration"] == 3


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_hostile_pickle_is_refused_and_never_runs(tmp_path, how):
    marker = tmp_path / "pwned"
    _Hostile.marker = str(marker)
    path = tmp_path / "latest.pt"
    payload = {"format": CHECKPOINT_FORMAT, "iteration": 1, "payload": _Hostile()}
    if how == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    for load in (load_training_state, load_checkpoint, lambda p: export_checkpoint(
            p, tmp_path / "out.safetensors")):
        with pytest.raises(CheckpointError, match="refused to load") as caught:
            load(path)
        _one_line(str(caught.value), path)
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()


def test_export_cli_errors_are_one_line(tmp_path, capsys):
    files = _bad_files(tmp_path)
    _Hostile.marker = str(tmp_path / "pwned")
    torch.save({"payload": _Hostile()}, tmp_path / "hostile.pt")
    files["hostile"] = tmp_path / "hostile.pt"
    for path in files.values():
        assert main(["export", str(path), "-o", str(tmp_path / "x.safetensors")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("cclnn export: error: "), err
        _one_line(err.strip(), path)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "x.safetensors").exists()


def test_export_of_a_latest_checkpoint(tmp_path):
    model = _model()
    write_checkpoint(_latest(model), tmp_path / "latest.pt")
    meta = export_checkpoint(tmp_path / "latest.pt", tmp_path / "w.safetensors")
    assert meta == {"model": "edsr-baseline", "scale": 2, "options": TINY["options"],
                    "run": "tiny", "iteration": 7}
    loaded = cclnn.load_weights(_model(), tmp_path / "w.safetensors")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


# ----------------------------------------------------------------------------- logs

def test_log_writer_and_reader_round_trip(tmp_path):
    logs.start_logs(tmp_path)
    train, val = tmp_path / logs.TRAIN_LOG, tmp_path / logs.VAL_LOG
    assert train.read_text() == "iteration,epoch,lr,loss,l_rec,l_aux,data_s,compute_s\n"
    assert val.read_text() == "iteration,epoch,dataset,psnr,ssim,images\n"
    for it in (1, 2, 3):
        parts = {"loss": 1 / it, "l_rec": 0.5 / it, "l_aux": 0.25}
        logs.append_row(train, logs.train_row(it, 0, 2e-4 / it, parts, 0.01, 1.5))
        logs.append_row(val, logs.val_row(it, 0, "Set5", 30 + it / 3, 0.9 + it / 300, 5))
    assert train.read_text().splitlines()[1] == "1,0,0.0002,1.000000,0.500000,0.250000,0.0100,1.5000"
    assert val.read_text().splitlines()[3] == "3,0,Set5,31.0000,0.91000,5"
    rows = logs.read_log(train, logs.TRAIN_FIELDS, ("iteration", "loss"))
    assert [(r["iteration"], r["loss"], r["lr"]) for r in rows] == [
        (1.0, 1.0, "0.0002"), (2.0, 0.5, "0.0001"), (3.0, pytest.approx(1 / 3, abs=1e-6),
                                                     "6.66667e-05")]
    rows = logs.read_log(val, logs.VAL_FIELDS, ("iteration", "psnr"))
    assert [r["psnr"] for r in rows] == [30.3333, 30.6667, 31.0] and rows[0]["dataset"] == "Set5"
    logs.truncate_log(train, 2)  # resumed from the checkpoint of iteration 2
    logs.append_row(train, logs.train_row(3, 0, 1e-4, {"loss": 9, "l_rec": 9, "l_aux": 0},
                                          0, 0))
    rows = logs.read_log(train, logs.STEP_TIME_FIELDS, logs.STEP_TIME_FIELDS)
    assert [(r["iteration"], r["compute_s"]) for r in rows] == [(1, 1.5), (2, 1.5), (3, 0)]
    logs.truncate_log(tmp_path / "absent.csv", 1)  # nothing to truncate: no error


def test_log_reader_errors_are_one_line(tmp_path):
    bad = tmp_path / "train_log.csv"
    bad.write_text("step,loss\n1,2\n")
    with pytest.raises(logs.LogError, match=r"not a cclnn log: missing column\(s\) iteration"):
        logs.read_log(bad, logs.TRAIN_FIELDS, ("iteration",))
    bad.write_text("iteration,epoch,dataset,psnr,ssim,images\n1,0,Set5,nan?,0.9,5\n")
    with pytest.raises(logs.LogError, match=r"line 2: not a number in iteration, psnr"):
        logs.read_log(bad, logs.VAL_FIELDS, ("iteration", "psnr"))
    with pytest.raises(logs.LogError, match="file not found"):
        logs.read_log(tmp_path / "none.csv", logs.VAL_FIELDS, ())


# ----------------------------------------------------------------------------- data layout

def test_layout_names():
    assert layout.SCALES == (2, 3, 4) and REGISTRY_SCALES is layout.SCALES
    assert layout.SCALES_TEXT == "2, 3 or 4"
    assert layout.lr_file_name("baby", 2) == "babyx2.png"
    assert layout.lr_file_name("0001", 4, ".jpg") == "0001x4.jpg"
    assert layout.lr_dir(Path("data/Set14"), 3) == Path("data/Set14/LR_bicubic/X3")
    assert set5_lr("baby", 3) == SET5 / "LR_bicubic" / "X3" / "babyx3.png"
    assert set5_lr("baby", 3).is_file()
    bench = BenchmarkSet(SET5, 4)
    assert bench.lr_file(bench.hr_files[0]) == SET5 / "LR_bicubic/X4" / "babyx4.png"
    assert [layout.canonical_name(n) for n in ("set5", "BSD100", "bsds100", "urban", "MANGA",
                                               "Set6")] == [
        "Set5", "B100", "B100", "Urban100", "Manga109", None]
    assert layout.BENCHMARKS == ("Set5", "Set14", "B100", "Urban100", "Manga109")


def test_data_and_cache_roots(tmp_path, monkeypatch):
    monkeypatch.delenv(layout.DATA_ENV, raising=False)
    assert layout.data_root() is None and layout.data_root("d") == Path("d")
    monkeypatch.setenv("CCLNN_DATA", str(tmp_path))
    assert layout.data_root() == tmp_path and layout.data_root("d") == Path("d")
    (tmp_path / "benchmark" / "Set14" / "HR").mkdir(parents=True)
    assert resolve_benchmark("set14") == tmp_path / "benchmark" / "Set14"
    monkeypatch.setenv("CCLNN_CACHE", str(tmp_path / "cache"))
    assert layout.cache_root() == tmp_path / "cache"
    monkeypatch.delenv("CCLNN_CACHE")
    assert layout.cache_root() == Path.home() / ".cache" / "cclnn"


# ----------------------------------------------------------------------------- degradation

@pytest.mark.parametrize("scale", [2, 3, 4])
def test_degrade_is_the_matlab_benchmark_lr(scale):
    hr = read_image(set5_hr("bird"))
    lr = degrade(hr, scale)
    assert lr.dtype == np.uint8 and np.array_equal(lr, read_image(set5_lr("bird", scale)))
    odd = tiny_image(23, 17, scale)
    assert np.array_equal(degrade(odd, scale), imresize(mod_crop(odd, scale), 1 / scale))
    assert degrade(odd, scale).shape == (23 // scale, 17 // scale, 3)
    assert mod_crop(odd, scale).shape == (23 - 23 % scale, 17 - 17 % scale, 3)
