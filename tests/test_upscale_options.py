"""``cclnn upscale --precision/--outscale/--suffix/--ext``: names, formats, sizes, refusals."""
import numpy as np
import pytest
from PIL import Image

import cclnn
from cclnn.cli import main
from cclnn.data.images import read_image, write_image
from conftest import tiny_image, tiny_weights


@pytest.fixture
def weights(tmp_path):
    return str(tiny_weights(tmp_path / "w.safetensors", "srcnn", 2))


def _one_line_error(capsys, code: int, text: str) -> None:
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("cclnn upscale: error: ") and text in err, err


def test_outscale_is_the_network_then_matlab_bicubic(tmp_path, weights, capsys):
    image = tiny_image(10, 8, 1)
    write_image(tmp_path / "a.png", image)
    net = cclnn.create_model(None, 2, weights)
    x2 = cclnn.upscale(image, 2, net)
    for outscale, name, size in (("3", "a_x3.png", (30, 24)), ("1.5", "a_x1.5.png", (15, 12))):
        code = main(["upscale", str(tmp_path / "a.png"), "--weights", weights,
                     "--outscale", outscale])
        assert code == 0 and capsys.readouterr().out.endswith(f"{name}\n")
        out = read_image(tmp_path / name)
        assert out.shape[:2] == size
        assert np.array_equal(out, cclnn.imresize(x2, float(outscale) / 2))
    assert np.array_equal(cclnn.upscale(image, 2, net, outscale=1.5), read_image(
        tmp_path / "a_x1.5.png"))


def test_outscale_counts_in_the_size_check(tmp_path, weights, capsys):
    write_image(tmp_path / "a.png", tiny_image(10, 8, 1))
    code = main(["upscale", str(tmp_path / "a.png"), "--weights", weights, "--outscale", "4",
                 "--max-output-pixels", "1000"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "8x10 at x4 makes 32x40 (0 Mpx), over the limit of 0 Mpx" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "w.safetensors"]


def test_suffix_names_outputs_and_they_are_never_inputs_again(tmp_path, weights, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png", tiny_image(6, 5, 2))
    assert main(["upscale", str(folder), "--weights", weights]) == 0  # default suffix x2
    assert main(["upscale", str(folder), "--weights", weights, "--suffix", "big"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_big.png", "a_x2.png"]
    code = main(["upscale", str(folder), "--weights", weights, "--suffix", "big"])
    out = capsys.readouterr().out
    assert code == 0 and out == "x2: upscaled 0, skipped 1, failed 0 (of 1 image(s))\n"
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_big.png", "a_x2.png"]


@pytest.mark.parametrize("suffix", ["", "a/b", "x\ny"])
def test_a_suffix_that_leaves_the_folder_is_one_line(tmp_path, weights, capsys, suffix):
    write_image(tmp_path / "a.png", tiny_image(6, 5, 2))
    code = main(["upscale", str(tmp_path / "a.png"), "--weights", weights, "--suffix", suffix])
    _one_line_error(capsys, code, "--suffix ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "w.safetensors"]


def test_ext_picks_the_format_and_other_formats_are_earlier_outputs(tmp_path, weights, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    rgba = np.dstack([tiny_image(6, 5, 3), np.full((6, 5), 200, np.uint8)])
    write_image(folder / "a.png", rgba)
    for ext, fmt, mode in (("jpg", "JPEG", "RGB"), ("webp", "WEBP", "RGBA"),
                           ("tif", "TIFF", "RGBA"), ("auto", "PNG", "RGBA")):
        assert main(["upscale", str(folder), "--weights", weights, "--ext", ext]) == 0
        name = "a_x2." + {"auto": "png"}.get(ext, ext)
        with Image.open(folder / name) as im:
            assert (im.format, im.mode, im.size) == (fmt, mode, (10, 12))
    capsys.readouterr()
    assert main(["upscale", str(folder), "--weights", weights, "--ext", "jpg"]) == 0
    assert capsys.readouterr().out == "x2: upscaled 0, skipped 1, failed 0 (of 1 image(s))\n"


def test_ext_against_a_named_output_file_is_one_line(tmp_path, weights, capsys):
    write_image(tmp_path / "a.png", tiny_image(6, 5, 2))
    code = main(["upscale", str(tmp_path / "a.png"), "--weights", weights, "--ext", "jpg",
                 "-o", str(tmp_path / "out.png")])
    _one_line_error(capsys, code, "--ext jpg: the output")
    assert not (tmp_path / "out.png").exists()


def test_bf16_is_close_to_fp32_and_fp16_is_refused_on_the_cpu(tmp_path, capsys):
    weights = str(tiny_weights(tmp_path / "w.safetensors", "edsr-s", 2, n_resblocks=1))
    write_image(tmp_path / "a.png", tiny_image(12, 10, 4))
    for precision in ("fp32", "bf16"):
        assert main(["upscale", str(tmp_path / "a.png"), "--weights", weights, "--device",
                     "cpu", "--precision", precision, "--suffix", precision]) == 0
    fp32, bf16 = (read_image(tmp_path / f"a_{p}.png").astype(int) for p in ("fp32", "bf16"))
    assert 0 < np.abs(fp32 - bf16).max() <= 8 and np.abs(fp32 - bf16).mean() < 2
    capsys.readouterr()
    code = main(["upscale", str(tmp_path / "a.png"), "--weights", weights, "--device", "cpu",
                 "--precision", "fp16", "--suffix", "fp16"])
    _one_line_error(capsys, code, "--precision fp16: not on the CPU")
    assert not (tmp_path / "a_fp16.png").exists()


def test_threads_set_the_tile_workers_not_the_output(tmp_path, weights, capsys):
    import torch
    write_image(tmp_path / "a.png", tiny_image(40, 30, 1))
    previous = torch.get_num_threads()
    try:
        outputs = []
        for threads in ("1", "2"):
            code = main(["upscale", str(tmp_path / "a.png"), "--weights", weights, "--tile", "12",
                         "--threads", threads, "--overwrite"])
            assert code == 0 and torch.get_num_threads() == int(threads)
            outputs.append(read_image(tmp_path / "a_x2.png"))
        assert np.array_equal(*outputs)
    finally:
        torch.set_num_threads(previous)
    with pytest.raises(SystemExit) as exc:
        main(["upscale", str(tmp_path / "a.png"), "--threads", "0"])
    assert exc.value.code == 2 and "--threads" in capsys.readouterr().err
