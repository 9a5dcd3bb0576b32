"""``cclnn data fetch`` against small archives with the real layouts, served over loopback."""
import argparse
import dataclasses
import hashlib
import io
import re
import shutil
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from cclnn.cli import data as data_cli
from cclnn.data import fetch as F
from cclnn.errors import CclnnError


def png(size=(8, 6), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def make_zip(members: dict) -> bytes:
    """A zip with a folder entry per folder, as the DIV2K archives have."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        folders = set()
        for name in members:
            parts = name.split("/")[:-1]
            folders.update("/".join(parts[:i]) + "/" for i in range(1, len(parts) + 1))
        for folder in sorted(folders):
            zf.writestr(folder, b"")
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tar(members: dict, symlinks: dict = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return buf.getvalue()


def div2k_archives() -> dict:
    """Two images per split, in the layout of the official zips."""
    ids = {"train": ("0001", "0002"), "valid": ("0801", "0802")}
    out = {}
    for split, names in ids.items():
        out[f"DIV2K_{split}_HR.zip"] = make_zip(
            {f"DIV2K_{split}_HR/{n}.png": png((12, 12)) for n in names})
        for s in (2, 3, 4):
            out[f"DIV2K_{split}_LR_bicubic_X{s}.zip"] = make_zip(
                {f"DIV2K_{split}_LR_bicubic/X{s}/{n}x{s}.png": png((12 // s, 12 // s))
                 for n in names})
    return out


def benchmark_tar() -> bytes:
    members = {}
    for set_name, image in (("Set5", "baby"), ("Set14", "lenna"), ("B100", "3096"),
                            ("Urban100", "img_001")):
        members[f"benchmark/{set_name}/HR/{image}.png"] = png((12, 12))
        for s in (2, 3, 4):
            members[f"benchmark/{set_name}/LR_bicubic/X{s}/{image}x{s}.png"] = png((12 // s,) * 2)
    return make_tar(members)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """Serves ``files`` on 127.0.0.1; logs (name, Range header, status, body bytes sent)."""

    def __init__(self, files):
        self.files = {f"files/{k}": v for k, v in files.items()}
        self.honor_range = True
        self.cut_next = False  # send half the body of the next response, then hang up
        self.log = []
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                data = state.files.get(name)
                rng = self.headers.get("Range")
                if data is None:
                    state.log.append((name, rng, 404, 0))
                    self.send_error(404)
                    return
                start, status = 0, 200
                if rng and state.honor_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                    if start >= len(data):
                        state.log.append((name, rng, 416, 0))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                body = data[start:]
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if state.cut_next:
                    state.cut_next = False
                    body = body[:len(body) // 2]
                # logged before the body is sent: the client may be done reading before a
                # later append would run
                state.log.append((name, rng, status, len(body)))
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def requests(self, name=None):
        return [r for r in self.log if name is None or r[0] == f"files/{name}"]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def div2k():
    archives = div2k_archives()
    server = Server(archives)
    server.archives = archives
    yield server
    server.close()


def overrides(archives: dict) -> dict:
    return {name: sha(data) for name, data in archives.items()}


def quiet(_msg):
    pass


def parse(argv):
    """The parser the lead wires in: ``cclnn data fetch ...``."""
    parser = argparse.ArgumentParser(prog="cclnn")
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data").add_subparsers(dest="data_command", required=True)
    data_cli.add_fetch_parser(data)
    return parser.parse_args(["data", "fetch", *argv])


def pngs(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))


def test_div2k_layout_through_the_cli(tmp_path, div2k, capsys):
    root = tmp_path / "data"
    wanted = ["DIV2K_train_HR.zip", "DIV2K_valid_HR.zip",
              "DIV2K_train_LR_bicubic_X2.zip", "DIV2K_valid_LR_bicubic_X2.zip"]
    argv = ["div2k", "--root", str(root), "--url-base", div2k.url, "--scales", "2"]
    for name in wanted:
        argv += ["--sha256", f"{name}={sha(div2k.archives[name])}"]
    args = parse(argv)
    assert args.func is data_cli.run_fetch
    assert args.func(args) == 0
    assert pngs(root / "DIV2K") == [
        "DIV2K_train_HR/0001.png", "DIV2K_train_HR/0002.png",
        "DIV2K_train_LR_bicubic/X2/0001x2.png", "DIV2K_train_LR_bicubic/X2/0002x2.png",
        "DIV2K_valid_HR/0801.png", "DIV2K_valid_HR/0802.png",
        "DIV2K_valid_LR_bicubic/X2/0801x2.png", "DIV2K_valid_LR_bicubic/X2/0802x2.png"]
    assert sorted(r[0] for r in div2k.requests()) == sorted(f"files/{n}" for n in wanted)
    # archives are deleted after unpacking, no temporary left behind
    assert list((root / "downloads").iterdir()) == []
    assert not [p for p in (root / "DIV2K").iterdir() if p.name.endswith(".unpacking")]
    assert f"div2k: ready in {root / 'DIV2K'}" in capsys.readouterr().out


def test_benchmark_layout_with_env_root_and_mirror(tmp_path, monkeypatch):
    tar = benchmark_tar()
    server = Server({"benchmark.tar": tar})
    try:
        root = tmp_path / "env-root"
        monkeypatch.setenv("CCLNN_DATA", str(root))
        monkeypatch.setenv("CCLNN_DATA_MIRROR", server.url)
        args = parse(["benchmark", "--sha256", f"benchmark.tar={sha(tar)}", "--keep-archives"])
        assert args.func(args) == 0
    finally:
        server.close()
    for set_name in F.BENCHMARK_SETS:
        folder = root / "benchmark" / set_name
        assert len(list((folder / "HR").glob("*.png"))) == 1
        for s in (2, 3, 4):
            assert len(list((folder / "LR_bicubic" / f"X{s}").glob("*.png"))) == 1
    assert (root / "downloads" / "benchmark.tar").read_bytes() == tar  # --keep-archives


def test_resume_requests_only_the_remaining_bytes(tmp_path, div2k):
    name = "DIV2K_train_HR.zip"
    data = div2k.archives[name]
    have = len(data) // 3
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / f"{name}.part").write_bytes(data[:have])
    F.fetch("div2k", tmp_path, parts=["train_hr"], url_base=div2k.url,
            sha256={name: sha(data)}, log=quiet)
    assert div2k.requests() == [(f"files/{name}", f"bytes={have}-", 206, len(data) - have)]
    assert pngs(tmp_path / "DIV2K") == ["DIV2K_train_HR/0001.png", "DIV2K_train_HR/0002.png"]


def test_server_ignoring_range_gets_a_clean_restart(tmp_path, div2k):
    name = "DIV2K_valid_HR.zip"
    data = div2k.archives[name]
    div2k.honor_range = False
    (tmp_path / "downloads").mkdir()
    stale = b"stale bytes, not a prefix"
    (tmp_path / "downloads" / f"{name}.part").write_bytes(stale)
    F.fetch("div2k", tmp_path, parts=["valid_hr"], url_base=div2k.url,
            sha256={name: sha(data)}, log=quiet)  # appending would fail the SHA-256 check
    assert div2k.requests() == [(f"files/{name}", f"bytes={len(stale)}-", 200, len(data))]
    assert pngs(tmp_path / "DIV2K") == ["DIV2K_valid_HR/0801.png", "DIV2K_valid_HR/0802.png"]


def test_dropped_connection_is_retried_and_resumed(tmp_path, div2k):
    name = "DIV2K_train_LR_bicubic_X3.zip"
    data = div2k.archives[name]
    div2k.cut_next = True
    F.fetch("div2k", tmp_path, parts=["train_lr_x3"], url_base=div2k.url,
            sha256={name: sha(data)}, retries=2, backoff=0, log=quiet)
    half = len(data) // 2
    assert div2k.requests() == [(f"files/{name}", None, 200, half),
                                (f"files/{name}", f"bytes={half}-", 206, len(data) - half)]
    assert (tmp_path / "DIV2K" / "DIV2K_train_LR_bicubic" / "X3" / "0001x3.png").is_file()


def test_sha256_mismatch_is_refused_and_nothing_unpacked(tmp_path, div2k):
    name = "DIV2K_train_HR.zip"
    with pytest.raises(F.ChecksumError) as err:
        F.fetch("div2k", tmp_path, parts=["train_hr"], url_base=div2k.url,
                sha256={name: "0" * 64}, log=quiet)
    message = str(err.value)
    assert "\n" not in message and name in message and "mismatch" in message
    assert isinstance(err.value, CclnnError)
    assert not list(tmp_path.rglob("*.png"))
    assert list((tmp_path / "downloads").iterdir()) == []  # no final file, no .part


def test_published_hash_applies_through_a_mirror(tmp_path, div2k):
    with pytest.raises(F.ChecksumError, match=r"expected 20dd31fd.*published"):
        F.fetch("div2k", tmp_path, parts=["valid_hr"], url_base=div2k.url, log=quiet)
    assert not (tmp_path / "DIV2K").exists()


def test_second_run_is_skipped_without_network(tmp_path, div2k):
    kwargs = dict(parts=["train_hr", "train_lr_x4"], url_base=div2k.url,
                  sha256={n: sha(div2k.archives[n])
                          for n in ("DIV2K_train_HR.zip", "DIV2K_train_LR_bicubic_X4.zip")})
    F.fetch("div2k", tmp_path, log=quiet, **kwargs)
    assert len(div2k.requests()) == 2
    messages = []
    F.fetch("div2k", tmp_path, log=messages.append, **kwargs)
    assert len(div2k.requests()) == 2
    assert all("already unpacked" in m for m in messages) and len(messages) == 2


def test_interrupted_unpack_is_redone(tmp_path, div2k):
    name = "DIV2K_valid_LR_bicubic_X2.zip"
    kwargs = dict(parts=["valid_lr_x2"], url_base=div2k.url, keep_archives=True,
                  sha256={name: sha(div2k.archives[name])}, log=quiet)
    F.fetch("div2k", tmp_path, **kwargs)
    dest = tmp_path / "DIV2K"
    # what a run killed half-way through unpacking leaves: no marker, a temporary, a file short
    (dest / f".{name}.complete").unlink()
    (dest / f".{name}.unpacking" / "junk").mkdir(parents=True)
    (dest / "DIV2K_valid_LR_bicubic" / "X2" / "0802x2.png").unlink()
    F.fetch("div2k", tmp_path, **kwargs)
    assert len(div2k.requests()) == 1  # the kept archive was reused
    assert pngs(dest) == ["DIV2K_valid_LR_bicubic/X2/0801x2.png",
                          "DIV2K_valid_LR_bicubic/X2/0802x2.png"]
    assert not (dest / f".{name}.unpacking").exists()
    assert F.is_unpacked(dest, F.ARCHIVES["div2k"]["valid_lr_x2"])


@pytest.mark.parametrize("kind", ["zip-dotdot", "zip-absolute", "tar-dotdot", "tar-symlink"])
def test_unsafe_members_are_refused(tmp_path, kind):
    good = png()
    if kind.startswith("zip"):
        evil = "../../evil.png" if kind == "zip-dotdot" else "/tmp/evil.png"
        name, part = "DIV2K_train_HR.zip", "train_hr"
        data = make_zip({"DIV2K_train_HR/0001.png": good, evil: good})
    else:
        name, part = "benchmark.tar", "benchmark"
        members = {f"benchmark/{s}/HR/a.png": good for s in F.BENCHMARK_SETS}
        if kind == "tar-dotdot":
            data = make_tar({**members, "benchmark/../../evil.png": good})
        else:
            data = make_tar(members, symlinks={"benchmark/Set5/HR/b.png": "/etc/passwd"})
    server = Server({name: data})
    root = tmp_path / "root"
    try:
        with pytest.raises(F.UnsafeArchiveError) as err:
            F.fetch("div2k" if part == "train_hr" else "benchmark", root, parts=[part],
                    url_base=server.url, sha256={name: sha(data)}, log=quiet)
    finally:
        server.close()
    assert "\n" not in str(err.value) and name in str(err.value)
    assert not list(tmp_path.rglob("evil.png"))
    assert not list(root.rglob("*.png"))  # nothing at all was unpacked
    assert not [p for p in root.rglob("*") if p.name.endswith((".unpacking", ".complete"))]


def test_server_down_is_a_one_line_error_naming_the_url(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/mirror"
    with pytest.raises(F.DownloadError) as err:
        F.fetch("benchmark", tmp_path, url_base=url, retries=1, backoff=0, timeout=2,
                log=quiet)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{url}/benchmark.tar: download failed after 2 attempts")
    assert not (tmp_path / "downloads" / "benchmark.tar").exists()


def test_missing_file_is_not_retried(tmp_path, div2k):
    with pytest.raises(F.DownloadError, match=r"/DIV2K_train_HR\.zip: HTTP 404"):
        F.fetch("div2k", tmp_path, parts=["train_hr"], url_base=div2k.url + "/nope",
                retries=3, backoff=0, log=quiet)
    assert len(div2k.requests()) == 1


def test_unpublished_hash_warns_records_and_checks_later_fetches(tmp_path, div2k, monkeypatch,
                                                                 capsys):
    name = "DIV2K_train_HR.zip"
    entry = F.ARCHIVES["div2k"]["train_hr"]
    monkeypatch.setitem(F.ARCHIVES["div2k"], "train_hr",
                        dataclasses.replace(entry, sha256=None, size=None))
    F.fetch("div2k", tmp_path, parts=["train_hr"], url_base=div2k.url, log=quiet)
    warning = capsys.readouterr().err
    assert "could NOT be verified" in warning and name in warning
    checksums = tmp_path / "downloads" / "checksums.sha256"
    assert checksums.read_text() == f"{sha(div2k.archives[name])}  {name}\n"
    assert (tmp_path / "DIV2K" / "DIV2K_train_HR" / "0001.png").is_file()
    # the next fetch (here: after the dataset was deleted) must get the same archive
    shutil.rmtree(tmp_path / "DIV2K")
    div2k.files[f"files/{name}"] = make_zip({"DIV2K_train_HR/0001.png": png(color=(0, 0, 0))})
    with pytest.raises(F.ChecksumError, match="recorded in checksums.sha256"):
        F.fetch("div2k", tmp_path, parts=["train_hr"], url_base=div2k.url, log=quiet)
    assert not (tmp_path / "DIV2K" / "DIV2K_train_HR").exists()


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(F.FetchError, match="--parts: 'train_lr_x8' is not a part of div2k"):
        data_cli.run_fetch(parse(["div2k", "--root", str(tmp_path), "--parts", "train_lr_x8"]))
    with pytest.raises(F.FetchError, match="--sha256 benchmark.tar=xyz: expected FILE=HASH"):
        data_cli.run_fetch(parse(["benchmark", "--root", str(tmp_path), "--sha256",
                                  "benchmark.tar=xyz"]))
    with pytest.raises(F.FetchError, match="--sha256 DIV2K_train_HR.zip: not one of"):
        data_cli.run_fetch(parse(["benchmark", "--root", str(tmp_path), "--sha256",
                                  f"DIV2K_train_HR.zip={'a' * 64}"]))
    with pytest.raises(SystemExit):
        parse(["div2k", "--scales", "8"])


def test_default_parts_follow_scales():
    assert F.default_parts("div2k", [4, 2]) == [
        "train_hr", "valid_hr", "train_lr_x2", "valid_lr_x2", "train_lr_x4", "valid_lr_x4"]
    assert [a.filename for a in F.select_archives("benchmark")] == ["benchmark.tar"]
    # every DIV2K archive has a published hash, and every hash is a SHA-256
    for table in F.ARCHIVES.values():
        for archive in table.values():
            assert re.fullmatch(r"[0-9a-f]{64}", archive.sha256)


@pytest.mark.parametrize("what", ["corrupt", "layout"])
def test_corrupt_or_misshapen_archive_is_a_one_line_error(tmp_path, what):
    name = "DIV2K_train_LR_bicubic_X2.zip"
    if what == "corrupt":
        data = make_zip({"DIV2K_train_LR_bicubic/X2/0001x2.png": png()})[:-30]
        expected = r"corrupt archive"
    else:  # a mirror serving the X3 archive under the X2 name
        data = make_zip({"DIV2K_train_LR_bicubic/X3/0001x3.png": png()})
        expected = r"unexpected layout, no 'DIV2K_train_LR_bicubic/X2/'"
    server = Server({name: data})
    try:
        with pytest.raises(F.ArchiveError, match=expected) as err:
            F.fetch("div2k", tmp_path, parts=["train_lr_x2"], url_base=server.url,
                    sha256={name: sha(data)}, log=quiet)
    finally:
        server.close()
    assert "\n" not in str(err.value) and name in str(err.value)
    assert not list(tmp_path.rglob("*.png"))


def test_unwritable_root_is_a_one_line_error(tmp_path, div2k):
    root = tmp_path / "a-file"
    root.write_text("not a folder")
    with pytest.raises(F.FetchError, match="while fetching DIV2K_train_HR.zip") as err:
        F.fetch("div2k", root, parts=["train_hr"], url_base=div2k.url, log=quiet)
    assert "\n" not in str(err.value)
