"""``cclnn serve``'s HTTP API (cclnn.web): every status it promises, the queue, clients that
go away, the static files it will (and will not) serve, and the command's own errors."""
from __future__ import annotations

import asyncio
import http.client
import io
import socket
import struct
import threading
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="cclnn serve needs the web extra: pip install '.[web]'")
pytest.importorskip("python_multipart", reason="the web extra's python-multipart is missing")
uvicorn = pytest.importorskip("uvicorn", reason="the web extra's uvicorn is missing")

with warnings.catch_warnings():  # starlette >= 1 would rather have httpx2 than httpx
    warnings.filterwarnings("ignore", "Using `httpx` with", UserWarning)
    from starlette.testclient import TestClient  # noqa: E402

from cclnn import imresize, upscale  # noqa: E402
from cclnn.cli import main  # noqa: E402
from cclnn.cli.serve import listen  # noqa: E402
from cclnn.metrics import psnr, ssim  # noqa: E402
from cclnn.web import ServeConfig, create_app  # noqa: E402
from cclnn.web.jobs import JobCancelled, JobQueue  # noqa: E402
from conftest import ROOT, tiny_image  # noqa: E402

SET5_LR = ROOT / "cclnn" / "assets" / "Set5" / "LR_bicubic" / "X2" / "babyx2.png"
SET5_HR = ROOT / "cclnn" / "assets" / "Set5" / "HR" / "baby.png"


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def decoded(content: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(content))
    image.load()
    return image


