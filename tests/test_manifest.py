"""The pretrained-weights manifest: its facts checked against the files (shipped, and the
official A2N x2 in ../shared), every entry's network built, and fetching over loopback into
the cache, verified before anything is cached (tiny networks stand in for the real files)."""
import dataclasses
import hashlib
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch

import cclnn
from cclnn import manifest as M
from cclnn.data.archives import ChecksumError, FetchError
from cclnn.models import describe
from cclnn.weights import PRETRAINED as PACKAGE_WEIGHTS
from conftest import shared_path
from test_fetch import Server, quiet, sha

SMALL = {"channels": 8, "n_resblocks": 1}


# ----------------------------------------------------------------------------- the facts


def test_shipped_entries_match_the_committed_files():
    shipped = [e for e in M.MANIFEST if e.source == M.SHIPPED_SOURCE]
    assert [(e.network, e.scale) for e in shipped] == [("cclnn-t", 2), ("cclnn-t", 3),
                                                       ("cclnn-t", 4)]
    for entry in shipped:
        data = (PACKAGE_WEIGHTS / entry.filename).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (entry.sha256, entry.size)


def test_official_a2n_x2_in_shared_is_the_manifest_file():
    path = shared_path("weights", "a2n", "aan_x2.pt")
    entry = M.find_pretrained("a2n", 2)
    assert (sha(path.read_bytes()), path.stat().st_size) == (entry.sha256, entry.size)
    assert M.git_blob_id(path) == entry.git_blob  # the official repository's tree agrees
    assert M.verify_file(entry, path) == "SHA-256 verified"


@pytest.mark.parametrize("entry", M.MANIFEST, ids=lambda e: f"{e.network}-x{e.scale}")
def test_every_entry_builds_with_its_options(entry):
    with torch.device("meta"):
        model = cclnn.build_model(entry.network, entry.scale, **entry.options)
    info = describe(model)
    assert info.scale == entry.scale
    assert info.value_range in (None, entry.value_range)  # None: a network without MeanShift


def test_every_entry_says_how_it_is_checked_and_where_it_comes_from():
    pairs = [(e.network, e.scale) for e in M.MANIFEST]
    assert len(pairs) == len(set(pairs))
    names = [e.filename for e in M.MANIFEST]
    assert len(names) == len(set(names))  # one cache folder, one mirror folder
    for e in M.MANIFEST:
        assert e.hash_source and e.licence and e.source
        if e.url is not None:  # a mirror serves the same file name
            assert Path(urlsplit(e.url).path).name == e.filename
            assert e.check in ("sha256", "git-blob", "sha256-prefix")
        elif e.source != M.SHIPPED_SOURCE:
            assert e.manual and e.check == "none"
        if e.sha256_prefix:  # never a made-up full hash: the prefix is in the file name
            assert e.sha256 is None and f"-{e.sha256_prefix}." in e.filename
            assert e.hash_source.startswith("hash unverified")
    assert {e.network for e in M.MANIFEST} == {"cclnn-t", "a2n", "edsr", "edsr-baseline",
                                               "rnan", "divanet", "rcan", "nlsn"}


def test_unknown_names_are_one_line_with_did_you_mean():
    with pytest.raises(M.PretrainedError) as err:
        M.find_pretrained("a2m", 2)
    assert str(err.value).startswith("no pretrained weights named 'a2m' (did you mean 'a2n'?); "
                                     "networks with pretrained weights: a2n, cclnn-t,")
    with pytest.raises(M.PretrainedError, match="^no pretrained weights are known for 'srcnn';"):
        M.find_pretrained("srcnn", 2)


# ----------------------------------------------------------------------------- fetching


def tiny_file(path: Path, network: str, scale: int) -> bytes:
    """An official-style file: a plain state dict of a tiny network, saved by torch."""
    torch.save(cclnn.build_model(network, scale, **SMALL).state_dict(), path)
    return path.read_bytes()


