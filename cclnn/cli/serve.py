"""``cclnn serve``: a local web page to upscale images and compare the network with bicubic,
and the HTTP API behind it (:mod:`cclnn.web`; needs the ``web`` extra)."""
from __future__ import annotations

import argparse
import importlib
import socket

from ..cpu import keep_freed_memory
from ..upscaling import DEFAULT_MAX_OUTPUT_PIXELS
from .common import POSITIVE, CLIError, add_device, positive_number

WEB_MODULES = ("uvicorn", "starlette", "python_multipart")
BACKLOG = 2048  # uvicorn's own default


def port_number(value: str) -> int:
    """argparse type: a TCP port (0: any free one, printed at start)."""
    if not value.strip().isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {value!r}")
    return int(value)


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="a local web page (and HTTP API) to upscale images and "
                                     "compare them with bicubic (needs cclnn[web])")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port_number, default=8000,
                   help="port (default 8000; 0: any free port)")
    add_device(p)
    p.add_argument("--max-upload-mb", type=positive_number, default=20.0,
                   help="largest upload in MiB, image and HR together (default 20)")
    p.add_argument("--max-output-pixels", type=POSITIVE, default=DEFAULT_MAX_OUTPUT_PIXELS,
                   help=f"largest output in pixels (default {DEFAULT_MAX_OUTPUT_PIXELS})")
    p.add_argument("--queue", type=POSITIVE, default=8,
                   help="uploads that may wait for the network; more are refused with 503 "
                        "(default 8)")
    p.set_defaults(func=run)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket (made here so that a taken port is one line, not uvicorn's
    exit)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise CLIError(f"--host {host}: cannot listen there ({exc.strerror or exc})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)  # the URL is printed next: connections wait, never refused
    except OSError as exc:
        sock.close()
        raise CLIError(f"--port {port}: cannot listen on {host}:{port} "
                       f"({exc.strerror or exc})") from None
    return sock


def run(args: argparse.Namespace) -> int:
    try:
        importlib.import_module("python_multipart")  # starlette reads forms with it
        import uvicorn
        from ..web import ServeConfig, create_app
    except ImportError as exc:
        if exc.name not in WEB_MODULES:
            raise
        raise CLIError(f"serve needs the web extra ({exc.name} is not installed): "
                       "pip install 'cclnn[web]'") from None
    app = create_app(ServeConfig(device=args.device,
                                 max_upload_bytes=int(args.max_upload_mb * 2 ** 20),
                                 max_output_pixels=args.max_output_pixels,
                                 queue_capacity=args.queue))
    sock = listen(args.host, args.port)
    keep_freed_memory()
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"cclnn serve: http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
    if server.should_exit:  # stopped by Ctrl-C/SIGTERM, whether or not uvicorn re-raised it
        raise KeyboardInterrupt
    return 0