@pytest.fixture
def uploads(tmp_path) -> Path:
    """The server's folder for uploads, which must be empty after every request."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    return folder


@contextmanager
def client(uploads: Path, **options):
    config = ServeConfig(device="cpu", temp_dir=uploads, **options)
    with TestClient(create_app(config), raise_server_exceptions=False) as test_client:
        yield test_client
    assert list(uploads.iterdir()) == []


def post(test_client, image: bytes, model="cclnn-t", scale="2", name="photo.png", **files):
    sent = {"image": (name, image, "image/png"), **{k: (k, v, "image/png")
                                                    for k, v in files.items()}}
    return test_client.post("/api/upscale", files=sent, data={"model": model, "scale": scale})


def assert_error(response, status: int, *words: str) -> str:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert "\n" not in message and "Traceback" not in message and "cclnn-serve-" not in message
    for word in words:
        assert word in message, message
    return message


# ---------------------------------------------------------------------------- 200


def test_models_lists_the_shipped_networks_and_cached_pretrained_files(uploads, monkeypatch,
                                                                        tmp_path):
    monkeypatch.setenv("CCLNN_CACHE", str(tmp_path / "cache"))
    with client(uploads) as c:
        assert c.get("/api/models").json() == [
            {"name": "cclnn-t", "scale": s, "source": "shipped"} for s in (2, 3, 4)]
        (tmp_path / "cache" / "weights").mkdir(parents=True)
        (tmp_path / "cache" / "weights" / "aan_x2.pt").write_bytes(b"not the official file")
        assert c.get("/api/models").json()[-1] == {"name": "a2n", "scale": 2,
                                                   "source": "pretrained (cached)"}
        # a damaged cached file: the server's fault, one line; never re-downloaded or removed
        assert_error(post(c, png(tiny_image(8, 8)), model="a2n"), 500,
                     "model: a2n x2", "SHA-256 mismatch")
        assert (tmp_path / "cache" / "weights" / "aan_x2.pt").is_file()
        assert_error(post(c, png(tiny_image(8, 8)), model="a2n", scale="3"), 400,
                     "scale: no weights for 'a2n' at x3 here (only x2)")


@pytest.mark.parametrize("mode, scale", [("RGB", 2), ("RGBA", 3), ("L", 2)])
def test_upscale_answers_a_png_of_exactly_scale_times_the_input(uploads, mode, scale):
    rgba = np.dstack([tiny_image(10, 12, 1), np.linspace(0, 255, 120).reshape(10, 12)
                      .astype(np.uint8)])
    image = Image.fromarray(rgba).convert(mode)
    with client(uploads) as c:
        response = post(c, png(np.asarray(image)), scale=str(scale), name="my photo.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == f'inline; filename="my_photo_x{scale}.png"'
    out = decoded(response.content)
    assert out.size == (12 * scale, 10 * scale) and out.mode == mode  # alpha and gray kept
    assert np.array_equal(np.asarray(out), np.asarray(upscale(image, scale)))


def test_bicubic_is_matlab_bicubic_and_hr_gives_psnr_ssim(uploads):
    lr = np.array(Image.open(SET5_LR).convert("RGB"))[:16, :16]
    hr = np.array(Image.open(SET5_HR).convert("RGB"))[:32, :32]
    with client(uploads) as c:
        bicubic = post(c, png(lr), model="bicubic", hr=png(hr))
        network = post(c, png(lr), hr=png(hr))
    sr = np.array(decoded(bicubic.content))
    assert np.array_equal(sr, imresize(lr, 2))
    assert float(bicubic.headers["x-cclnn-psnr"]) == pytest.approx(psnr(hr, sr, 2), abs=1e-4)
    assert float(bicubic.headers["x-cclnn-ssim"]) == pytest.approx(ssim(hr, sr, 2), abs=1e-6)
    net = np.array(decoded(network.content))
    assert float(network.headers["x-cclnn-psnr"]) == pytest.approx(psnr(hr, net, 2), abs=1e-4)


def test_page_and_its_files_are_served(uploads):
    with client(uploads) as c:
        page = c.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
            assert f"/static/{name}" in page.text
            response = c.get(f"/static/{name}")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith(kind)
        assert "http" not in page.text.replace("http-equiv", "")  # no CDN: works offline


# ---------------------------------------------------------------------------- 4xx, 503


@pytest.mark.parametrize("path", ["/static/../app.py", "/static/..%2fapp.py",
                                  "/static/%2e%2e%2fjobs.py", "/static/..%2f..%2f..%2fpyproject.toml",
                                  "/static/__init__.py", "/static/", "/static/app.js/../../app.py",
                                  "/static/%2fetc%2fpasswd", "/etc/passwd", "/../pyproject.toml"])
def test_nothing_outside_the_static_folder_is_served(uploads, path):
    with client(uploads) as c:
        response = c.get(path)
    assert_error(response, 404)
    assert "import" not in response.text and "root:" not in response.text


@pytest.mark.parametrize("fields, words", [
    ({"image": b"GIF89a not really"}, "photo.png: not a readable image"),
    ({"model": "nope"}, "model: unknown model 'nope' (available here: cclnn-t, bicubic)"),
    ({"scale": "5"}, "scale: must be 2, 3 or 4, got '5'"),
    ({"scale": "x2"}, "scale: must be 2, 3 or 4, got 'x2'"),
    ({"hr": png(tiny_image(15, 16))}, "hr: 16x15 is not x2 of photo.png (8x8): expected 16x16"),
])
def test_bad_requests_are_400_in_one_line(uploads, fields, words):
    fields = {"image": png(tiny_image(8, 8)), **fields}
    with client(uploads) as c:
        assert_error(post(c, **fields), 400, words)


def test_animated_and_missing_images_are_400(uploads):
    frames = [Image.fromarray(tiny_image(8, 8, seed)) for seed in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    with client(uploads) as c:
        assert_error(post(c, gif.getvalue(), name="anim.gif"), 400,
                     "anim.gif: animated image (3 frames)")
        assert_error(c.post("/api/upscale", data={"model": "cclnn-t"}), 400, "image: missing")
        assert_error(c.post("/api/upscale", content=b"--x\r\nbroken",
                            headers={"content-type": "multipart/form-data; boundary=x"}), 400)


def test_an_upload_over_the_limit_is_413_whether_or_not_it_says_its_length(uploads):
    image = png(tiny_image(64, 64))  # ~12 KiB of noise
    with client(uploads, max_upload_bytes=4096) as c:
        assert_error(post(c, image), 413, "over the limit of 0.0 MiB")
        body = (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
                b"Content-Type: image/png\r\n\r\n" + image + b"\r\n--b--\r\n")

        def chunks():  # no Content-Length: counted while it streams
            for start in range(0, len(body), 1000):
                yield body[start:start + 1000]
        response = c.post("/api/upscale", content=chunks(),
                          headers={"content-type": "multipart/form-data; boundary=b"})
        assert_error(response, 413, "the upload is at least")
        assert post(c, png(tiny_image(8, 8))).status_code == 200  # the server goes on


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_an_output_over_the_pixel_limit_and_a_bomb_are_413_from_the_header(uploads):
    with client(uploads, max_output_pixels=1000) as c:
        assert_error(post(c, png(tiny_image(20, 20))), 413,
                     "photo.png: 20x20 at x2 makes 40x40", "over the limit")
    with client(uploads) as c:  # 60000 x 60000 declared in 100 bytes: refused undecoded
        assert_error(post(c, png_header_only(60000, 60000), name="bomb.png"), 413,
                     "bomb.png: 60000x60000 at x2")


def test_a_network_working_set_beyond_memory_is_413(uploads, monkeypatch):
    monkeypatch.setattr("cclnn.inference.available_memory", lambda: 2 ** 10)
    with client(uploads) as c:
        assert_error(post(c, png(tiny_image(20, 20))), 413,
                     "the network needs about", "MB for the whole 20x20 image")


@contextmanager
def worker_held(server):
    """The worker busy with a job that waits for the block to end."""
    release, started = threading.Event(), threading.Event()
    server.jobs.submit(lambda job: (started.set(), release.wait(10)), "blocker")
    assert started.wait(10)
    try:
        yield
    finally:
        release.set()


def test_a_full_queue_is_503_and_status_shows_positions(uploads):
    with client(uploads, queue_capacity=1) as c:
        server = c.app.state.server
        with worker_held(server):
            server.jobs.submit(lambda job: None, "waiting-one")
            assert c.get("/api/status?ticket=waiting-one").json()["position"] == 1
            assert c.get("/api/status?ticket=blocker").json()["position"] == 0
            assert_error(post(c, png(tiny_image(8, 8))), 503, "the queue is full (1 waiting)")
        state = c.get("/api/status").json()
        assert state["capacity"] == 1 and state["max_upload_bytes"] == 20 * 2 ** 20


def test_a_client_gone_while_waiting_leaves_the_queue(uploads):
    """ASGI-level: the body arrives, then the client disconnects while the job waits."""
    app = create_app(ServeConfig(device="cpu", temp_dir=uploads))
    server = app.state.server
    body = (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + png(tiny_image(8, 8)) + b"\r\n--b--\r\n")
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
    scope = {"type": "http", "method": "POST", "path": "/api/upscale", "headers": [
        (b"content-type", b"multipart/form-data; boundary=b")], "query_string": b"",
        "http_version": "1.1", "scheme": "http", "server": ("test", 80), "root_path": ""}
    with worker_held(server):
        asyncio.run(app(scope, receive, send))
        assert server.jobs.status() == {"waiting": 0, "capacity": 8, "running": True}
        assert list(uploads.iterdir()) == []
    assert sent[0]["status"] == 503
    server.jobs.close()


def test_a_running_job_stops_at_its_next_tile_once_cancelled():
    queue = JobQueue(2)
    job = queue.submit(lambda job: [job.tile_bar(3)() for _ in range(3)], "t")
    job.cancelled.set()
    with pytest.raises(JobCancelled, match="job t: cancelled"):
        job.future.result(10)
    queue.close()


# ---------------------------------------------------------------------------- a real server


@contextmanager
def real_server(uploads: Path):
    """uvicorn on a free loopback port in a thread, as ``cclnn serve`` runs it."""
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(ServeConfig(device="cpu",
                                                                  temp_dir=uploads)),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def multipart(image: bytes, scale: int) -> tuple[bytes, str]:
    body = (f"--b\r\nContent-Disposition: form-data; name=\"scale\"\r\n\r\n{scale}\r\n"
            "--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + image + b"\r\n--b--\r\n"
    return body, "multipart/form-data; boundary=b"


def http_post(port: int, body: bytes, content_type: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/api/upscale", body, {"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_three_simultaneous_uploads_all_succeed_and_clients_that_vanish_do_no_harm(uploads):
    images = [tiny_image(8 + i, 10, i) for i in range(3)]
    with real_server(uploads) as port:
        # a client that sends half its upload and goes, and one that goes before its result
        body, kind = multipart(png(tiny_image(16, 16)), 2)
        for cut in (len(body) // 2, len(body)):
            raw = socket.create_connection(("127.0.0.1", port))
            raw.sendall(f"POST /api/upscale HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:cut])
            raw.close()
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda a: http_post(port, *multipart(png(a[1]), a[0])),
                                    zip((2, 3, 4), images)))
        for (status, content), image, scale in zip(answers, images, (2, 3, 4)):
            assert status == 200, content
            assert np.array_equal(np.asarray(decoded(content)), upscale(image, scale))
    assert list(uploads.iterdir()) == []


# ---------------------------------------------------------------------------- the command


def test_serve_without_the_web_extra_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "uvicorn", None)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err == ("cclnn serve: error: serve needs the web extra (uvicorn is not installed): "
                   "pip install 'cclnn[web]'\n")


def test_a_taken_port_and_a_bad_device_are_one_line(capsys):
    taken = listen("127.0.0.1", 0)
    taken.listen()
    port = taken.getsockname()[1]
    try:
        assert main(["serve", "--port", str(port), "--device", "cpu"]) == 2
    finally:
        taken.close()
    assert capsys.readouterr().err == (f"cclnn serve: error: --port {port}: cannot listen on "
                                       f"127.0.0.1:{port} (Address already in use)\n")
    assert main(["serve", "--device", "cuda:7"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(SystemExit) as usage:
        main(["serve", "--port", "70000"])
    assert usage.value.code == 2
    assert capsys.readouterr().err == ("cclnn serve: error: --port: expected a port from 0 to "
                                       "65535, got '70000' (see cclnn serve --help)\n")
