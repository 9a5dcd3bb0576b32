"""Issue 22, ``cclnn test``: SR images go to one folder per model (weights, ensemble, scale)
and are never replaced without --overwrite; missing datasets and unusable image folders fail
before any network runs. Each case: the exit status, one line on stderr, the files after."""
import os

import numpy as np

import pytest

from cclnn.cli import main
from cclnn.data.images import ImageError, read_image, write_image
from cclnn.evaluate import save_sr_image

from conftest import tiny_image, tiny_weights


@pytest.fixture
def bench(tmp_path):
    """A benchmark folder of two small images (fast for any network)."""
    folder = tmp_path / "Tiny"
    (folder / "HR").mkdir(parents=True)
    for i in range(2):
        write_image(folder / "HR" / f"im{i}.png", tiny_image(32, 28, rng=i))
    return folder


def run_test(bench, out, *extra) -> int:
    return main(["test", "--scale", "2", "--datasets", str(bench), "--save-images", str(out),
                 "--device", "cpu", "--json", *map(str, extra)])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cclnn test: error: "), err
    return lines[0]


def test_two_models_save_to_their_own_folders(tmp_path, bench):
    out = tmp_path / "sr"
    weights = tiny_weights(tmp_path / "small.safetensors", "srcnn", 2)
    assert run_test(bench, out, "--model", "bicubic") == 0
    assert run_test(bench, out, "--model", "srcnn", "--weights", weights) == 0
    assert run_test(bench, out, "--model", "srcnn", "--weights", weights,
                    "--self-ensemble") == 0
    folders = {"bicubic_x2", "srcnn-small_x2", "srcnn-small+_x2"}
    assert {p.name for p in out.iterdir()} == folders
    for name in folders:
        assert sorted(p.name for p in (out / name / "Tiny").iterdir()) == ["im0.png", "im1.png"]
    assert (read_image(out / "bicubic_x2" / "Tiny" / "im0.png")
            != read_image(out / "srcnn-small_x2" / "Tiny" / "im0.png")).any()


def test_existing_images_are_kept_without_overwrite_and_no_network_runs(
        tmp_path, bench, capsys):
    out = tmp_path / "sr"
    assert run_test(bench, out, "--model", "bicubic") == 0
    target = out / "bicubic_x2" / "Tiny" / "im1.png"
    target.write_bytes(b"mine")
    capsys.readouterr()
    assert run_test(bench, out, "--model", "bicubic") == 2
    assert one_line_error(capsys) == (
        f"cclnn test: error: --save-images: 2 SR image(s) already exist (e.g. "
        f"{out / 'bicubic_x2' / 'Tiny' / 'im0.png'}); pass --overwrite to replace them")
    assert target.read_bytes() == b"mine"
    assert run_test(bench, out, "--model", "bicubic", "--overwrite") == 0
    assert read_image(target).shape == (32, 28, 3)


def test_an_image_written_meanwhile_is_not_replaced(tmp_path):
    target = tmp_path / "im.png"
    target.write_bytes(b"another process wrote this")
    with pytest.raises(ImageError, match="already exists; not replaced"):
        save_sr_image(target, tiny_image(4, 4), overwrite=False)
    assert target.read_bytes() == b"another process wrote this"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["im.png"]  # no temp file left


@pytest.mark.parametrize("problem", ["missing", "empty"])
def test_a_missing_dataset_fails_before_any_network_runs(tmp_path, bench, capsys, problem):
    other = tmp_path / "Other"
    if problem == "empty":
        (other / "HR").mkdir(parents=True)
    # --weights names no file: had the network been built first, that would be the error
    assert main(["test", "--model", "srcnn", "--weights", str(tmp_path / "none.pt"),
                 "--scale", "2", "--datasets", str(bench), str(other),
                 "--save-images", str(tmp_path / "sr")]) == 2
    line = one_line_error(capsys)
    assert str(other) in line and "none.pt" not in line
    assert not (tmp_path / "sr").exists()


def test_an_image_folder_that_is_a_file_fails_before_any_network_runs(tmp_path, bench, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert run_test(bench, blocker / "sr", "--model", "srcnn", "--weights",
                    tmp_path / "none.pt") == 2
    assert one_line_error(capsys) == f"cclnn test: error: --save-images: {blocker} is not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_image_folder_fails_before_any_network_runs(tmp_path, bench, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert run_test(bench, locked / "sr", "--model", "srcnn", "--weights",
                        tmp_path / "none.pt") == 2
        assert one_line_error(capsys) == (f"cclnn test: error: --save-images: cannot write in "
                                          f"{locked} (permission denied)")
    finally:
        locked.chmod(0o700)


def test_an_image_too_small_to_score_is_one_line(tmp_path, capsys):
    """A 12x12 HR image at x2 leaves 8x8 after the shave: no SSIM window fits."""
    from PIL import Image
    (tmp_path / "HR").mkdir()
    (tmp_path / "LR_bicubic" / "X2").mkdir(parents=True)
    Image.fromarray(np.full((12, 12, 3), 90, np.uint8)).save(tmp_path / "HR" / "a.png")
    Image.fromarray(np.full((6, 6, 3), 90, np.uint8)).save(tmp_path / "LR_bicubic/X2/ax2.png")
    assert main(["test", "--model", "bicubic", "--scale", "2", "--datasets", str(tmp_path),
                 "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cclnn test: error: a: image (8, 8) after the border shave is too small for "
                   "the 11x11 SSIM window"]
