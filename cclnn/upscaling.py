"""Upscaling any image: :func:`upscale`, and the file handling of ``cclnn upscale``
(:mod:`cclnn.cli.upscale`: :func:`plan_jobs` then :func:`upscale_file`).

What happens to an image (files, PIL images and arrays take one path, :func:`upscale_pixels`,
after :mod:`cclnn.data.images` decoded them):

* EXIF orientation is applied first (the output is stored upright, the tag set to 1); the
  ICC profile, the rest of the EXIF and the DPI are carried to PNG, JPEG, WebP (no DPI) and
  TIFF outputs;
* grayscale in, grayscale out: the network sees the gray values replicated to RGB and the
  result is converted back (ITU-R 601 luma, as PIL's ``convert("L")``);
* an alpha channel is upscaled with MATLAB-exact bicubic and reattached;
* 16-bit images are converted to 8 bits (with a warning) and written as 8-bit;
* large images are processed in tiles (``tile="auto"``: 1024 / scale LR pixels, i.e. 512 at
  x2 and 256 at x4, with 16 pixels of context, when a side is larger; halved, down to 32,
  while the network's working set for one tile would not fit the memory available), so the
  float memory is one row of tiles and the rest is the uint8 output (:func:`peak_bytes`); an
  output over
  ``max_output_pixels`` (default 2**28, 16384 x 16384: 0.8 GB as RGB, 3.2 GB at the peak of
  writing it, and beyond what WebP or most viewers open) or over the machine's available
  memory is refused from the image header, before any network is built;
* ``outscale``: the network runs at its scale, then MATLAB-exact bicubic (:func:`imresize`,
  uint8-exact) brings the output to ``outscale`` times the input (``ceil`` of each side);
* outputs are named ``STEM_SUFFIX.EXT`` (suffix ``xS``, ``xOUTSCALE`` with ``outscale``), keep
  the input's format (PNG, JPEG, WebP, TIFF, ...) unless ``ext`` names another, are written
  atomically, and an existing file is never replaced without ``overwrite`` (of two writers
  racing for one name exactly one wins).

Re-runs are idempotent. An input ``STEM_xN.EXT`` (N a number) or ``STEM_SUFFIX.EXT`` (the
run's suffix) beside a ``STEM.*`` in the same input set is the output of an earlier run and
is not upscaled again (name it alone to upscale it; outputs of a run with another
``suffix`` are recognised only when that suffix is given again); an existing output is
skipped and counted as skipped; an input is never an output of the same command, and two
inputs never share an output.
"""
from __future__ import annotations

import glob
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import numpy as np
import torch
from PIL import Image, ImageOps

from .atomic import remove_stale_temps
from .data.images import (IMAGE_SUFFIXES, decode_array, decode_image, image_size, is_image_file,
                          read_image_with_alpha, write_image)
from .errors import CclnnError
from .factory import SHIPPED, create_model
from .inference import TileTooLarge, resolve_device, super_resolve, tile_count
from .memory import available_memory
from .models.descriptor import describe
from .resize import imresize

AUTO_TILE_HR = 1024  # HR pixels per tile side: the upsampler's tensors grow with scale^2
MIN_AUTO_TILE = 32  # LR pixels: "auto" tiles no smaller when memory is short
TILE_OVERLAP = 16
DEFAULT_MODEL = "cclnn-t"
DEFAULT_MAX_OUTPUT_PIXELS = 2 ** 28
SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}
EXTENSIONS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tif": ".tif", "auto": None}
BAND_ROWS = 1024  # LR rows per band of the gray and alpha conversions
TileBar = Callable[[int], Callable[[], None]]  # tile count -> called once per tile


class UpscaleError(CclnnError):
    """One input could not be upscaled; the message names it."""


class OutputExists(UpscaleError):
    """The output is there already (from an earlier run or another writer): skipped."""


