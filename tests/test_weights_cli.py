"""`cclnn weights list|fetch` and `--weights pretrained` in the commands, in-process, over
loopback with the tiny manifest of test_manifest.py."""
import json

import pytest

from cclnn import manifest as M
from cclnn.cli import main
from conftest import tiny_image
from test_manifest import SMALL, cache_files, serve_tiny_manifest


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    yield from serve_tiny_manifest(tmp_path, monkeypatch)


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"cclnn {command}: error: ")
    return err.strip()


def test_fetch_caches_a_good_file_and_list_shows_it(tmp_path, tiny, capsys):
    assert main(["weights", "fetch", "edsr-baseline", "--scale", "2", "--url-base",
                 tiny.url]) == 0
    out, err = capsys.readouterr()
    cached = tmp_path / "cache" / "weights" / "tiny_x2.pt"
    assert out.splitlines() == [f"tiny_x2.pt: downloading {tiny.url}/tiny_x2.pt",
                                f"tiny_x2.pt: SHA-256 verified; cached as {cached}",
                                f"edsr-baseline x2: ready: {cached}"]
    assert err == "" and cache_files(tmp_path) == ["tiny_x2.pt"]
    assert main(["weights", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["weights"]
    assert [(r["scale"], r["status"], r["path"]) for r in rows] == [
        (2, "cached", str(cached)), (3, "not cached", None), (4, "not cached", None),
        (2, "manual download", None)]
    assert rows[0]["check"] == "sha256" and rows[0]["options"] == SMALL


def test_the_real_manifest_lists_shipped_and_manual_entries(capsys):
    assert main(["weights", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| network | scale | file | source | size | check | status |"
    assert lines[2] == ("| cclnn-t | x2 | cclnn-t_x2.safetensors | shipped with cclnn | 3.7 MiB "
                        "| sha256 | shipped |")
    assert any(line.startswith("| rcan | x2 | RCAN_BIX2.pt |") and
               line.endswith("| none | manual download |") for line in lines)
    assert len(lines) == 2 + len(M.MANIFEST)


def test_a_tampered_file_is_one_line_and_nothing_is_cached(tmp_path, tiny, capsys):
    good = tiny.files["files/tiny_x2.pt"]
    tiny.files["files/tiny_x2.pt"] = good[:-1] + bytes([good[-1] ^ 1])
    assert main(["weights", "fetch", "edsr-baseline", "--scale", "2", "--url-base",
                 tiny.url]) == 2
    line = one_error_line(capsys, "weights fetch")
    expected = tiny.entries[2].sha256
    assert f"tiny_x2.pt (edsr-baseline x2): SHA-256 mismatch: expected {expected}, got " in line
    assert line.endswith(f"the download from {tiny.url}/tiny_x2.pt was deleted, nothing cached")
    assert cache_files(tmp_path) == []


def test_a_prefix_only_hash_says_so_in_one_line(tmp_path, tiny, capsys):
    entry = tiny.entries[4]
    assert main(["weights", "fetch", "edsr-baseline", "--scale", "4", "--url-base",
                 tiny.url]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"cclnn weights fetch: warning: {entry.filename}: hash unverified: only the 8-digit "
        f"prefix {entry.sha256_prefix} from the official file name matched (its SHA-256 is ")
    assert cache_files(tmp_path) == [entry.filename]


@pytest.mark.parametrize("argv, words", [
    (["edsr-baselin"], "no pretrained weights named 'edsr-baselin' (did you mean "
                       "'edsr-baseline'?)"),
    (["rcan", "--scale", "2"], "rcan x2: no direct download; get RCAN_BIX2.pt from "
                               "https://example.invalid/models.zip and pass --weights FILE"),
    (["edsr-baseline", "--url-base", "ftp://x/"], "--url-base ftp://x/: expected an http://"),
])
def test_fetch_errors_are_one_line(tiny, capsys, argv, words):
    assert main(["weights", "fetch", *argv]) == 2
    assert words in one_error_line(capsys, "weights fetch")
    assert tiny.requests() == []


def test_unknown_name_in_the_real_manifest_suggests_the_closest(capsys):
    assert main(["weights", "fetch", "a2m", "--scale", "3"]) == 2
    line = one_error_line(capsys, "weights fetch")
    assert line.startswith("cclnn weights fetch: error: no pretrained weights named 'a2m' "
                           "(did you mean 'a2n'?); networks with pretrained weights: ")


def test_bad_mirror_variable_is_named(tiny, capsys, monkeypatch):
    monkeypatch.setenv(M.MIRROR_ENV, "not-a-url")
    assert main(["weights", "fetch", "edsr-baseline", "--scale", "2"]) == 2
    assert f"{M.MIRROR_ENV} not-a-url: expected an http://" in one_error_line(
        capsys, "weights fetch")


def test_upscale_and_test_take_weights_pretrained(tmp_path, tiny, capsys, monkeypatch):
    from cclnn.data.images import read_image, write_image
    monkeypatch.setenv(M.MIRROR_ENV, tiny.url)
    write_image(tmp_path / "in.png", tiny_image(6, 5, 0))
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"),
                 "--model", "edsr-baseline", "--scale", "3", "--weights", "pretrained",
                 "--device", "cpu"]) == 0
    assert read_image(tmp_path / "out.png").shape == (18, 15, 3)
    capsys.readouterr()
    assert main(["test", "--model", "edsr-baseline", "--scale", "2", "3", "--weights",
                 "pretrained", "--datasets", "Set5", "--device", "cpu", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["scale"] for r in results] == [2, 3]
    assert cache_files(tmp_path) == ["tiny_x2.pt", "tiny_x3.pt"]
    assert [r[0] for r in tiny.requests()] == ["files/tiny_x3.pt", "files/tiny_x2.pt"]


def test_weights_pretrained_needs_a_model(tmp_path, capsys):
    assert main(["test", "--weights", "pretrained", "--datasets", "Set5", "--scale", "2"]) == 2
    assert one_error_line(capsys, "test").endswith(
        "error: --model: required with --weights pretrained (which network's?)")


def test_without_weights_the_message_says_how_to_get_them(capsys):
    assert main(["demo", "--model", "a2n", "--scale", "3"]) == 2
    assert one_error_line(capsys, "demo") == (
        "cclnn demo: error: --weights: required for model 'a2n' at x3: no weights ship with "
        "cclnn for it; pretrained: aan_x3.pt from the official A2N repository (--weights "
        "pretrained, or cclnn weights fetch a2n --scale 3)")
