"""Weights files at the edges: a file trained here rebuilds its own network from its JSON
record; integer, NaN or infinite tensors, decompression bombs, absurd headers and unknown
contents are one-line WeightsErrors naming the file (and the key), told by content, not name."""
import json
import struct
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

import cclnn
from cclnn.cli import main
from cclnn.weights import METADATA_KEY, WeightsError, read_state_dict
from conftest import ROOT, tiny_image_folder

NARROW = dict(channels=8, n_resblocks=1)  # not edsr-baseline's 64 x 16
SMALL_SRCNN = dict(kernels=(3, 1, 3), channels=4, mid_channels=2)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _image(path, size=12):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), np.uint8)).save(path)
    return path


def _exported(tmp_path):
    """A `cclnn train` best.pt of a narrow edsr-baseline, exported with `cclnn export`."""
    model = cclnn.build_model("edsr-baseline", 2, **NARROW)
    torch.save({"model": model.state_dict(), "iteration": 7, "config": {
        "name": "tiny", "model": {"name": "edsr-baseline", "scale": 2, "options": NARROW}}},
        tmp_path / "best.pt")
    out = tmp_path / "mine.safetensors"
    assert main(["export", str(tmp_path / "best.pt"), "-o", str(out)]) == 0
    return tmp_path / "mine.safetensors"


def test_saved_metadata_is_one_json_record(tmp_path):
    path = _exported(tmp_path)
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    assert list(metadata) == [METADATA_KEY]
    record = json.loads(metadata[METADATA_KEY])
    assert record["model"] == "edsr-baseline" and record["scale"] == 2
    assert record["options"] == {"channels": 8, "n_resblocks": 1, "res_scale": 1.0,
                                 "rgb_range": 255.0}
    assert record["run"] == "tiny" and record["iteration"] == 7


