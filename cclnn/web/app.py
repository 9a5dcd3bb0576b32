"""The ASGI app of ``cclnn serve``: the page (three static files) and its JSON/PNG API.

``GET /api/models`` lists the networks with weights here; ``POST /api/upscale`` (multipart:
``image``, ``model``, ``scale``, optional ``hr`` and ``ticket``) answers the PNG; ``GET
/api/status?ticket=T`` tells the page where its job is. Errors are ``{"error": "one line"}``
with 400 (bad image, model or scale), 404, 413 (upload or output too large) or 503 (queue
full). The body is counted while it streams in, so an upload over the limit is cut off at the
limit, never held whole; only the package's static files can ever be served."""
from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import tempfile
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ..data.layout import SCALES, SCALES_TEXT
from ..errors import CclnnError
from ..inference import resolve_device
from ..upscaling import DEFAULT_MAX_OUTPUT_PIXELS, DEFAULT_MODEL
from .jobs import Job, JobCancelled, JobQueue, QueueFull
from .work import (ApiError, Networks, Result, Upload, available_models, check_upload,
                   find_offer, run_upload)

STATIC = Path(__file__).resolve().parent / "static"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".png": "image/png"}
TICKET = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
POLL_SECONDS = 0.2  # how often a waiting request checks that its client is still there
LOG = logging.getLogger("cclnn.serve")


@dataclass(frozen=True)
class ServeConfig:
    """What ``cclnn serve``'s options set."""
    device: str = "auto"
    max_upload_bytes: int = 20 * 1024 * 1024
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS
    queue_capacity: int = 8
    temp_dir: Optional[Path] = None  # where uploads are while their request lasts


