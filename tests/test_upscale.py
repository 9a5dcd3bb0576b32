"""cclnn upscale: formats, alpha, grayscale, EXIF, overwrite refusal, failures, tiny images."""
import numpy as np
import pytest
import torch
from PIL import Image

import cclnn
from cclnn.cli import main
from cclnn.resize import imresize


@pytest.fixture
def weights(tmp_path):
    from conftest import tiny_weights
    torch.manual_seed(0)
    return tiny_weights(tmp_path / "srcnn_x2.safetensors", "srcnn", 2)


def photo(h=20, w=28, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR))


def run(args, weights):
    return main(["upscale", *map(str, args), "--model", "srcnn", "--weights", str(weights),
                 "--device", "cpu"])


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_formats_round_trip(tmp_path, weights, suffix, capsys):
    src = tmp_path / f"in{suffix}"
    Image.fromarray(photo()).save(src)
    assert run([src], weights) == 0
    out = tmp_path / f"in_x2{suffix}"
    with Image.open(out) as im:
        assert im.size == (56, 40) and im.format == Image.open(src).format
    assert str(out) in capsys.readouterr().out


def test_alpha_is_bicubic_and_gray_stays_gray(tmp_path, weights):
    rgba = np.dstack([photo(), np.tile(np.arange(28, dtype=np.uint8) * 9, (20, 1))])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    Image.fromarray(photo()[..., 1]).save(tmp_path / "g.png")
    assert run([tmp_path / "a.png", tmp_path / "g.png", "-o", tmp_path / "out"], weights) == 0
    with Image.open(tmp_path / "out" / "a_x2.png") as im:
        assert im.mode == "RGBA"
        alpha = np.asarray(im)[..., 3]
    expected = imresize(rgba[..., 3].astype(np.float64), 2).round().clip(0, 255)
    assert np.array_equal(alpha, expected.astype(np.uint8))
    with Image.open(tmp_path / "out" / "g_x2.png") as im:
        assert im.mode == "L" and im.size == (56, 40)


def test_exif_orientation_is_applied(tmp_path, weights):
    img = Image.fromarray(photo(20, 28))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    img.save(tmp_path / "r.jpg", exif=exif)
    assert run([tmp_path / "r.jpg"], weights) == 0
    with Image.open(tmp_path / "r_x2.jpg") as im:
        assert im.size == (40, 56)  # upright: the 28-wide image became 28 tall
        assert im.getexif().get(0x0112) in (None, 1)


def test_existing_output_skipped_then_overwritten(tmp_path, weights, capsys):
    Image.fromarray(photo()).save(tmp_path / "p.png")
    assert run([tmp_path / "p.png"], weights) == 0
    before = (tmp_path / "p_x2.png").read_bytes()
    Image.fromarray(photo(seed=3)).save(tmp_path / "p.png")
    capsys.readouterr()
    assert run([tmp_path / "p.png"], weights) == 0  # a re-run: skipped, not a failure
    out, err = capsys.readouterr()
    assert err == (f"cclnn upscale: skipped: {tmp_path / 'p_x2.png'}: exists (use --overwrite "
                   f"to replace it)\n")
    assert out == "x2: upscaled 0, skipped 1, failed 0 (of 1 image(s))\n"
    assert (tmp_path / "p_x2.png").read_bytes() == before
    assert main(["upscale", str(tmp_path / "p.png"), "--model", "srcnn", "--weights",
                 str(weights), "--overwrite", "--device", "cpu"]) == 0
    assert (tmp_path / "p_x2.png").read_bytes() != before