def _network(model: Union[str, torch.nn.Module], scale: int, weights=None) -> torch.nn.Module:
    """:func:`upscale`'s network: a registered name, through :func:`cclnn.create_model` (with
    ``weights`` or its shipped weights), or a module (used as is; if cclnn built it, for
    ``scale``). Either is moved to the device for the call only."""
    if isinstance(model, torch.nn.Module):
        info = describe(model)
        if info is not None and info.scale != scale:
            raise UpscaleError(f"the model is for x{info.scale}, not x{scale}")
        return model.eval()
    return create_model(model, scale, weights or SHIPPED)


def _tile_for(shape: tuple[int, int], tile, scale: int, limit: int | None = None) -> int:
    """LR tile side for ``tile`` ("auto" or a number, 0 = whole image); 0 means untiled.

    ``limit`` is the network's own ``max_tile`` (RNAN's descriptor), which "auto" respects."""
    if tile == "auto":
        size = min(AUTO_TILE_HR // scale, limit or AUTO_TILE_HR)
        return size if max(shape) > size else 0
    return int(tile)


def peak_bytes(width: int, height: int, scale: int, tile: int = AUTO_TILE_HR) -> int:
    """Upper estimate of the memory one image needs besides the network: the decoded input
    (8 bytes per LR pixel), the output (12 bytes per HR pixel at worst: RGB, alpha, their
    stack and PIL's 4-byte copy when encoding) and the float band of tiles (accumulator,
    weights and their copies: 40 bytes per pixel of a band ``tile + 2 * overlap`` LR rows
    high)."""
    band_rows = (min(tile, height) + 2 * TILE_OVERLAP) * scale
    return 8 * width * height + 12 * width * height * scale ** 2 + 40 * band_rows * width * scale


def check_output_size(name: str, width: int, height: int, scale: int,
                      max_output_pixels: int | None = DEFAULT_MAX_OUTPUT_PIXELS,
                      outscale: float | None = None) -> None:
    """Refuse (one line with the sizes) an output over ``max_output_pixels`` (None or 0: no
    limit) or beyond the memory available now (with ``outscale``, its float64 resize too)."""
    factor = outscale or scale
    out_w, out_h = math.ceil(width * factor - 1e-9), math.ceil(height * factor - 1e-9)
    sizes = (f"{width}x{height} at x{factor:g} makes {out_w}x{out_h} "
             f"({out_w * out_h / 1e6:.0f} Mpx)")
    if max_output_pixels and out_w * out_h > max_output_pixels:
        raise UpscaleError(f"{name}: {sizes}, over the limit of {max_output_pixels / 1e6:.0f} "
                           f"Mpx (--max-output-pixels)")
    resize = 64 * (out_w * out_h + width * height * scale ** 2) if outscale else 0
    need, have = peak_bytes(width, height, scale) + resize, available_memory()
    if need > have:
        raise UpscaleError(f"{name}: {sizes}, needing about {need / 1e9:.1f} GB of memory; "
                           f"{have / 1e9:.1f} GB are available")


def upscale_array(rgb: np.ndarray, net: torch.nn.Module, scale: int, *, tile="auto",
                  device="auto", self_ensemble: bool = False, precision: str = "fp32",
                  tile_bar: TileBar | None = None) -> np.ndarray:
    """uint8 H x W x 3 -> uint8 sH x sW x 3, on ``device`` ("auto": CUDA when there is one)
    in ``precision`` (fp32, bf16, fp16: see :func:`cclnn.inference.super_resolve`)."""
    info = describe(net)
    shape = rgb.shape[:2]
    size = _tile_for(shape, tile, scale, info.max_tile if info else None)
    bar: list = []  # made at the first tile, once the tile size is settled

    def on_tile() -> None:
        if not bar:
            bar.append(tile_bar(tile_count(*shape, size)) or (lambda: None))
        bar[0]()
    while True:
        try:
            return super_resolve(
                net, rgb, scale, tile=size, overlap=TILE_OVERLAP, ensemble=self_ensemble,
                on_tile=on_tile if tile_bar else None, precision=precision, fast_cpu=True,
                device=resolve_device(device) if isinstance(device, str) else device)
        except TileTooLarge:
            # "auto" halves its tile until one fits the memory (found before any tile ran)
            if tile != "auto" or 0 < size <= MIN_AUTO_TILE:
                raise
            size = max(MIN_AUTO_TILE, -(-(size or max(shape)) // 2))


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of uint8 RGB, band by band (PIL's RGB copy is 4 bytes a pixel)."""
    gray = np.empty(rgb.shape[:2], np.uint8)
    for row in range(0, rgb.shape[0], BAND_ROWS):
        gray[row:row + BAND_ROWS] = Image.fromarray(rgb[row:row + BAND_ROWS]).convert("L")
    return gray


def _upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic alpha, band by band with 4 LR rows of context (more than the kernel reaches,
    so each band is exactly its rows of the whole-image resize) to keep float64 off the
    whole output."""
    height = alpha.shape[0]
    out = np.empty((height * scale, alpha.shape[1] * scale), np.uint8)
    for row in range(0, height, BAND_ROWS):
        lo, hi = max(0, row - 4), min(height, row + BAND_ROWS + 4)
        band = imresize(alpha[lo:hi].astype(np.float64), scale).round().clip(0, 255)
        rows = min(BAND_ROWS, height - row) * scale
        out[row * scale:row * scale + rows] = band[(row - lo) * scale:][:rows]
    return out


def upscale_pixels(pixels: np.ndarray, alpha: np.ndarray | None, gray: bool, net, scale: int,
                   outscale: float | None = None, **options) -> np.ndarray:
    """The one path of every image: decoded pixels (H x W or H x W x 3) and alpha -> uint8
    sH x sW (x 2, 3 or 4), then resized to ``outscale`` times the input if given;
    ``options`` as :func:`upscale_array`'s."""
    rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)
    sr = upscale_array(rgb, net, scale, **options)
    if gray:
        sr = _to_gray(sr)
    if alpha is not None:
        sr = np.dstack([sr, _upscale_alpha(alpha, scale)])
    if outscale is not None and outscale != scale:
        sr = imresize(sr, outscale / scale)
    return sr


def upscale(image, scale: int = 2, model: Union[str, torch.nn.Module] = DEFAULT_MODEL,
            weights=None, *, tile="auto", device="auto", self_ensemble: bool = False,
            max_output_pixels: int | None = DEFAULT_MAX_OUTPUT_PIXELS, precision: str = "fp32",
            outscale: float | None = None):
    """Upscale a PIL image or a numpy array (H x W, H x W x 1/2/3/4; uint8, or uint16 made
    8-bit as files are); returns the same type, with the input's channels. ``model`` is a
    registered name (default: the shipped CCLNN-T) or a module, run on ``device`` for the call
    (a module is moved back afterwards). Images are treated exactly as ``cclnn upscale``
    treats files (EXIF orientation of PIL images included); ``precision`` and ``outscale``
    as ``cclnn upscale --precision/--outscale``."""
    if isinstance(image, Image.Image):
        upright = ImageOps.exif_transpose(image)
        check_output_size("image", upright.width, upright.height, scale, max_output_pixels,
                          outscale)
        pixels, alpha, gray = decode_image(upright)
    else:
        arr = np.asarray(image)
        pixels, alpha, gray = decode_array(arr)
        check_output_size("image", arr.shape[1], arr.shape[0], scale, max_output_pixels,
                          outscale)
    net = _network(model, scale, weights)
    out = upscale_pixels(pixels, alpha, gray, net, scale, outscale, tile=tile, device=device,
                         self_ensemble=self_ensemble, precision=precision)
    if isinstance(image, Image.Image):
        return Image.fromarray(out)
    return out[..., None] if arr.ndim == 3 and arr.shape[2] == 1 else out


def upscale_file(source: Path, target: Path, net, scale: int, *, overwrite: bool = False,
                 max_output_pixels: int | None = DEFAULT_MAX_OUTPUT_PIXELS,
                 outscale: float | None = None, **options) -> None:
    """``source`` upscaled into ``target`` (format by suffix), resized to ``outscale`` times
    the input if given; ``options`` as :func:`upscale_array`'s. :class:`OutputExists` when
    ``target`` exists (or appears while computing) and ``overwrite`` is off."""
    if target.exists() and not overwrite:
        raise OutputExists(f"{target}: exists (use --overwrite to replace it)")
    width, height = image_size(source, None)
    check_output_size(str(source), width, height, scale, max_output_pixels, outscale)
    pixels, alpha, gray, meta = read_image_with_alpha(source, None)
    sr = upscale_pixels(pixels, alpha, gray, net, scale, outscale, **options)
    fmt = Image.registered_extensions().get(target.suffix.lower(), "")
    if fmt == "JPEG" and sr.ndim == 3 and sr.shape[2] in (2, 4):
        sr = sr[..., :-1] if sr.shape[2] == 4 else sr[..., 0]  # JPEG has no alpha
    try:
        write_image(target, sr, replace=overwrite, meta=meta, **SAVE_OPTIONS.get(fmt, {}))
    except FileExistsError:
        raise OutputExists(f"{target}: appeared while computing (another writer); "
                           f"left as it is") from None


def expand_inputs(items: list[str]) -> tuple[list[Path], list[str]]:
    """Files from files, folders (their image files) and globs; plus one error per miss."""
    files, errors = [], []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
            if not found:
                errors.append(f"{path}: no image files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        elif any(ch in item for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
            if not found:
                errors.append(f"{item}: no file matches")
            files += found
        else:
            errors.append(f"{path}: file not found")
    return list(dict.fromkeys(files)), errors


_OUTPUT_NAME = re.compile(r"^(.+)_x\d+(\.\d+)?$")


def output_suffix(scale: int, outscale: float | None = None, suffix: str | None = None) -> str:
    """The text after ``STEM_`` of an output: ``suffix``, else ``xOUTSCALE`` or ``xSCALE``;
    one that would leave the folder or break the line is refused."""
    if suffix is None:
        return f"x{outscale:g}" if outscale is not None else f"x{scale}"
    if not suffix or "/" in suffix or os.sep in suffix or not suffix.isprintable():
        raise UpscaleError(f"--suffix {suffix!r}: must be non-empty printable text without "
                           f"'/' (outputs are named STEM_SUFFIX.EXT beside their inputs)")
    return suffix


def earlier_outputs(files: list[Path], suffix: str | None = None) -> set[Path]:
    """The files named ``STEM_xN.EXT`` (or ``STEM_SUFFIX.EXT``) beside a ``STEM.*`` of
    ``files``: outputs of an earlier run (chains such as ``a_x2_x2.png`` and other output
    formats included), never inputs again."""
    stems = {(path.parent, path.stem) for path in files}
    ours = re.compile(rf"^(.+)_{re.escape(suffix)}$") if suffix else None
    found = set()
    for path in files:
        for pattern in filter(None, (_OUTPUT_NAME, ours)):
            match = pattern.match(path.stem)
            if match and (path.parent, match.group(1)) in stems:
                found.add(path)
    return found


def output_path(source: Path, out: str | None, scale: int, single: bool,
                suffix: str | None = None, ext: str | None = None) -> Path:
    """Where ``source``'s output goes: ``STEM_SUFFIX.EXT`` beside it or in folder ``out``, or
    ``out`` itself for a single input named as an image file."""
    name = f"{source.stem}_{suffix or output_suffix(scale)}{ext or source.suffix}"
    if out is None:
        return source.with_name(name)
    target = Path(out)
    if single and not target.is_dir() and target.suffix and is_image_file(target):
        return target
    return target / name


@dataclass
class Plan:
    """What one ``cclnn upscale`` will do, all checked before any network is built."""
    jobs: list[tuple[Path, Path]]  # (input, output) to compute
    skipped: list[Path]  # outputs that exist (without overwrite)
    failed: list[str]  # one line per input that cannot be done


def _output_folder(folder: Path) -> None:
    """``folder`` made if missing, writable, and rid of killed writers' temp files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UpscaleError(f"{folder}: cannot create the output folder "
                           f"({exc.strerror or exc})") from None
    if not folder.is_dir():
        raise UpscaleError(f"{folder}: is not a folder; outputs cannot be written in it")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UpscaleError(f"{folder}: output folder is not writable")
    remove_stale_temps(folder)


def _targets(files: list[Path], out: str | None, scale: int, single: bool, suffix: str,
             ext: str | None) -> list[Path]:
    """Each input's output; a clash of two inputs, or an input as an output, is refused."""
    named = Path(out) if out else None
    if (named and not out.endswith(("/", os.sep)) and not named.is_dir() and named.suffix
            and not is_image_file(named)):
        raise UpscaleError(f"-o {out}: {named.suffix} is not an image format cclnn writes "
                           f"({' '.join(sorted(IMAGE_SUFFIXES))}); for a folder of that name, "
                           f"write {out.rstrip('/')}/")
    if named and files and not single and (named.is_file() or (not named.exists()
                                                               and is_image_file(named))):
        raise UpscaleError(f"-o {out}: several inputs need an output folder, not a file")
    targets = [output_path(source, out, scale, single, suffix, ext) for source in files]
    if ext and targets and single and targets[0].suffix.lower() != ext:
        raise UpscaleError(f"--ext {ext[1:]}: the output {targets[0]} is named with another "
                           f"format (name it *{ext} or leave out --ext)")
    inputs = {source.resolve(): source for source in files}
    owner: dict[Path, Path] = {}
    for source, target in zip(files, targets):
        key = target.resolve()
        if key in inputs:
            raise UpscaleError(f"{target}: is an input of this command, and would be "
                               f"the output of {source}")
        if key in owner:
            raise UpscaleError(f"{owner[key]} and {source} would both be written to {target}")
        owner[key] = source
    return targets


def plan_jobs(items: list[str], out: str | None, scale: int, *, overwrite: bool = False,
              max_output_pixels: int | None = DEFAULT_MAX_OUTPUT_PIXELS,
              outscale: float | None = None, suffix: str | None = None,
              ext: str = "auto") -> Plan:
    """Inputs expanded (earlier outputs left out), outputs checked (folders made and
    writable, no clash, existing ones skipped unless ``overwrite``), each input's header read
    and its output size checked: an :class:`UpscaleError` for the whole command, a line in
    ``failed`` for one input. ``suffix`` and ``ext`` (a key of ``EXTENSIONS``) name the
    outputs, ``outscale`` their size."""
    if ext not in EXTENSIONS:
        raise UpscaleError(f"--ext {ext}: expected one of {', '.join(EXTENSIONS)}")
    if outscale is not None and not 0 < outscale <= 16:
        raise UpscaleError(f"--outscale {outscale:g}: must be above 0 and at most 16")
    suffix = output_suffix(scale, outscale, suffix)
    files, failed = expand_inputs(items)
    earlier = earlier_outputs(files, suffix)
    files = [f for f in files if f not in earlier]
    single = len(files) == 1 and len(items) == 1 and not Path(items[0]).is_dir()
    targets = _targets(files, out, scale, single, suffix, EXTENSIONS[ext])
    for folder in dict.fromkeys(target.parent for target in targets):
        _output_folder(folder)
    plan = Plan([], [], failed)
    for source, target in zip(files, targets):
        if target.exists() and not overwrite:
            plan.skipped.append(target)
            continue
        try:
            width, height = image_size(source, None)
            check_output_size(str(source), width, height, scale, max_output_pixels, outscale)
        except CclnnError as exc:
            plan.failed.append(str(exc))
            continue
        plan.jobs.append((source, target))
    return plan


__all__ = ["upscale", "upscale_file", "plan_jobs"]
