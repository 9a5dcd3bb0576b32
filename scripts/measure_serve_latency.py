"""Latency of a 256x256 upload at x2 (the shipped cclnn-t) through ``cclnn serve``'s API,
end to end and inside the job: the first request (which loads the network) and the median
of 5 more. Starts the server of this checkout on a free port, one thread; writes
``results/serve_latency.md``. Usage: ``python scripts/measure_serve_latency.py``."""
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "cclnn" / "assets" / "Set5" / "LR_bicubic" / "X2" / "babyx2.png"  # 256 x 256


def form(image: bytes) -> bytes:
    return (b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\ncclnn-t\r\n'
            b'--b\r\nContent-Disposition: form-data; name="scale"\r\n\r\n2\r\n'
            b'--b\r\nContent-Disposition: form-data; name="image"; filename="baby.png"\r\n'
            b'Content-Type: image/png\r\n\r\n' + image + b'\r\n--b--\r\n')


def post(host: str, port: int, body: bytes) -> tuple[float, float, int]:
    """(end-to-end seconds, the job's own seconds, PNG bytes) of one upload."""
    connection = http.client.HTTPConnection(host, port, timeout=300)
    start = time.perf_counter()
    connection.request("POST", "/api/upscale", body,
                       {"Content-Type": "multipart/form-data; boundary=b"})
    response = connection.getresponse()
    data = response.read()
    took = time.perf_counter() - start
    if response.status != 200:
        raise SystemExit(f"HTTP {response.status}: {data[:200]!r}")
    job = float(response.getheader("X-Cclnn-Seconds"))
    connection.close()
    return took, job, len(data)


def main() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    server = subprocess.Popen([sys.executable, "-m", "cclnn", "serve", "--port", "0",
                               "--device", "cpu"], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT, env=env)
    host, port = re.search(r"http://([\d.]+):(\d+)/", server.stdout.readline()).groups()
    body = form(IMAGE.read_bytes())
    try:
        first = post(host, int(port), body)
        runs = [post(host, int(port), body) for _ in range(5)]
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
    lines = ["# `cclnn serve`: latency of a 256x256 upload at x2 (cclnn-t)", "",
             f"`python scripts/measure_serve_latency.py` ({time.strftime('%Y-%m-%d')}, one "
             f"thread, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end)",
             "", f"- first request (loads the network): {first[0]:.2f} s end to end",
             "- 5 more, end to end / inside the job (s): "
             + ", ".join(f"{a:.2f} / {b:.2f}" for a, b, _ in runs),
             f"- median end to end **{statistics.median(r[0] for r in runs):.2f} s**, median job "
             f"{statistics.median(r[1] for r in runs):.2f} s; PNG {runs[0][2]} bytes", ""]
    (ROOT / "results" / "serve_latency.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
