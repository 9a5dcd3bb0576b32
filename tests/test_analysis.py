"""Analysis tools: LAM / DI numerics and receptive fields, compare and plot pictures."""
import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

import cclnn
from cclnn.analysis import AnalysisError, require_matplotlib
from cclnn.analysis import lam
from cclnn.cli import main

# pictures need the optional 'plot' extra; the numerics and the error for its absence do not
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="matplotlib (the 'plot' extra) is not installed")

# ----------------------------------------------------------------------------- Gini and DI


def test_gini_of_a_single_spike_and_of_a_uniform_map():
    n = 32 * 32
    spike = np.zeros((32, 32))
    spike[5, 7] = 3.0
    di, g = lam.diffusion_index(spike)
    # normalised to max 1, plus 1e-7 everywhere: numerator (2n - n - 1) * 1, the constant
    # cancels (sum of 2k - n - 1 is 0), denominator n * (1 + n * 1e-7)
    expected = (n - 1) / (n * (1 + n * lam.GINI_EPS))
    assert g == pytest.approx(expected, rel=1e-12)
    assert di == pytest.approx((1 - expected) * 100, rel=1e-9)
    assert 100 / n < di < 0.11  # DI ~ 0

    di, g = lam.diffusion_index(np.full((32, 32), 0.25))
    assert abs(g) < 1e-12 and di == pytest.approx(100.0, abs=1e-9)


def test_gini_matches_the_mean_absolute_difference_and_di_stays_in_range():
    rng = np.random.default_rng(0)
    maps = [rng.random((20, 20)), rng.exponential(size=(20, 20)) ** 4,
            (rng.random((20, 20)) < 0.05) * rng.random((20, 20)), rng.standard_normal((20, 20))]
    for m in maps:
        di, g = lam.diffusion_index(m)
        assert 0.0 <= di <= 100.0
        a = (np.abs(m) / np.abs(m).max() + lam.GINI_EPS).ravel()
        mad = np.abs(a[:, None] - a[None, :]).sum() / (2 * a.size * a.sum())
        assert g == pytest.approx(mad.item(), rel=1e-9)
        assert lam.diffusion_index(7.5 * m)[0] == pytest.approx(di, rel=1e-9)  # scale-free


