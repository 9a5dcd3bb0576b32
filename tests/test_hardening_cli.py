"""CLI-wide edges: devices this machine lacks, --version, usage errors in the user's words,
error lines that a hostile file name cannot break or colour, Python warnings as one line."""
import argparse
import importlib.metadata
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from cclnn.cli import main
from cclnn.cli.common import printable_line, run_command
from cclnn.errors import CclnnError
from cclnn.inference import resolve_device


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err.rstrip("\n")


def _image(path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    return path


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="about machines without MPS")
@pytest.mark.parametrize("device, words", [
    ("mps", "--device mps: MPS is not available in this build of torch"),
    ("tpu", "--device tpu: unknown device (use auto, cpu or cuda[:N])"),
    ("meta", "--device meta: not a device cclnn runs on (use auto, cpu or cuda)"),
    ("cuda:99", "--device cuda:99: "),
])
def test_unavailable_devices_are_one_line(tmp_path, capsys, device, words):
    with pytest.raises(CclnnError) as error:
        resolve_device(device)
    assert str(error.value).startswith(words)
    source = _image(tmp_path / "a.png")
    assert main(["upscale", str(source), "--device", device]) == 2
    assert _one_error_line(capsys).startswith(f"cclnn upscale: error: {words}")
    assert not (tmp_path / "a_x2.png").exists()


def test_cpu_and_auto_devices_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")


def test_version(capsys):
    with pytest.raises(SystemExit) as leave:
        main(["--version"])
    assert leave.value.code == 0
    assert capsys.readouterr().out == f"cclnn {importlib.metadata.version('cclnn')}\n"


@pytest.mark.parametrize("argv, expected", [
    (["upscale", "a.png", "--scale", "5"], "--scale: must be 2, 3 or 4, got 5"),
    (["upscale", "a.png", "--scale", "two"], "--scale: must be 2, 3 or 4, got two"),
    (["data", "make-lr", "hr", "--scales", "8"], "--scales: must be 2, 3 or 4, got 8"),
    (["data", "fetch", "benchmark", "--scales", "5"], "--scales: must be 2, 3 or 4, got 5"),
    (["data", "fetch", "benchmark", "--timeout", "-1"], "--timeout: must be above 0, got -1"),
    (["data", "fetch", "benchmark", "--retries", "x"], "--retries: expected a whole number"),
    (["compare", "a.png", "--models", "bicubic", "--box", "1", "2", "3", "q"],
     "--box: expected a whole number, got 'q'"),
])
def test_usage_errors_are_in_the_users_words(capsys, argv, expected):
    with pytest.raises(SystemExit) as leave:
        main(argv)
    assert leave.value.code == 2
    err = _one_error_line(capsys)
    assert expected in err and "argument" not in err and "_scale_list" not in err
    assert "invalid" not in err and "int value" not in err


def test_control_characters_in_names_are_escaped(tmp_path, capsys):
    source = _image(tmp_path / "a.png")
    weights = tmp_path / "evil\x1b[31m\nred.pt"
    assert main(["upscale", "--model", "srcnn", "--weights", str(weights), str(source)]) == 2
    err = _one_error_line(capsys)
    assert "\x1b" not in err and "\\x1b[31m red.pt: weights file not found" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_printable_line():
    assert printable_line("a\r\n  b\n\nc\td\u202e\x7f") == "a b c\\td\\u202e\\x7f"
    assert printable_line("naïve — ok") == "naïve — ok"


def test_python_warnings_are_one_line(capsys):
    def noisy(args):
        warnings.warn("first line\nsecond line", UserWarning)
        return 0
    assert run_command(argparse.Namespace(func=noisy, command="noisy")) == 0
    err = capsys.readouterr().err
    assert err == "cclnn noisy: warning: first line second line\n"
    assert warnings.showwarning.__module__ == "warnings"  # restored afterwards


@pytest.mark.parametrize("content", [[], ["notes.txt"]])
def test_make_lr_without_images_is_an_error(tmp_path, capsys, content):
    hr = tmp_path / "HR"
    hr.mkdir()
    for name in content:
        (hr / name).write_text("x")
    assert main(["data", "make-lr", str(hr)]) == 2
    assert _one_error_line(capsys).startswith(f"cclnn data make-lr: error: {hr}: no images in")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["HR"]


def test_make_lr_keeps_existing_outputs_unless_overwrite(tmp_path, capsys):
    hr = tmp_path / "HR"
    hr.mkdir()
    Image.fromarray(np.full((12, 12, 3), 200, np.uint8)).save(hr / "a.png")
    Image.fromarray(np.full((12, 12, 3), 100, np.uint8)).save(hr / "b.png")
    mine = tmp_path / "LR_bicubic" / "X2" / "ax2.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own file")
    assert main(["data", "make-lr", str(hr), "--scales", "2"]) == 0
    out = capsys.readouterr().out
    assert out == (f"wrote 1 LR image(s) under {tmp_path / 'LR_bicubic'}; kept 1 existing "
                   "(--overwrite replaces them)\n")
    assert mine.read_bytes() == b"my own file"
    assert Image.open(tmp_path / "LR_bicubic" / "X2" / "bx2.png").size == (6, 6)
    assert main(["data", "make-lr", str(hr), "--scales", "2", "--overwrite"]) == 0
    assert capsys.readouterr().out == f"wrote 2 LR image(s) under {tmp_path / 'LR_bicubic'}\n"
    assert Image.open(mine).size == (6, 6)
