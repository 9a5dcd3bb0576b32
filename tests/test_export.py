"""``cclnn export --format onnx|torchscript``: every network family exported, run by
onnxruntime / torch.jit.load against PyTorch; the refusals are one line and write nothing."""
import numpy as np
import pytest
import torch

import cclnn
from cclnn.cli import main
from cclnn.export import TOLERANCE, ExportError, export_network, check_images
from conftest import ROOT, shared_path, tiny_weights

SMALL = (20, 24)  # 480 positions: three NLSA chunks, and a second size of 16x31
NARROW = {"edsr-s": {}, "rcan-s": {}, "a2n": {"channels": 8, "up_channels": 8, "n_blocks": 2},
          "divanet-s": {"channels": 16, "n_groups": 1, "n_blocks": 1},
          "rnan-s": {"channels": 8}, "nlsn-s": {"n_resblocks": 2}, "cclnn-s": {"n_resblocks": 2}}


def _narrow(name: str, scale: int = 2):
    model = cclnn.build_model(name, scale, **NARROW.get(name, {})).eval()
    with torch.no_grad():  # trained-looking non-local blocks (RNAN's start as the identity)
        for module in model.modules():
            if hasattr(module, "out") and isinstance(module.out, torch.nn.Conv2d):
                module.out.weight.normal_(0, 0.1)
    return model


@pytest.mark.parametrize("name", list(NARROW))
def test_every_family_exports_to_onnx_with_free_sizes(name, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime
    model = _narrow(name)
    check = export_network(model, tmp_path / "m.onnx", "onnx", name, SMALL)
    assert check.any_size and check.max_difference <= TOLERANCE
    assert check.sizes == ((20, 24), (16, 31))
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    x = torch.rand(1, 3, 11, 13) * 255  # a third size, never traced nor checked
    got = session.run(None, {"lr": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - model(x).numpy()).max() <= TOLERANCE
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.parametrize("name", ["cclnn-s", "a2n"])  # (RNAN: the same tracing, 14 s here)
def test_torchscript_holds_for_any_size(name, tmp_path):
    model = _narrow(name, scale=3)
    check = export_network(model, tmp_path / "m.pt", "torchscript", name, SMALL)
    assert check.any_size and check.max_difference <= TOLERANCE
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    x = torch.rand(2, 3, 9, 14) * 255
    with torch.no_grad():
        assert loaded(x).shape == (2, 3, 27, 42)
        assert (loaded(x) - model(x)).abs().max() <= TOLERANCE


@pytest.mark.parametrize("name", ["srcnn", "vdsr"])
def test_bicubic_networks_refuse_onnx_in_one_line_and_trace_for_one_size(name, tmp_path,
                                                                         capsys):
    weights = tiny_weights(tmp_path / "w.safetensors", name, 2)
    code = main(["export", str(weights), "--format", "onnx", "-o", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{name} x2 cannot be exported to ONNX" in err and "--format torchscript" in err
    assert not (tmp_path / "m.onnx").exists()
    code = main(["export", str(weights), "--format", "torchscript", "--size", "12x10",
                 "-o", str(tmp_path / "m.pt")])
    out = capsys.readouterr().out
    assert code == 0 and "traced for 12x10 inputs only" in out
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    assert loaded(torch.rand(1, 3, 12, 10) * 255).shape == (1, 3, 24, 20)


def test_cli_exports_a_recorded_file_and_prints_the_difference(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    weights = tiny_weights(tmp_path / "w.safetensors", "edsr-s", 3)
    code = main(["export", str(weights), "--format", "onnx", "--size", "20x24",
                 "-o", str(tmp_path / "m.onnx")])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith(f"{tmp_path / 'm.onnx'}: edsr-s x3 as onnx (h and w "
                                        "free); max abs difference to PyTorch ")
    assert "on 20x24 and 16x31 ([0, 255];" in out


def test_an_export_that_does_not_match_is_not_written(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    import cclnn.export as export
    monkeypatch.setattr(export, "_difference", lambda run, model, x: 0.5)
    target = tmp_path / "m.onnx"
    target.write_bytes(b"earlier")
    with pytest.raises(ExportError, match=r"m.onnx: not written: the onnx export of edsr-s x2 "
                                          r"differs from PyTorch by 0.5 \(over 0.001"):
        export_network(_narrow("edsr-s"), target, "onnx", "edsr-s x2", SMALL)
    assert target.read_bytes() == b"earlier" and sorted(tmp_path.iterdir()) == [target]


def test_missing_output_folder_and_bad_size_are_one_line(tmp_path, capsys):
    weights = tiny_weights(tmp_path / "w.safetensors", "edsr-s", 2)
    code = main(["export", str(weights), "--format", "torchscript",
                 "-o", str(tmp_path / "no" / "m.pt")])
    err = capsys.readouterr().err
    assert code == 2 and err == (f"cclnn export: error: -o {tmp_path / 'no' / 'm.pt'}: folder "
                                 f"{tmp_path / 'no'} does not exist\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(weights), "--format", "onnx", "--size", "1x5", "-o", "m.onnx"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "--size: each side must be at least 2, got 1x5" in err


def test_check_images_are_the_asked_sizes_in_range():
    first, second = check_images((300, 7))  # larger than butterfly: mirrored
    assert first.shape == (1, 3, 300, 7) and second.shape == (2, 3, 226, 9)
    assert 0 <= float(first.min()) and float(first.max()) <= 255


@pytest.mark.slow
@pytest.mark.parametrize("weights, options", [
    (ROOT / "cclnn" / "pretrained" / "cclnn-t_x2.safetensors", []),
    ("a2n/aan_x2.pt", ["--model", "a2n", "--scale", "2"])])
def test_shipped_cclnn_t_and_official_a2n_match_pytorch_in_onnx(weights, options, tmp_path,
                                                                capsys):
    pytest.importorskip("onnxruntime")
    path = weights if isinstance(weights, type(ROOT)) else shared_path("weights", weights)
    code = main(["export", str(path), *options, "--format", "onnx",
                 "-o", str(tmp_path / "m.onnx")])
    out = capsys.readouterr().out
    assert code == 0 and "(h and w free); max abs difference to PyTorch" in out
    difference = float(out.split("PyTorch ")[1].split()[0])
    assert difference <= TOLERANCE