def test_corrupt_file_among_good_ones(tmp_path, weights, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(photo(seed=i)).save(folder / f"ok{i}.png")
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (folder / "notes.txt").write_text("not an image")
    assert run([folder, "-o", tmp_path / "out"], weights) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "bad.png" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok0_x2.png", "ok1_x2.png"]
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind


def test_glob_and_missing_inputs(tmp_path, weights, capsys):
    for i in range(2):
        Image.fromarray(photo(seed=i)).save(tmp_path / f"g{i}.png")
    assert run([str(tmp_path / "g*.png"), "-o", tmp_path / "o"], weights) == 0
    assert len(list((tmp_path / "o").glob("*.png"))) == 2
    assert run([tmp_path / "nothing.png"], weights) == 1
    assert "nothing.png: file not found" in capsys.readouterr().err
    # named as one output file: still the input's own error, not "several inputs"
    assert run([tmp_path / "nothing.png", "-o", tmp_path / "out.png"], weights) == 1
    err = capsys.readouterr().err
    assert "nothing.png: file not found" in err and "several inputs" not in err


def test_one_pixel_image(tmp_path, weights):
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(tmp_path / "dot.png")
    assert run([tmp_path / "dot.png", "--scale", "2"], weights) == 0
    with Image.open(tmp_path / "dot_x2.png") as im:
        assert im.size == (2, 2)


def test_python_api_types_and_tiling():
    net = cclnn.build_model("edsr-baseline", 3, n_resblocks=2, channels=16)
    arr = photo(30, 41)
    out = cclnn.upscale(arr, 3, model=net, tile=0, device="cpu")
    assert isinstance(out, np.ndarray) and out.shape == (90, 123, 3) and out.dtype == np.uint8
    tiled = cclnn.upscale(arr, 3, model=net, tile=12, device="cpu")  # overlap 16 > RF radius
    assert np.abs(out.astype(int) - tiled.astype(int)).max() <= 1
    pil = cclnn.upscale(Image.fromarray(arr), 3, model=net, device="cpu")
    assert isinstance(pil, Image.Image) and pil.size == (123, 90)
    gray = cclnn.upscale(arr[..., 0], 3, model=net, device="cpu")
    assert gray.shape == (90, 123)
    with pytest.raises(cclnn.errors.CclnnError, match="x3"):
        cclnn.upscale(arr, 2, model=net)


SHIPPED_SCALES = [s for s in (2, 3, 4) if cclnn.weights.shipped_weights("cclnn-t", s)]


def test_weights_of_every_scale_ship_with_the_package():
    assert SHIPPED_SCALES == [2, 3, 4]


@pytest.mark.parametrize("scale", SHIPPED_SCALES)
def test_shipped_weights_beat_bicubic(scale):
    """The default model of `cclnn upscale` is trained: on a bundled Set5 image it is well
    above bicubic (the full Set5/Set14/B100 figures are in the README)."""
    from cclnn.assets import set5_hr, set5_lr
    from cclnn.data.images import read_image
    from cclnn.metrics import psnr
    hr = read_image(set5_hr("bird"))
    hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale]
    lr = read_image(set5_lr("bird", scale))
    sr = cclnn.upscale(lr, scale=scale, device="cpu")  # no --weights: the shipped file
    assert psnr(hr, sr, scale) > psnr(hr, imresize(lr, scale), scale) + 1.5


def _bird(scale):
    from cclnn.assets import set5_hr, set5_lr
    from cclnn.data.images import read_image
    hr = read_image(set5_hr("bird"))
    hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale]
    return hr, set5_lr("bird", scale)


@pytest.mark.gpu
def test_upscale_command_on_cuda_scores_as_on_the_cpu(tmp_path):
    """`cclnn upscale --device cuda` with the shipped weights: the picture of the CPU, to
    within what TF32 convolutions change (PSNR against HR within 0.01 dB)."""
    from cclnn.data.images import read_image
    from cclnn.metrics import psnr
    hr, lr_file = _bird(2)
    for device in ("cpu", "cuda"):
        assert main(["upscale", str(lr_file), "-o", str(tmp_path / f"bird_{device}.png"),
                     "--device", device]) == 0
    cpu, cuda = (read_image(tmp_path / f"bird_{d}.png") for d in ("cpu", "cuda"))
    assert cuda.shape == cpu.shape == hr.shape
    assert abs(psnr(hr, cuda, 2) - psnr(hr, cpu, 2)) < 0.01


@pytest.mark.gpu
def test_python_api_on_cuda():
    """The network is moved to the device for the call; a caller's module goes back."""
    from cclnn.data.images import read_image
    hr, lr_file = _bird(2)
    sr = cclnn.upscale(read_image(lr_file), scale=2, device="cuda")
    assert sr.shape == hr.shape
    net = cclnn.create_model("cclnn-t", 2)
    again = cclnn.upscale(read_image(lr_file), scale=2, model=net, device="cuda")
    assert np.array_equal(again, sr) and next(net.parameters()).device.type == "cpu"
