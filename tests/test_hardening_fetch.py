"""`cclnn data fetch` at the edges, over loopback with tiny archives: a bad --url-base stops
before any work, an endless download stops at the archive's size and is deleted, and a
user's own folder under the root is never merged into or deleted."""
import dataclasses
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cclnn.cli import main
from cclnn.data import fetch as F
from cclnn.data.unpack import OWNER_MARKER
from test_fetch import Server, benchmark_tar, div2k_archives, quiet, sha


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("url, words", [
    ("notaurl", "expected an http://, https:// or file:// URL"),
    ("ftp://example.org/x", "expected an http://, https:// or file:// URL"),
    ("http:///files", "no host name in the URL"),
])
def test_bad_url_base_is_one_line_before_any_work(tmp_path, capsys, url, words):
    root = tmp_path / "root"
    assert main(["data", "fetch", "benchmark", "--root", str(root), "--url-base", url]) == 2
    assert _one_error_line(capsys) == f"cclnn data fetch: error: --url-base {url}: {words}\n"
    assert not root.exists()


def test_bad_mirror_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(F.MIRROR_ENV, "notaurl")
    with pytest.raises(F.FetchError, match=f"^{F.MIRROR_ENV} notaurl: expected an http"):
        F.fetch("benchmark", tmp_path, log=quiet)
    assert list(tmp_path.iterdir()) == []


class EndlessServer:
    """Answers 200 with ``length`` as Content-Length (or none) and up to 64 MiB of zeros."""

    def __init__(self, length=None):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                try:
                    for _ in range(64):
                        self.wfile.write(b"\0" * (1 << 20))
                except OSError:  # the client hung up, as it should
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("announced", [None, 64 << 20])
def test_endless_download_stops_at_the_known_size_and_is_deleted(tmp_path, monkeypatch,
                                                                 announced):
    table = F.ARCHIVES["benchmark"]
    monkeypatch.setitem(table, "benchmark", dataclasses.replace(table["benchmark"], size=1000))
    server = EndlessServer(announced)
    cap = 1000 + (1 << 20)
    try:
        with pytest.raises(F.DownloadError) as error:
            F.fetch("benchmark", tmp_path, url_base=server.url, log=quiet, retries=0)
    finally:
        server.close()
    message = str(error.value)
    assert f"more than the {cap} expected of it; stopped and deleted" in message
    reached = int(message.split("reached ")[1].split(" bytes")[0])
    assert reached == (announced or reached) and reached > cap and "\n" not in message
    assert list((tmp_path / "downloads").iterdir()) == []


@pytest.fixture
def bench():
    tar = benchmark_tar()
    server = Server({"benchmark.tar": tar})
    server.sha = sha(tar)
    yield server
    server.close()


def test_users_own_folder_is_never_merged_into(tmp_path, bench, capsys):
    mine = tmp_path / "benchmark" / "Set5" / "HR"
    mine.mkdir(parents=True)
    (mine / "my.png").write_bytes(b"mine")
    assert main(["data", "fetch", "benchmark", "--root", str(tmp_path), "--url-base", bench.url,
                 "--sha256", f"benchmark.tar={bench.sha}"]) == 2
    err = _one_error_line(capsys)
    assert f"{tmp_path / 'benchmark'}: already exists and was not made by" in err
    assert bench.requests() == []  # refused before any download
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "benchmark", "benchmark/Set5", "benchmark/Set5/HR", "benchmark/Set5/HR/my.png"]


def test_users_div2k_beside_a_benchmark_fetch_is_left_alone(tmp_path, bench):
    (tmp_path / "DIV2K").mkdir()
    (tmp_path / "DIV2K" / "notes.txt").write_text("mine")
    F.fetch("benchmark", tmp_path, url_base=bench.url, sha256={"benchmark.tar": bench.sha},
            log=quiet)
    assert (tmp_path / "DIV2K" / "notes.txt").read_text() == "mine"
    assert [p.name for p in (tmp_path / "DIV2K").iterdir()] == ["notes.txt"]
    assert (tmp_path / "benchmark" / OWNER_MARKER).is_file()
    with pytest.raises(F.FetchError, match=f"{tmp_path / 'DIV2K'}: already exists"):
        F.fetch("div2k", tmp_path, parts=["valid_lr_x2"], url_base=bench.url, log=quiet)


def test_a_previous_cclnn_unpack_is_merged_into(tmp_path):
    archives = div2k_archives()
    server = Server(archives)
    try:
        for part, name in (("valid_lr_x2", "DIV2K_valid_LR_bicubic_X2.zip"),
                           ("valid_lr_x3", "DIV2K_valid_LR_bicubic_X3.zip")):
            F.fetch("div2k", tmp_path, parts=[part], url_base=server.url,
                    sha256={name: sha(archives[name])}, log=quiet)
    finally:
        server.close()
    lr = tmp_path / "DIV2K" / "DIV2K_valid_LR_bicubic"
    assert sorted(p.name for p in lr.iterdir()) == ["X2", "X3"]
    assert (tmp_path / "DIV2K" / OWNER_MARKER).is_file()
