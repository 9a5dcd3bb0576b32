"""What the server does with an upload: which networks it offers, the checks made from the
image header before a job is queued, and the job itself (decode, upscale, PSNR/SSIM, PNG).

The image rules are :func:`cclnn.upscale`'s: the same decoder (bombs and animated images
refused in one line), grayscale and alpha kept, the same output limit. An upload is a
temporary file only while its request lasts (the decoder reads files)."""
from __future__ import annotations

import io
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

from ..data.images import image_size, read_image, read_image_with_alpha
from ..errors import CclnnError
from ..factory import SHIPPED, create_model
from ..manifest import (SHIPPED_SOURCE, find_pretrained, list_pretrained, local_path,
                        verify_file)
from ..memory import NotEnoughMemory
from ..metrics import psnr, ssim
from ..resize import imresize
from ..upscaling import UpscaleError, check_output_size, upscale_pixels
from ..weights import list_shipped_weights
from .jobs import JobCancelled

BICUBIC = "bicubic"  # the model name of the comparison: MATLAB-exact bicubic, no network
SHIPPED_LABEL = "shipped"
CACHED_LABEL = "pretrained (cached)"
NETWORKS_KEPT = 2  # networks kept loaded between jobs (a few MB each for the light ones)

# PIL's decompression-bomb limit is one global that the decoder swaps while it reads a


class ApiError(CclnnError):
    """A refused request: ``status`` is its HTTP status, the message its one line."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Offer:
    """A network and scale the server can run, and where its weights are."""
    name: str
    scale: int
    source: str

    def as_json(self) -> dict:
        return {"name": self.name, "scale": self.scale, "source": self.source}


def available_models() -> list[Offer]:
    """The networks with weights on this machine: shipped in the package, or pretrained
    files already in the cache (nothing is downloaded while serving: ``cclnn weights fetch``
    adds one, and the next call lists it)."""
    offers = [Offer(name, scale, SHIPPED_LABEL)
              for name, scales in list_shipped_weights().items() for scale in scales]
    for entry in list_pretrained():
        if entry.source != SHIPPED_SOURCE and local_path(entry).is_file():
            offers.append(Offer(entry.network, entry.scale, CACHED_LABEL))
    return offers


def find_offer(model: str, scale: int) -> Optional[Offer]:
    """The offer for ``model`` at ``scale``; None for :data:`BICUBIC`; an :class:`ApiError`
    (400) naming what is offered otherwise."""
    if model == BICUBIC:
        return None
    offers = available_models()
    for offer in offers:
        if (offer.name, offer.scale) == (model, scale):
            return offer
    names = sorted({o.name for o in offers})
    if model not in names:
        raise ApiError(400, f"model: unknown model '{model}' (available here: "
                            f"{', '.join(names + [BICUBIC])})")
    scales = ", ".join(f"x{o.scale}" for o in offers if o.name == model)
    raise ApiError(400, f"scale: no weights for '{model}' at x{scale} here (only {scales})")


@dataclass(frozen=True)
class Upload:
    """One request's files (temporary) and choices, checked by :func:`check_upload`."""
    image: Path
    name: str  # the file name the client gave, for messages
    model: str
    scale: int
    hr: Optional[Path] = None


def _named(exc: Exception, upload: Upload) -> str:
    """The message with the temporary paths replaced by the client's names."""
    text = str(exc).replace(str(upload.image), upload.name)
    return text.replace(str(upload.hr), "hr") if upload.hr else text


def check_upload(upload: Upload, max_output_pixels: int) -> tuple[int, int]:
    """(width, height) of the image, from its header: 400 for a file that is not a still
    image, 413 for an output over ``max_output_pixels`` or the memory there is (so a
    decompression bomb is refused before a pixel is decoded); an HR image must be the output's
    size (or up to ``scale - 1`` pixels larger, as a benchmark HR before its mod-crop)."""
    try:
        width, height = image_size(upload.image, max_pixels=None)
        check_output_size(upload.name, width, height, upload.scale, max_output_pixels,
                          upload.scale if upload.model == BICUBIC else None)
        hr_size = image_size(upload.hr, max_pixels=None) if upload.hr else None
    except UpscaleError as exc:  # the output's size
        raise ApiError(413, _named(exc, upload)) from None
    except CclnnError as exc:
        raise ApiError(400, _named(exc, upload)) from None
    if hr_size is not None:
        out = (width * upload.scale, height * upload.scale)
        if not all(o <= h < o + upload.scale for o, h in zip(out, hr_size)):
            raise ApiError(400, f"hr: {hr_size[0]}x{hr_size[1]} is not x{upload.scale} of "
                                f"{upload.name} ({width}x{height}): expected {out[0]}x{out[1]}")
    return width, height