class UploadTooLarge(CclnnError):
    """The request body passed the upload limit while streaming in."""


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _safe_stem(filename: str) -> str:
    """The upload's name without suffix, reduced to characters any header and file system
    take (it names the download)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename).stem).strip("._")
    return stem[:80] or "image"


class Server:
    """The endpoints and what they share: the limits, the job queue, the loaded networks."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.jobs = JobQueue(config.queue_capacity)
        self.networks = Networks(resolve_device(config.device))
        # the only files ever served: those in the package's static folder, by name
        self.files = {p.name: p for p in STATIC.iterdir() if p.suffix in MEDIA_TYPES}

    async def index(self, request: Request) -> Response:
        return FileResponse(self.files["index.html"], media_type=MEDIA_TYPES[".html"])

    async def static(self, request: Request) -> Response:
        path = self.files.get(request.path_params["name"])
        if path is None:
            return error(404, f"not found: {request.url.path}")
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix])

    async def models(self, request: Request) -> Response:
        offers = await run_in_threadpool(available_models)
        return JSONResponse([offer.as_json() for offer in offers])

    async def status(self, request: Request) -> Response:
        state = self.jobs.status(request.query_params.get("ticket"))
        return JSONResponse({**state, "max_upload_bytes": self.config.max_upload_bytes,
                             "max_output_pixels": self.config.max_output_pixels,
                             "device": str(self.networks.device)})

    def _counting(self, receive):
        """``receive`` that raises :class:`UploadTooLarge` once the body passes the limit."""
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.config.max_upload_bytes:
                raise UploadTooLarge(self._too_large(received, "at least "))
            return message
        return counted

    def _too_large(self, size: int, qualifier: str = "") -> str:
        return (f"image: the upload is {qualifier}{size / 2 ** 20:.1f} MiB, over the limit of "
                f"{self.config.max_upload_bytes / 2 ** 20:.1f} MiB")

    async def upscale(self, request: Request) -> Response:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.config.max_upload_bytes:
            return error(413, self._too_large(int(length)))
        counted = Request(request.scope, self._counting(request.receive))
        try:
            form = await counted.form(max_files=2, max_fields=8)
        except UploadTooLarge as exc:
            return error(413, str(exc))
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is there to read it
        temps: list[Path] = []
        try:
            return await self._upscale_form(counted, form, temps)
        except ApiError as exc:
            return error(exc.status, str(exc))
        except (QueueFull, JobCancelled) as exc:  # full, or shutting down
            return error(503, str(exc))
        except Exception as exc:  # a bug: one line for the page, the traceback in the log
            LOG.exception("cclnn serve: %s failed", request.url.path)
            return error(500, f"internal error: {type(exc).__name__}: {exc}".splitlines()[0])
        finally:
            await form.close()
            for path in temps:
                path.unlink(missing_ok=True)

    async def _upscale_form(self, request: Request, form: FormData, temps: list[Path]
                            ) -> Response:
        model = str(form.get("model") or DEFAULT_MODEL)
        scale_text = str(form.get("scale") or "2")
        if not scale_text.isdigit() or int(scale_text) not in SCALES:
            raise ApiError(400, f"scale: must be {SCALES_TEXT}, got '{scale_text[:20]}'")
        scale = int(scale_text)
        offer = find_offer(model[:100], scale)
        image = form.get("image")
        if not isinstance(image, UploadFile):
            raise ApiError(400, "image: missing (send the image as a file field 'image')")
        hr = form.get("hr")
        hr = hr if isinstance(hr, UploadFile) and hr.filename else None
        paths = await run_in_threadpool(self._save, [image] + ([hr] if hr else []), temps)
        upload = Upload(paths[0], image.filename or "image", model, scale,
                        paths[1] if hr else None)
        await run_in_threadpool(check_upload, upload, self.config.max_output_pixels)
        ticket = str(form.get("ticket") or "")
        job = self.jobs.submit(lambda job: run_upload(upload, offer, self.networks,
                                                      job.tile_bar),
                               ticket if TICKET.match(ticket) else uuid.uuid4().hex)
        result = await self._wait(request, job)
        if result is None:
            return Response(status_code=503)  # the client is gone
        return self._png(result, f"{_safe_stem(upload.name)}_x{scale}.png")

    def _save(self, files: list[UploadFile], temps: list[Path]) -> list[Path]:
        """Each upload as a temporary file (the decoder reads files); listed in ``temps`` as
        soon as it exists, so the request removes it whatever happens."""
        for upload in files:
            handle, name = tempfile.mkstemp(prefix="cclnn-serve-", suffix=".upload",
                                            dir=self.config.temp_dir)
            temps.append(Path(name))
            with os.fdopen(handle, "wb") as out:
                upload.file.seek(0)
                shutil.copyfileobj(upload.file, out)
        return list(temps)

    async def _wait(self, request: Request, job: Job) -> Optional[Result]:
        """The job's result; None if the client disconnected (the job is cancelled, and
        waited for: its files are removed only once it no longer reads them)."""
        future = asyncio.wrap_future(job.future)
        while True:
            done, _ = await asyncio.wait({future}, timeout=POLL_SECONDS)
            if done:
                return future.result()
            if await request.is_disconnected():
                self.jobs.cancel(job)
                await asyncio.wait({future})
                return None

    @staticmethod
    def _png(result: Result, filename: str) -> Response:
        headers = {"Content-Disposition": f'inline; filename="{filename}"',
                   "X-Cclnn-Seconds": f"{result.seconds:.3f}"}
        if result.psnr is not None:
            headers["X-Cclnn-PSNR"] = f"{result.psnr:.4f}"
            headers["X-Cclnn-SSIM"] = f"{result.ssim:.6f}"
        return Response(result.png, media_type="image/png", headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405/400 (a malformed multipart body) as JSON one-liners."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return error(status, f"{detail}: {request.method} {request.url.path}")


def create_app(config: ServeConfig = ServeConfig()) -> Starlette:
    """The app; its worker thread starts with the first upload and stops with the app."""
    server = Server(config)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await run_in_threadpool(server.jobs.close)

    routes = [Route("/", server.index), Route("/static/{name}", server.static),
              Route("/api/models", server.models), Route("/api/status", server.status),
              Route("/api/upscale", server.upscale, methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: _http_error})
    app.state.server = server
    return app