def git_blob(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    yield from serve_tiny_manifest(tmp_path, monkeypatch)


def serve_tiny_manifest(tmp_path, monkeypatch):
    """A manifest of tiny EDSR-baseline files (one per way of checking) and a manual RCAN
    entry, served over loopback; the cache in ``tmp_path/cache``."""
    monkeypatch.setenv("CCLNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(M.MIRROR_ENV, raising=False)
    files = {}
    for scale in (2, 3, 4):
        files[f"tiny_x{scale}.pt"] = tiny_file(tmp_path / f"tiny_x{scale}.pt", "edsr-baseline",
                                               scale)
    prefix = sha(files["tiny_x4.pt"])[:8]
    files[f"tiny_x4-{prefix}.pt"] = files.pop("tiny_x4.pt")
    server = Server(files)
    base = dict(network="edsr-baseline", source="test", sha256=None, size=None,
                hash_source="test", licence="test", options=SMALL)
    entries = (
        M.PretrainedFile(scale=2, filename="tiny_x2.pt", url="https://example.invalid/tiny_x2.pt",
                         **{**base, "sha256": sha(files["tiny_x2.pt"]),
                            "size": len(files["tiny_x2.pt"])}),
        M.PretrainedFile(scale=3, filename="tiny_x3.pt", url="https://example.invalid/tiny_x3.pt",
                         git_blob=git_blob(files["tiny_x3.pt"]), **base),
        M.PretrainedFile(scale=4, filename=f"tiny_x4-{prefix}.pt",
                         url=f"https://example.invalid/tiny_x4-{prefix}.pt", sha256_prefix=prefix,
                         **base),
        M.PretrainedFile("rcan", 2, "RCAN_BIX2.pt", "test", None, None, None, "none", "test",
                         manual="https://example.invalid/models.zip"),
    )
    monkeypatch.setattr(M, "MANIFEST", entries)
    server.files_by_name, server.entries = files, {e.scale: e for e in entries[:3]}
    yield server
    server.close()


def cache_files(tmp_path) -> list[str]:
    root = tmp_path / "cache" / "weights"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_fetched_once_then_used_from_the_cache(tmp_path, tiny):
    entry = tiny.entries[2]
    path = M.fetch_pretrained(entry, url_base=tiny.url, log=quiet)
    assert path == tmp_path / "cache" / "weights" / "tiny_x2.pt"
    assert path.read_bytes() == tiny.files_by_name["tiny_x2.pt"]
    assert M.fetch_pretrained(entry, url_base=tiny.url, log=quiet) == path
    assert len(tiny.requests()) == 1 and cache_files(tmp_path) == ["tiny_x2.pt"]


def test_create_model_pretrained_fetches_from_the_mirror_variable(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv(M.MIRROR_ENV, tiny.url)
    model = cclnn.create_model("edsr-baseline", 3, weights="pretrained")
    expected = torch.load(tmp_path / "tiny_x3.pt", weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())
    assert model.info.config.channels == 8 and not model.training  # the entry's options
    assert tiny.requests() == [("files/tiny_x3.pt", None, 200, len(tiny.files_by_name[
        "tiny_x3.pt"]))]


def test_a_tampered_file_is_refused_and_not_cached(tmp_path, tiny):
    for scale, kind in ((2, "SHA-256"), (3, "git blob id")):
        entry = tiny.entries[scale]
        name = entry.filename
        good = tiny.files[f"files/{name}"]
        tiny.files[f"files/{name}"] = good[:-1] + bytes([good[-1] ^ 1])
        with pytest.raises(ChecksumError) as err:
            M.fetch_pretrained(entry, url_base=tiny.url, log=quiet)
        message = str(err.value)
        expected = entry.sha256 or entry.git_blob
        assert message.startswith(f"{name} (edsr-baseline x{entry.scale}): {kind} mismatch: "
                                  f"expected {expected}")
        assert "\n" not in message and "nothing cached" in message
    assert cache_files(tmp_path) == []


def test_an_interrupted_download_resumes(tmp_path, tiny):
    entry, data = tiny.entries[2], tiny.files_by_name["tiny_x2.pt"]
    staged = tmp_path / "cache" / "weights" / "downloads"
    staged.mkdir(parents=True)
    have = len(data) // 3
    (staged / "tiny_x2.pt.part").write_bytes(data[:have])
    M.fetch_pretrained(entry, url_base=tiny.url, log=quiet)
    tiny.cut_next = True  # a connection that drops mid-file is retried from where it stopped
    M.fetch_pretrained(tiny.entries[3], url_base=tiny.url, log=quiet, backoff=0)
    size3 = len(tiny.files_by_name["tiny_x3.pt"])
    assert tiny.requests() == [("files/tiny_x2.pt", f"bytes={have}-", 206, len(data) - have),
                               ("files/tiny_x3.pt", None, 200, size3 // 2),
                               ("files/tiny_x3.pt", f"bytes={size3 // 2}-", 206,
                                size3 - size3 // 2)]
    assert cache_files(tmp_path) == ["tiny_x2.pt", "tiny_x3.pt"]


def test_a_download_past_the_known_size_is_stopped_and_deleted(tmp_path, tiny):
    entry = dataclasses.replace(tiny.entries[2], size=100)
    with pytest.raises(FetchError, match="more than the 100 expected of it; stopped and deleted"):
        M.fetch_pretrained(entry, url_base=tiny.url, log=quiet)
    assert cache_files(tmp_path) == []


def test_a_damaged_cached_file_is_fetched_again(tmp_path, tiny):
    entry = tiny.entries[2]
    path = M.fetch_pretrained(entry, url_base=tiny.url, log=quiet)
    path.write_bytes(b"damaged")
    said = []
    assert M.fetch_pretrained(entry, url_base=tiny.url, log=said.append) == path
    assert path.read_bytes() == tiny.files_by_name["tiny_x2.pt"]
    assert said[0].startswith(f"{path}: SHA-256 mismatch") and len(tiny.requests()) == 2


def test_a_file_url_mirror_works(tmp_path, tiny):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tiny_x2.pt").write_bytes(tiny.files_by_name["tiny_x2.pt"])
    path = M.fetch_pretrained(tiny.entries[2], url_base=mirror.as_uri(), log=quiet)
    assert path.read_bytes() == tiny.files_by_name["tiny_x2.pt"] and tiny.requests() == []


def test_unknown_size_is_capped_by_the_network(tiny):
    entry = tiny.entries[3]
    params = sum(p.numel() for p in cclnn.build_model("edsr-baseline", 3, **SMALL).parameters())
    assert M.max_download_size(entry) == 16 * params + (16 << 20)
    assert M.max_download_size(tiny.entries[2]) == tiny.entries[2].size


def test_the_cache_defaults_to_home(monkeypatch):
    monkeypatch.delenv("CCLNN_CACHE")
    assert M.weights_cache() == Path(os.path.expanduser("~")) / ".cache" / "cclnn" / "weights"