def test_exported_run_upscales_and_tests_from_the_cli(tmp_path, capsys):
    path = _exported(tmp_path)
    source, out = _image(tmp_path / "a.png"), tmp_path / "out.png"
    for model in (["--model", "edsr-baseline"], []):  # --model may be omitted
        assert main(["upscale", *model, "--weights", str(path), str(source), "-o", str(out),
                     "--overwrite", "--device", "cpu"]) == 0
        assert Image.open(out).size == (24, 24)
    capsys.readouterr()
    assert main(["test", "--weights", str(path), "--scale", "2", "--datasets", "Set5",
                 "--device", "cpu", "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)["results"]
    assert result["dataset"] == "Set5" and result["psnr"] > 0


def test_loaded_network_has_the_files_options(tmp_path):
    path = _exported(tmp_path)
    for name in ("edsr-baseline", None):
        model = cclnn.create_model(name, 2, path)
        assert model.info.name == "edsr-baseline" and model.info.config.channels == 8
        assert model.info.config.n_resblocks == 1
    best = cclnn.create_model(None, 2, tmp_path / "best.pt")  # the checkpoint's config too
    assert best.info.config.channels == 8


def test_contradicting_model_or_scale_is_one_line_naming_both(tmp_path, capsys):
    path = _exported(tmp_path)
    source = _image(tmp_path / "a.png")
    assert main(["upscale", "--model", "cclnn-t", "--weights", str(path), str(source)]) == 2
    err = _one_error_line(capsys)
    assert "--model cclnn-t" in err and "'edsr-baseline'" in err and str(path) in err
    assert main(["upscale", "--scale", "3", "--weights", str(path), str(source)]) == 2
    assert "--scale 3" in _one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "best.pt", "mine.safetensors"]


def test_files_without_a_record_still_load_with_a_model_name(tmp_path, capsys):
    model = cclnn.build_model("edsr-baseline", 2, **NARROW)
    old = {"model": "edsr-baseline", "scale": "2", "options": repr(NARROW)}  # the old repr form
    save_file(model.state_dict(), str(tmp_path / "old.safetensors"), metadata=old)
    loaded = cclnn.create_model("edsr-baseline", 2, tmp_path / "old.safetensors", **NARROW)
    assert loaded.info.config.channels == 8
    source = _image(tmp_path / "a.png")
    # without --model its network is detected from its tensors (tests/test_detect.py); the
    # option the tensors cannot tell (res_scale) is named in one warning line
    assert main(["upscale", "--weights", str(tmp_path / "old.safetensors"), str(source)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and "res_scale=0.1" in err[0]
    assert (tmp_path / "a_x2.png").is_file()


def test_upscale_default_is_still_the_shipped_cclnn_t(tmp_path, capsys):
    source = _image(tmp_path / "a.png", 8)
    assert main(["upscale", str(source), "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "a_x2.png").size == (16, 16)


def _with(tmp_path, name, key_value):
    state = cclnn.build_model("srcnn", 2, **SMALL_SRCNN).state_dict()
    key = sorted(state)[1]
    state[key] = key_value(state[key])
    save_file(state, str(tmp_path / name))
    return tmp_path / name, key


@pytest.mark.parametrize("name, change, words", [
    ("nan.safetensors", lambda t: torch.full_like(t, float("nan")), "NaN or infinite"),
    ("inf.safetensors", lambda t: torch.full_like(t, float("inf")), "NaN or infinite"),
    ("int.safetensors", lambda t: t.long(), "int64, not floating point"),
])
def test_unusable_tensors_are_refused_naming_file_and_key(tmp_path, capsys, name, change, words):
    path, key = _with(tmp_path, name, change)
    source = _image(tmp_path / "a.png")
    assert main(["upscale", "--model", "srcnn", "--weights", str(path), str(source)]) == 2
    err = _one_error_line(capsys)
    assert str(path) in err and f"'{key}'" in err and words in err
    assert not (tmp_path / "a_x2.png").exists()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_accepted_and_cast(tmp_path, dtype):
    model = cclnn.build_model("srcnn", 2, **SMALL_SRCNN)
    save_file({k: v.to(dtype) for k, v in model.state_dict().items()}, str(tmp_path / "h.st"))
    loaded = cclnn.create_model("srcnn", 2, tmp_path / "h.st", **SMALL_SRCNN)
    assert all(v.dtype == torch.float32 for v in loaded.state_dict().values())


def test_zip_bomb_is_refused_before_torch_load(tmp_path, monkeypatch):
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb/data.pkl", b"\0" * (8 << 20))  # 8 MiB from a few KiB
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(WeightsError) as error:
        read_state_dict(path)
    message = str(error.value)
    assert str(path) in message and str(8 << 20) in message and str(path.stat().st_size) in message
    assert "\n" not in message


def test_absurd_safetensors_header_is_one_line(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 60) + b"{}")
    with pytest.raises(WeightsError, match=r"header claims 1152921504606846976 bytes in a file "
                                           r"of 10 bytes"):
        read_state_dict(path)


def test_format_is_told_by_content_not_by_name(tmp_path):
    model = cclnn.build_model("srcnn", 2, **SMALL_SRCNN)
    cclnn.save_weights(model, tmp_path / "st.pt")  # safetensors under a .pt name
    torch.save(model.state_dict(), tmp_path / "pt.safetensors")  # and the other way round
    for name in ("st.pt", "pt.safetensors"):
        state = read_state_dict(tmp_path / name)
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    for content, what in ((b"", "an empty file"), (b"hello world", "starts with b'hello wo'")):
        (tmp_path / "x.pt").write_bytes(content)
        with pytest.raises(WeightsError, match=f"x.pt: not a weights file \\({what};"):
            read_state_dict(tmp_path / "x.pt")


@pytest.mark.slow
def test_a_tiny_training_run_is_usable_from_the_cli(tmp_path, capsys):
    """The whole path: `cclnn train` a narrow EDSR, `cclnn export` it, upscale and test with
    the file alone (no --model), getting the run's own validation PSNR."""
    config = ROOT / "configs" / "cpu" / "edsr-baseline-tiny_x2.yaml"
    train = tiny_image_folder(tmp_path / "hr", 8, 8, 8, 0, block=6)  # 48x48: 2 batches of 4
    assert main(["train", str(config), f"out_dir={tmp_path}", "device=cpu", "epochs=1",
                 f"data.train=[{{hr: {train}}}]", "val.every=2", "checkpoint_every=2",
                 "--no-progress"]) == 0
    run = tmp_path / "edsr-baseline-tiny_x2"
    weights = tmp_path / "mine.safetensors"
    assert main(["export", str(run / "best.pt"), "-o", str(weights)]) == 0
    source = _image(tmp_path / "a.png")
    assert main(["upscale", "--weights", str(weights), str(source), "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "a_x2.png").size == (24, 24)
    capsys.readouterr()
    assert main(["test", "--weights", str(weights), "--scale", "2", "--datasets", "Set5",
                 "--device", "cpu", "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)["results"]
    best = torch.load(run / "best.pt", weights_only=True)
    assert result["psnr"] == pytest.approx(best["psnr"], abs=1e-3)
    assert cclnn.create_model(None, 2, weights).info.config.channels == 16
