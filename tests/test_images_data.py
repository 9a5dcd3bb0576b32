import warnings

import numpy as np
import pytest
from PIL import Image

from cclnn.data.benchmark import BenchmarkSet, DatasetError, make_lr_files, resolve_benchmark
from cclnn.data.images import ImageError, read_image, write_image
from cclnn.resize import imresize
from conftest import tiny_image


def test_modes_are_converted(tmp_path):
    rgb = (np.arange(4 * 5 * 3) % 256).astype(np.uint8).reshape(4, 5, 3)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    g = read_image(tmp_path / "gray.png")
    assert g.shape == (4, 5, 3) and np.array_equal(g[..., 1], rgb[..., 0])
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").shape == (4, 5, 3)
    rgba = np.dstack([rgb, np.full((4, 5), 128, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        assert np.array_equal(read_image(tmp_path / "alpha.png"), rgb)
    sixteen = (np.arange(20, dtype=np.uint16) * 3000).reshape(4, 5)
    Image.fromarray(sixteen).save(tmp_path / "deep.png")
    with pytest.warns(UserWarning, match="16-bit"):
        deep = read_image(tmp_path / "deep.png")
    assert deep.dtype == np.uint8
    assert np.array_equal(deep[..., 0], np.floor(sixteen / 257 + 0.5).astype(np.uint8))


def test_corrupt_and_truncated_files_name_the_file(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"definitely not a png")
    with pytest.raises(ImageError, match="junk.png"):
        read_image(tmp_path / "junk.png")
    img = (np.random.default_rng(0).integers(0, 256, (64, 64, 3))).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def _make_set(root, names=("a", "b"), size=(24, 20)):
    hr_dir = root / "Mine" / "HR"
    hr_dir.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for n in names:
        write_image(hr_dir / f"{n}.png", tiny_image(*size, rng))
    return root / "Mine"


def test_lr_made_on_the_fly_and_cache_not_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("CCLNN_CACHE", str(tmp_path / "cache"))
    folder = _make_set(tmp_path)
    (folder / "HR" / "notes.txt").write_text("not an image")
    bench = BenchmarkSet(folder, 3)
    assert len(bench) == 2
    pair = bench.load(0)
    assert pair.hr.shape == (24, 18, 3) and pair.lr.shape == (8, 6, 3)
    assert np.array_equal(pair.lr, imresize(pair.hr, 1 / 3))
    assert len(list((tmp_path / "cache" / "lr").glob("*.png"))) == 1
    new = np.zeros((24, 20, 3), np.uint8)
    write_image(folder / "HR" / "a.png", new)
    assert np.array_equal(BenchmarkSet(folder, 3).load(0).lr, np.zeros((8, 6, 3), np.uint8))


def test_make_lr_and_lr_files_are_used(tmp_path):
    folder = _make_set(tmp_path)
    assert make_lr_files(folder / "HR", [2, 4]) == 4
    lr_file = folder / "LR_bicubic" / "X2" / "ax2.png"
    hr = read_image(folder / "HR" / "a.png")
    assert np.array_equal(read_image(lr_file), imresize(hr, 0.5))
    write_image(lr_file, np.zeros((3, 3, 3), np.uint8))  # wrong size is an error
    with pytest.raises(DatasetError, match="ax2.png"):
        BenchmarkSet(folder, 2).load(0)


def test_resolve_names(tmp_path):
    assert resolve_benchmark("Set5").name == "Set5"  # bundled
    assert resolve_benchmark("set5").name == "Set5"
    with pytest.raises(DatasetError, match="Urban100.*not found"):
        resolve_benchmark("Urban100", tmp_path)
    (tmp_path / "benchmark" / "B100" / "HR").mkdir(parents=True)
    assert resolve_benchmark("b100", tmp_path) == tmp_path / "benchmark" / "B100"
    with pytest.raises(DatasetError, match="not one of"):
        resolve_benchmark("Set6", tmp_path)
    # a data root that is not there is a typo: not silently the bundled Set5
    with pytest.raises(DatasetError, match="--data-root .*nowhere: not a folder"):
        resolve_benchmark("Set5", tmp_path / "nowhere")


def test_write_image_is_atomic(tmp_path):
    target = tmp_path / "out.png"
    with pytest.raises(ImageError):
        write_image(target, np.zeros((2, 2, 7), np.uint8))  # PIL cannot encode 7 channels
    assert not target.exists() and not list(tmp_path.iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_image(target, np.zeros((2, 2, 3), np.uint8))
    assert target.exists()
