"""``cclnn inspect`` and official files without ``--model`` on the command line: the network,
scale and options come from the file's record or from its tensors (cclnn/detect.py)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cclnn
from cclnn.cli import main
from cclnn.models import count_parameters
from test_detect import A2N_OFFICIAL, official_state

SMALL_A2N = dict(channels=8, up_channels=4, n_blocks=1, reduction=2)


def _official_a2n(path: Path, scale: int) -> Path:
    torch.manual_seed(0)
    torch.save(official_state(cclnn.build_model("a2n", scale, **SMALL_A2N)), path)
    return path


def _image(path: Path, size: int = 6) -> Path:
    Image.fromarray(np.full((size, size, 3), 100, np.uint8)).save(path)
    return path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def test_upscale_without_model_or_scale_builds_what_the_file_is(tmp_path, capsys):
    weights = _official_a2n(tmp_path / "aan_x3.pt", 3)
    source = _image(tmp_path / "photo.png")
    assert main(["upscale", str(source), "--weights", str(weights), "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "photo_x3.png").size == (18, 18)
    # no registry size: the option no tensor shows is named, in one warning line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and "temperature=30.0" in err[0]


def test_a_model_or_scale_that_contradicts_the_tensors_is_one_line_naming_both(tmp_path,
                                                                               capsys):
    weights = _official_a2n(tmp_path / "aan_x2.pt", 2)
    source = _image(tmp_path / "photo.png")
    assert main(["upscale", str(source), "--weights", str(weights), "--model", "edsr"]) == 2
    err = _one_error_line(capsys)
    assert "--model edsr" in err and "'a2n'" in err and str(weights) in err
    assert main(["upscale", str(source), "--weights", str(weights), "--scale", "4"]) == 2
    err = _one_error_line(capsys)
    assert "--scale 4" in err and "x2" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aan_x2.pt", "photo.png"]


def test_a_file_of_no_registry_network_or_of_unknown_scale_is_one_line(tmp_path, capsys):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "mystery.pt")
    source = _image(tmp_path / "photo.png")
    assert main(["upscale", str(source), "--weights", str(tmp_path / "mystery.pt")]) == 2
    err = _one_error_line(capsys)
    assert "--model: required" in err and "no registry network fits" in err and "fc.weight" in err
    weights = _official_a2n(tmp_path / "a2n.pt", 2)
    assert main(["upscale", str(source), "--weights", str(weights)]) == 2
    err = _one_error_line(capsys)
    assert "x2, x3" in err and "give the scale" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a2n.pt", "mystery.pt", "photo.png"]
    assert main(["upscale", str(source), "--weights", str(weights), "--scale", "3"]) == 0
    assert Image.open(tmp_path / "photo_x3.png").size == (18, 18)


@pytest.mark.skipif(not A2N_OFFICIAL.is_file(), reason="the official A2N x2 file is not here")
def test_inspect_names_the_official_a2n_file(capsys):
    assert main(["inspect", str(A2N_OFFICIAL)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "network:     a2n (detected from its keys and shapes)"
    assert out[2].startswith("scale:       x2 (from the file name")
    assert "options:     channels=40, up_channels=24, n_blocks=16, reduction=4 (detected)" in out
    assert "options:     temperature=30.0 (not in the weights: default used)" in out
    assert "value range: [0, 255] (no mean shift)" in out
    assert main(["inspect", str(A2N_OFFICIAL), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["network"], report["scale"], report["source"]) == ("a2n", 2, "detected")
    assert report["parameters"] == count_parameters("a2n", 2)
    assert report["option_sources"]["temperature"] == "default"


def test_inspect_of_a_file_with_a_record_says_so(tmp_path, capsys):
    model = cclnn.build_model("edsr-s", 4, n_resblocks=1)
    cclnn.save_weights(model, tmp_path / "w.safetensors")
    assert main(["inspect", str(tmp_path / "w.safetensors"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["network"], report["scale"], report["source"]) == ("edsr-s", 4, "record")
    assert report["options"]["n_resblocks"] == 1 and report["value_range"] == 1.0
    assert set(report["option_sources"].values()) == {"recorded"}


def test_inspect_lists_the_candidates_of_an_ambiguous_file(tmp_path, capsys):
    weights = _official_a2n(tmp_path / "a2n.pt", 2)
    assert main(["inspect", str(weights), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["network"] is None and "give the scale" in report["ambiguity"]
    assert [(c["network"], c["scale"]) for c in report["candidates"]] == [("a2n", 2), ("a2n", 3)]
    assert main(["inspect", str(weights)]) == 0
    out = capsys.readouterr().out
    assert "network:     ambiguous" in out and "candidate:   a2n x3" in out


def test_inspect_of_no_weights_is_one_line(tmp_path, capsys):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "mystery.pt")
    assert main(["inspect", str(tmp_path / "mystery.pt")]) == 2
    err = _one_error_line(capsys)
    assert err.startswith("cclnn inspect: error: ") and "1 tensors: fc.weight" in err
    assert main(["inspect", str(_image(tmp_path / "photo.png"))]) == 2
    assert "not a weights file" in _one_error_line(capsys)