class Networks:
    """The last :data:`NETWORKS_KEPT` networks used, loaded on ``device``."""

    def __init__(self, device: torch.device):
        self.device = device
        self._loaded: OrderedDict[tuple[str, int], torch.nn.Module] = OrderedDict()

    def _load(self, offer: Offer) -> torch.nn.Module:
        """The offer's network; a cached pretrained file is checked against the manifest
        but, unlike ``weights="pretrained"``, never fetched again: a server does not
        download while it serves."""
        if offer.source == SHIPPED_LABEL:
            return create_model(offer.name, offer.scale, SHIPPED, device=self.device)
        entry = find_pretrained(offer.name, offer.scale)
        verify_file(entry, local_path(entry))
        return create_model(offer.name, offer.scale, local_path(entry), device=self.device,
                            **entry.options)

    def get(self, offer: Offer) -> torch.nn.Module:
        key = (offer.name, offer.scale)
        if key not in self._loaded:
            self._loaded[key] = self._load(offer)
            while len(self._loaded) > NETWORKS_KEPT:
                self._loaded.popitem(last=False)
        self._loaded.move_to_end(key)
        return self._loaded[key]


@dataclass(frozen=True)
class Result:
    """A finished job: the PNG and what the page shows beside it."""
    png: bytes
    width: int
    height: int
    seconds: float
    psnr: Optional[float] = None
    ssim: Optional[float] = None


def _bicubic(pixels: np.ndarray, alpha: Optional[np.ndarray], scale: int) -> np.ndarray:
    out = imresize(pixels, scale)
    return out if alpha is None else np.dstack([out, imresize(alpha, scale)])


def _scores(out: np.ndarray, hr_path: Path, scale: int) -> tuple[float, float]:
    """Y PSNR and SSIM of the output's colour (alpha left out) against the HR image."""
    hr = read_image(hr_path)
    sr = out[..., :3] if out.ndim == 3 and out.shape[2] in (3, 4) else out
    sr = sr[..., 0] if sr.ndim == 3 and sr.shape[2] == 2 else sr
    return psnr(hr, sr, scale), ssim(hr, sr, scale)


def run_upload(upload: Upload, offer: Optional[Offer], networks: Networks,
               tile_bar: Optional[Callable] = None) -> Result:
    """The job: decode, upscale with the offer's network (bicubic for None), score, encode.
    Runs in the worker thread; the header was checked by :func:`check_upload`."""
    start = time.perf_counter()
    try:
        net = networks.get(offer) if offer is not None else None
    except CclnnError as exc:  # the weights here are damaged or gone: the server's fault
        raise ApiError(500, f"model: {offer.name} x{offer.scale}: {exc}") from None
    try:
        pixels, alpha, gray, meta = read_image_with_alpha(upload.image, max_pixels=None)
        if net is None:
            out = _bicubic(pixels, alpha, upload.scale)
        else:
            out = upscale_pixels(pixels, alpha, gray, net, upload.scale,
                                 device=networks.device, tile_bar=tile_bar)
        scores = _scores(out, upload.hr, upload.scale) if upload.hr else (None, None)
    except JobCancelled:
        raise
    except NotEnoughMemory as exc:  # the network's working set, counted before it runs
        raise ApiError(413, _named(exc, upload)) from None
    except CclnnError as exc:
        raise ApiError(400, _named(exc, upload)) from None
    buffer = io.BytesIO()
    Image.fromarray(out).save(buffer, format="PNG", **meta.save_options("PNG"))
    return Result(buffer.getvalue(), out.shape[1], out.shape[0],
                  time.perf_counter() - start, *scores)