def test_path_kernels_and_reflect101_correlation():
    kernels = lam.path_kernels()
    assert kernels.shape == (51, 9, 9)
    assert np.allclose(kernels.sum(axis=(1, 2)), 1.0)
    delta = np.zeros((9, 9))
    delta[4, 4] = 1.0
    assert np.array_equal(kernels[-1], delta)  # sigma 0 (+1e-5) is an exact delta
    g = np.exp(-np.arange(-4, 5) ** 2 / (2 * (1.2 + 1e-5) ** 2))
    assert np.allclose(kernels[0], np.outer(g, g) / np.outer(g, g).sum(), atol=1e-15)
    # correlation (not convolution) with OpenCV's default border, reflect-101 (dcb|abcd|cba)
    rng = np.random.default_rng(1)
    img = rng.random((1, 2, 7, 6))
    k = rng.random((1, 3, 3))
    out = lam.filter_image(torch.from_numpy(img), k).numpy()
    padded = np.pad(img, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    ref = sum(k[0, i, j] * padded[..., i: i + 7, j: j + 6] for i in range(3) for j in range(3))
    assert np.allclose(out, ref, atol=1e-12)


def test_objective_is_the_official_attr_grad():
    t = torch.rand(2, 3, 30, 28, dtype=torch.float64)
    y, x, win = 5, 9, 16
    h_grad = (t[:, :, :-1, :] - t[:, :, 1:, :]) ** 2  # LAM_Demo attributes.attr_grad
    w_grad = (t[:, :, :, :-1] - t[:, :, :, 1:]) ** 2
    official = torch.sqrt(h_grad[:, :, :, :-1] + w_grad[:, :, :-1, :])[:, :, y:y + win,
                                                                       x:x + win].sum()
    assert lam.window_gradient_magnitude(t, x, y, win).item() == pytest.approx(official.item())
    flat = torch.zeros(1, 3, 20, 20, requires_grad=True)  # sqrt(0): gradient 0, not NaN
    (grad,) = torch.autograd.grad(lam.window_gradient_magnitude(flat, 1, 1, 16), flat)
    assert torch.all(grad == 0)


# ----------------------------------------------------------------------------- receptive fields


def _noise_lr(size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _support(result):
    rows, cols = np.nonzero(np.abs(result.attribution).sum(axis=0))
    return rows.min(), rows.max(), cols.min(), cols.max()


def test_srcnn_attribution_is_zero_outside_its_receptive_field():
    # (10 path steps instead of 50 keep the test fast; the support does not depend on them)
    # SR window rows y..y+15 plus the forward difference -> SR rows y..y+16; the 9-5-5 convs
    # reach 8 HR rows further: HR rows y-8..y+24 of the bicubic-upsampled image. MATLAB x2
    # bicubic: HR row r (0-based) is centred at LR r/2 - 0.25 and uses the LR rows k with
    # |r/2 - 0.25 - k| < 2. For y = 40: r = 32 -> k = 14..17, r = 64 -> k = 30..33, so LR rows
    # (and columns) 14..33: y/2 - 6 .. y/2 + 13.
    model = cclnn.build_model("srcnn", 2, channels=8, mid_channels=4)
    x = y = 40
    result = lam.local_attribution_map(model, _noise_lr(48), x, y, steps=10, batch=10)
    assert _support(result) == (y // 2 - 6, y // 2 + 13, x // 2 - 6, x // 2 + 13)
    inside = result.map[14:34, 14:34]
    assert np.count_nonzero(inside) > 0.9 * inside.size
    assert 0 < result.di < 100 and result.sr.shape == (96, 96, 3)


def test_attribution_spreads_with_the_receptive_field():
    # EDSR-baseline, 8 channels, random init: 1 + 2n + 1 + 1 LR 3x3 convs (head, n ResBlocks,
    # body end, upsampler) then one HR 3x3 conv. Window at (40, 40): SR rows 40..56, HR rows
    # 39..57 after the tail conv, LR rows 19..28, then 2n + 3 LR rows either side.
    results = {}
    for n in (4, 16):
        torch.manual_seed(0)
        model = cclnn.build_model("edsr-baseline", 2, channels=8, n_resblocks=n)
        results[n] = lam.local_attribution_map(model, _noise_lr(48, seed=2), 40, 40, steps=10,
                                               batch=10)
    assert _support(results[4]) == (19 - 11, 28 + 11, 19 - 11, 28 + 11)
    assert _support(results[16]) == (0, 47, 0, 47)
    assert results[16].radius99 > results[4].radius99
    assert results[16].di > results[4].di


# ----------------------------------------------------------------------------- CLI helpers


def _png_size(path):
    with Image.open(path) as im:
        return im.size


def _hr_image(path, size=40, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([xx * 4, yy * 5, (xx + yy) * 3], axis=-1) % 256
    img = np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path)
    return img


def _tiny_srcnn_weights(path):
    from conftest import tiny_weights
    return tiny_weights(path, "srcnn", 2)


def _one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert needle in err, err


@needs_matplotlib
def test_lam_cli_json_and_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _hr_image(tmp_path / "hr.png", size=22)
    weights = _tiny_srcnn_weights(tmp_path / "srcnn.safetensors")
    base = ["lam", "--model", "srcnn", "--weights", str(weights), "--scale", "2",
            "--device", "cpu"]
    assert main(base + ["--image", "hr.png", "--x", "4", "--y", "5", "--batch", "50",
                        "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert {"di", "gini", "x", "y", "window"} <= set(record)
    assert (record["x"], record["y"], record["window"]) == (4, 5, 16)
    assert 0 <= record["di"] <= 100
    assert record["di"] == pytest.approx((1 - record["gini"]) * 100)
    picture = tmp_path / "hr_lam_srcnn_x2.png"
    assert _png_size(picture) == lam.lam_figure_size((22, 22))
    _one_line_error(capsys, base + ["--image", "hr.png", "--x", "6", "--y", "0"],
                    "does not fit the 22x22 SR image")
    _one_line_error(capsys, base + ["--image", "hr.png"], "needs --x and --y")
    _one_line_error(capsys, base + ["--image", "hr.png", "--x", "1", "--y", "1", "-o", "a.jpg"],
                    "written as PNG")
    _one_line_error(capsys, base + ["--image", "hr.png", "--dataset", "Set5", "--x", "1",
                                    "--y", "1"], "one of --image")
    _one_line_error(capsys, ["lam", "--model", "srcnn", "--scale", "2", "--image", "hr.png",
                             "--x", "1", "--y", "1"], "no weights ship")


def test_lam_dataset_mode_uses_centre_windows(tmp_path, capsys):
    (tmp_path / "tiny" / "HR").mkdir(parents=True)
    _hr_image(tmp_path / "tiny" / "HR" / "a.png", size=20, seed=1)
    _hr_image(tmp_path / "tiny" / "HR" / "b.png", size=25, seed=2)  # mod-cropped to 24
    weights = _tiny_srcnn_weights(tmp_path / "srcnn.safetensors")
    assert main(["lam", "--model", "srcnn", "--weights", str(weights), "--scale", "2",
                 "--dataset", str(tmp_path / "tiny"), "--batch", "50", "--json",
                 "--device", "cpu"]) == 0
    record = json.loads(capsys.readouterr().out)
    positions = [(r["name"], r["x"], r["y"]) for r in record["images"]]
    assert positions == [("a", 2, 2), ("b", 4, 4)]
    assert record["di"] == pytest.approx(np.mean([r["di"] for r in record["images"]]))


# ----------------------------------------------------------------------------- compare


@needs_matplotlib
def test_compare_picture_and_errors(tmp_path, capsys):
    from cclnn.analysis.compare import compare_figure_size
    hr = _hr_image(tmp_path / "hr.png", size=41)  # mod-cropped to 40 x 40 at x2
    weights = _tiny_srcnn_weights(tmp_path / "srcnn_x2.safetensors")  # via '{scale}' below
    out = tmp_path / "cmp.png"
    assert main(["compare", "--models", f"srcnn:{tmp_path}/srcnn_x{{scale}}.safetensors",
                 "bicubic", "--image", str(tmp_path / "hr.png"), "--box", "4", "6", "24", "16",
                 "--scale", "2", "-o", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "| Bicubic |" in text and "| srcnn |" in text and text.count("| bicubic |") == 0
    assert weights.is_file()
    assert _png_size(out) == compare_figure_size(hr[:40, :40].shape, (4, 6, 24, 16), 4)
    base = ["compare", "--image", str(tmp_path / "hr.png"), "--scale", "2", "-o", str(out)]
    _one_line_error(capsys, base + ["--models", "bicubic", "--box", "0", "0", "8", "20"],
                    "smaller than the 11x11 SSIM window")
    _one_line_error(capsys, base + ["--models", "bicubic", "--box", "30", "0", "16", "16"],
                    "outside the 40x40 image")
    _one_line_error(capsys, base + ["--models", "edsr-baseline", "--box", "0", "0", "16", "16"],
                    "no weights ship")


def test_compare_metrics_are_unshaved_y_metrics():
    from cclnn.analysis.compare import make_crops
    from cclnn.metrics import psnr, ssim
    rng = np.random.default_rng(3)
    hr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    lr = cclnn.imresize(hr, 0.5)
    sr = np.clip(hr.astype(int) + rng.integers(-3, 4, hr.shape), 0, 255).astype(np.uint8)
    crops = make_crops(hr, lr, 2, (3, 5, 20, 14), [("net", sr)])
    assert [c.label for c in crops] == ["HR", "LR (nearest x2)", "Bicubic", "net"]
    hr_c, sr_c = hr[5:19, 3:23], sr[5:19, 3:23]
    assert crops[3].psnr == psnr(hr_c, sr_c, 0) and crops[3].ssim == ssim(hr_c, sr_c, 0)
    assert np.array_equal(crops[1].image, np.repeat(np.repeat(lr, 2, 0), 2, 1)[5:19, 3:23])


# ----------------------------------------------------------------------------- plot


def _run_dir(path, rows=25, val=True):
    path.mkdir()
    lines = ["iteration,epoch,lr,loss,l_rec,l_aux,data_s,compute_s"]
    lines += [f"{10 * i},{i // 10},0.0002,{20 / i:.4f},{20 / i:.4f},0.1,0.01,1.0"
              for i in range(1, rows + 1)]
    (path / "train_log.csv").write_text("\n".join(lines) + "\n")
    if val:
        (path / "val_log.csv").write_text("iteration,epoch,dataset,psnr,ssim,images\n"
                                          "100,1,Set5,33.5,0.93,5\n200,2,Set5,34.1,0.94,5\n")
    return path


@needs_matplotlib
def test_plot_runs_picture_and_errors(tmp_path, capsys):
    from cclnn.analysis.plots import CURVES_SIZE
    a = _run_dir(tmp_path / "run-a")
    b = _run_dir(tmp_path / "run-b", rows=5, val=False)
    out = tmp_path / "curves.png"
    assert main(["plot", str(a), str(b), "-o", str(out)]) == 0
    assert _png_size(out) == CURVES_SIZE
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, ["plot", str(tmp_path / "empty"), "-o", str(out)],
                    "no train_log.csv")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train_log.csv").write_text("step,loss\n1,2\n")
    _one_line_error(capsys, ["plot", str(bad), "-o", str(out)], "missing column(s) iteration")
    _one_line_error(capsys, ["plot", str(a), "-o", str(tmp_path / "curves.jpg")], "as PNG")


@needs_matplotlib
def test_plot_scatter_picture_and_errors(tmp_path, capsys):
    from cclnn.analysis.plots import scatter_figure_size, scatter_points
    def result(path, rows):
        path.write_text(json.dumps({"results": [
            {"dataset": d, "scale": s, "psnr": p, "ssim": 0.9, "images": 5}
            for d, s, p in rows]}))
        return str(path)
    files = [result(tmp_path / "a2n.json", [("Set5", 2, 38.06), ("Set14", 2, 33.6)]),
             result(tmp_path / "bicubic.json", [("Set5", 2, 33.67), ("Set14", 2, 30.33)]),
             result(tmp_path / "mine.json", [("Set5", 2, 36.7)])]
    out = tmp_path / "scatter.png"
    argv = ["plot", "--scatter", *files, "--label", "a2n", "--label", "bicubic",
            "--label", "srcnn", "-o", str(out)]
    assert main(argv) == 0
    assert _png_size(out) == scatter_figure_size(2)
    points = scatter_points(files, ["a2n", "bicubic", "srcnn"])
    assert [p["params"] for p in points] == [
        cclnn.models.count_parameters("a2n", 2)] * 2 + [None, None] + [
        cclnn.models.count_parameters("srcnn", 2)]
    _one_line_error(capsys, ["plot", "--scatter", *files, "-o", str(out)],
                    "cannot count the parameters of 'mine'")
    _one_line_error(capsys, ["plot", "--scatter", files[0], "--label", "a", "--label", "b",
                             "-o", str(out)], "one per file")
    (tmp_path / "broken.json").write_text("{\"results\": [")
    _one_line_error(capsys, ["plot", "--scatter", str(tmp_path / "broken.json"), "-o",
                             str(out)], "not JSON")


def test_missing_matplotlib_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(AnalysisError, match="pip install"):
        require_matplotlib()
    run = _run_dir(tmp_path / "run")
    _one_line_error(capsys, ["plot", str(run), "-o", str(tmp_path / "x.png")],
                    "pictures need matplotlib")
