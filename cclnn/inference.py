"""Running a network on whole images: uint8 in, uint8 out, tiled and self-ensembled.

Tiling: the LR image is cut into ``tile`` x ``tile`` cores; each tile's input extends
``overlap`` LR pixels beyond its core on every side (clipped at the image border).
Neighbouring outputs are cross-faded (linear weights) over the ``overlap // 2`` LR pixels
next to each core and the rest of the margin is discarded, so a convolutional network whose
receptive-field radius is at most ``overlap // 2`` LR pixels gives exactly its untiled
output. The weighted sums are finished one row of tiles at a time (the rows the next row of
tiles still overlaps are carried over) and rounded into the uint8 output, so the float memory
is one band of ``tile + 2 * overlap`` LR rows across the image, whatever its height; with
self-ensembling each tile is averaged over its 8 flips/rotations.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch

from .cpu import release_freed_memory, torch_threads, usable_threads
from .errors import CclnnError
from .memory import (BOUND_FACTOR, NotEnoughMemory, available_memory, largest_layer_bytes,
                     size_text, working_set)
from .models.descriptor import describe

Net = Callable[[torch.Tensor], torch.Tensor]


def image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 H x W x 3 -> 1 x 3 x H x W float in [0, 255]."""
    return torch.from_numpy(np.array(img, order="C")).permute(2, 0, 1)[None].float()


def tensor_to_image(t: torch.Tensor) -> np.ndarray:
    """1 x 3 x H x W in [0, 255] -> uint8 H x W x 3 (clamped, rounded)."""
    img = t[0].detach().clamp(0, 255)
    return img.round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()  # one float copy


def _dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = x.flip(-1) if flip else x
    return torch.rot90(x, k, dims=(-2, -1))


def _undo_dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, -k, dims=(-2, -1))
    return x.flip(-1) if flip else x


DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]  # rotations, then flipped
ENSEMBLE_VIEWS = len(DIHEDRAL)  # network runs per image of a self-ensemble


def self_ensemble(net: Net, x: torch.Tensor) -> torch.Tensor:
    """Mean of the outputs on the 8 flips/rotations of ``x`` (the papers' "+" rows)."""
    total = None
    for k, flip in DIHEDRAL:
        y = _undo_dihedral(net(_dihedral(x, k, flip)), k, flip)
        total = y if total is None else total + y
    return total / ENSEMBLE_VIEWS


def _fade(length: int, start: int, stop: int, scale: int, fade: int) -> torch.Tensor:
    """Weights of the HR rows of one tile whose core is LR rows [start, stop)."""
    u = (torch.arange(length, dtype=torch.float64) + 0.5) / scale  # LR coordinate of centres
    outside = torch.clamp(torch.maximum(start - u, u - stop), min=0)
    if fade == 0:
        return (outside == 0).double()
    return torch.clamp(1 - outside / fade, min=0)


def tile_count(h: int, w: int, tile: int) -> int:
    """How many tiles :func:`tiled_bands` runs on an ``h`` x ``w`` LR image (1: untiled)."""
    if tile <= 0 or (h <= tile and w <= tile):
        return 1
    return -(-h // tile) * -(-w // tile)


def _tile_outputs(net: Net, crop: Callable[[int, int, int, int], torch.Tensor],
                  boxes: list[tuple[int, int, int, int]], workers: int) -> Iterator[torch.Tensor]:
    """``net(crop(*box))`` for each box, in order; with ``workers`` > 1 that many tiles are
    computed at once in threads of one torch thread each (the GIL is released inside torch),
    at most ``workers`` outputs held, so the result does not depend on ``workers``."""
    if workers <= 1 or len(boxes) < 2:
        for box in boxes:
            yield net(crop(*box))
        return

    def one(box):  # in a new thread: autograd's mode is per thread
        with torch.inference_mode():
            return net(crop(*box))

    with torch_threads(1), ThreadPoolExecutor(workers, initializer=torch.set_num_threads,
                                              initargs=(1,)) as pool:
        pending = deque(pool.submit(one, box) for box in boxes[:workers])
        for box in boxes[workers:] + [None] * workers:
            if not pending:
                break
            sr = pending.popleft().result()
            if box is not None:
                pending.append(pool.submit(one, box))
            yield sr


def tile_spans(size: int, tile: int, overlap: int, same_shape: bool = False
               ) -> list[tuple[int, int, int, int]]:
    """(core start, core stop, input start, input stop) of the tiles along one side of
    ``size`` LR pixels: cores of ``tile`` (the last one shorter), inputs ``overlap`` beyond
    them clipped at the borders. ``same_shape``: ``ceil(size / tile)`` even cores instead,
    and inputs all of one length (the longest core plus ``overlap`` on both sides, or the
    whole side), moved inwards at the borders rather than clipped, so every tile of an image
    has one shape (its allocations then reuse the last tile's memory) and at least
    ``overlap`` of context. (The first layout is kept where recorded results came from it.)"""
    n = -(-size // tile)
    if not same_shape:
        return [(a0, min(a0 + tile, size), max(0, a0 - overlap), min(size, a0 + tile + overlap))
                for a0 in range(0, size, tile)]
    cuts = [size * i // n for i in range(n + 1)]
    window = min(size, -(-size // n) + 2 * overlap)
    spans = []
    for a0, a1 in zip(cuts, cuts[1:]):
        lo = min(max(0, a0 - overlap), size - window)
        spans.append((a0, a1, lo, lo + window))
    return spans


def tiled_bands(net: Net, crop: Callable[[int, int, int, int], torch.Tensor], h: int, w: int,
                scale: int, tile: int, overlap: int,
                on_tile: Callable[[], None] | None = None,
                workers: int = 1, same_shape: bool = False) -> Iterator[torch.Tensor]:
    """The tiled output of an ``h`` x ``w`` LR image, finished row band by row band (1 x C x
    rows x sW float, top to bottom), so that memory holds one band of tiles, not the image.

    ``crop(y0, y1, x0, x1)`` gives the float LR input of a tile. Each pixel sums the same
    tiles' weighted outputs in the same order as a whole-image accumulator would, so the bands
    put together are bit for bit that accumulator's result. ``workers``: tiles computed at
    once (see :func:`_tile_outputs`); ``same_shape``: see :func:`tile_spans`.
    """
    if tile <= 0:
        raise ValueError("tile must be positive")
    fade = overlap // 2
    rows, cols = (tile_spans(side, tile, overlap, same_shape) for side in (h, w))
    boxes = [(iy0, iy1, ix0, ix1) for _, _, iy0, iy1 in rows for _, _, ix0, ix1 in cols]
    outputs = _tile_outputs(net, crop, boxes, workers)
    try:
        acc = weight_sum = None  # the rows from ``done`` on that tiles still add to
        done = 0
        for y0, y1, iy0, iy1 in rows:
            wy = _fade((iy1 - iy0) * scale, y0 - iy0, y1 - iy0, scale, fade)
            ry0, ry1 = max(iy0, y0 - fade), min(iy1, y1 + fade)  # rows it weighs at all
            grow = ry1 * scale - done - (0 if acc is None else acc.shape[2])
            for x0, x1, ix0, ix1 in cols:
                wx = _fade((ix1 - ix0) * scale, x0 - ix0, x1 - ix0, scale, fade)
                rx0, rx1 = max(ix0, x0 - fade), min(ix1, x1 + fade)
                sr = next(outputs).float().cpu()
                if acc is None:
                    acc = torch.zeros(1, sr.shape[1], 0, w * scale)
                    weight_sum = torch.zeros(1, 1, 0, w * scale)
                if grow > 0:
                    acc = torch.cat([acc, acc.new_zeros(1, acc.shape[1], grow, w * scale)], 2)
                    weight_sum = torch.cat([weight_sum, weight_sum.new_zeros(1, 1, grow,
                                                                             w * scale)], 2)
                    grow = 0
                inside = (slice((ry0 - iy0) * scale, (ry1 - iy0) * scale),
                          slice((rx0 - ix0) * scale, (rx1 - ix0) * scale))
                weights = (wy[inside[0], None] * wx[None, inside[1]]).float()
                region = (..., slice(ry0 * scale - done, ry1 * scale - done),
                          slice(rx0 * scale, rx1 * scale))
                acc[region] += sr[(..., *inside)] * weights
                weight_sum[region] += weights
                if on_tile is not None:
                    on_tile()
            final = (max(0, y1 - fade) if y1 < h else h) * scale - done  # no later tile adds
            yield acc[:, :, :final].div(weight_sum[:, :, :final])
            acc, weight_sum = acc[:, :, final:].clone(), weight_sum[:, :, final:].clone()
            done += final
    finally:
        outputs.close()  # its threads and torch's thread count


def tiled(net: Net, x: torch.Tensor, scale: int, tile: int, overlap: int) -> torch.Tensor:
    """Apply ``net`` to 1 x C x H x W ``x`` tile by tile (see module docstring)."""
    _, _, h, w = x.shape
    if tile <= 0:
        raise ValueError("tile must be positive")
    if h <= tile and w <= tile:
        return net(x)
    bands = tiled_bands(net, lambda y0, y1, x0, x1: x[..., y0:y1, x0:x1], h, w, scale, tile,
                        overlap)
    return torch.cat(list(bands), 2)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None: float32); fp16 is refused on
    the CPU, where its kernels are missing or slower than float32."""
    if precision not in PRECISIONS:
        raise CclnnError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        raise CclnnError("--precision fp16: not on the CPU (use bf16 or fp32 there, fp16 with "
                         "--device cuda)")
    return PRECISIONS[precision]


def model_runner(model: torch.nn.Module, device: torch.device,
                 dtype: torch.dtype | None = None, channels_last: bool = False) -> Net:
    """``net(x)`` that runs ``model`` on ``device`` (under autocast to ``dtype`` if given) and
    returns CPU float output. ``channels_last``: the input in that memory format, which the
    convolutions keep (oneDNN's 3x3 convolutions run ~1.5x faster on the CPU; the results
    differ from the default layout's by float rounding only)."""
    layout = torch.channels_last if channels_last else torch.contiguous_format

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None), \
                flush_denormals():
            return model(x.to(device).contiguous(memory_format=layout)).float().cpu()
    return run


def flushing_denormals() -> bool:
    """Whether this thread's CPU float unit flushes subnormal numbers to zero (torch has a
    setter, no getter): a subnormal doubled stays non-zero only when they are kept."""
    return torch.tensor([1e-39]).mul(2.0).item() == 0.0


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Subnormal floats read and written as zero on this thread for the block, then the
    thread's mode as it was. A softmax over thousands of positions (RNAN's non-local block)
    leaves most weights subnormal, which the CPU computes with slow microcode: flushed, RNAN-S
    runs 2.1x faster with bit-identical outputs (docs/performance.md). Inference only:
    training keeps IEEE subnormals. torch's intra-op threads keep their own mode."""
    before = flushing_denormals()
    if before or not torch.set_flush_denormal(True):  # already on, or not supported here
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@contextmanager
def on_device(model: torch.nn.Module, device: torch.device) -> Iterator[torch.nn.Module]:
    """``model`` moved to ``device`` for the block and back to where it was afterwards (a
    caller's module is left as it was given)."""
    first = next(model.parameters(), None)
    home = first.device if first is not None else device
    if home == device:
        yield model
        return
    try:
        yield model.to(device)
    finally:
        model.to(home)


class TileTooLarge(NotEnoughMemory):
    """One tile (or the whole image) would not fit the memory available: found before it runs."""


def _tile_window(size: int, tile: int, overlap: int, same_shape: bool) -> int:
    """The longest tile input along a side of ``size`` LR pixels (see :func:`tile_spans`)."""
    return max(i1 - i0 for _, _, i0, i1 in tile_spans(size, tile, overlap, same_shape))


def tiles_in_memory(model: torch.nn.Module, tile_shape: tuple[int, int], wanted: int,
                    reserved: int, channels_last: bool, ensemble: bool, scale: int,
                    what: str, advice: str) -> int:
    """How many of ``wanted`` tile inputs of ``tile_shape`` LR pixels the network can run at
    once in the memory available now less ``reserved`` bytes (the output's): ``wanted`` when
    they fit, fewer when not, and a one-line :class:`TileTooLarge` naming ``what`` and giving
    ``advice`` when not even one fits (see :mod:`cclnn.memory`; a network that cannot run
    its small inputs is not checked)."""
    h, w = tile_shape
    budget = available_memory() - reserved
    largest = largest_layer_bytes(model, channels_last)
    if largest is None or BOUND_FACTOR * largest * h * w * wanted <= budget // 2:
        return wanted
    estimate = working_set(model, channels_last)
    if estimate is None:
        return wanted
    one = estimate.bytes(h, w) + (2 * 3 * 4 * h * w * scale * scale if ensemble else 0)
    if one > budget:
        raise TileTooLarge(f"the network needs about {size_text(one)} for {what}; "
                           f"{size_text(budget)} are available ({advice})")
    return max(1, min(wanted, budget // one))


def _band_rows(bands: Iterator[torch.Tensor], out: np.ndarray) -> None:
    """Round the float bands (top to bottom) into the uint8 H x W x C ``out``."""
    row = 0
    for band in bands:
        out[row:row + band.shape[2]] = tensor_to_image(band)
        row += band.shape[2]


@torch.inference_mode()
def super_resolve(model: torch.nn.Module, lr: np.ndarray, scale: int, *,
                  tile: int | None = None, overlap: int = 16, ensemble: bool = False,
                  device: torch.device | str = "cpu", precision: str = "fp32",
                  on_tile: Callable[[], None] | None = None, fast_cpu: bool = False
                  ) -> np.ndarray:
    """uint8 H x W x 3 LR -> uint8 sH x sW x 3 SR with ``model`` in eval mode on ``device``.

    ``tile=None`` runs the whole image unless the network's descriptor has a ``max_tile``
    (RNAN: its non-local blocks are quadratic in the image size); ``tile=0`` always runs it
    whole. Tiled, the float work is one band of tiles and the result is written into the
    uint8 output band by band; self-ensembling then averages the 8 flips/rotations of each
    tile, so it stays within one tile's memory too. ``on_tile`` is called after each tile.
    ``precision``: "fp32", or "bf16"/"fp16" under autocast (fp16 not on the CPU).
    ``fast_cpu`` (on the CPU): channels-last activations; at most ``torch.get_num_threads()``
    threads and no more than other processes leave free (:func:`usable_threads`);
    tiles are computed that many at once, one torch thread each, which scales with the cores,
    and the tiled output does not depend on the thread count. Off for evaluation, whose
    recorded results came from the default layout.
    """
    try:
        return _super_resolve(model, lr, scale, tile, overlap, ensemble, device, precision,
                              on_tile, fast_cpu)
    except torch.cuda.OutOfMemoryError:
        raise NotEnoughMemory("out of GPU memory (use a smaller --tile)") from None
    except RuntimeError as exc:  # the CPU allocator's failure (under a ulimit -v, say)
        if "can't allocate memory" not in str(exc):
            raise
        raise NotEnoughMemory("out of memory (use a smaller --tile, or fewer --threads)") from None


def _super_resolve(model, lr, scale, tile, overlap, ensemble, device, precision, on_tile,
                   fast_cpu) -> np.ndarray:
    if tile is None:
        info = describe(model)
        tile = info.max_tile if info else None
    device = torch.device(device)
    dtype = autocast_dtype(precision, device)
    h, w = lr.shape[:2]
    fast_cpu = fast_cpu and device.type == "cpu"
    with on_device(model.eval(), device):
        run = model_runner(model, device, dtype, channels_last=fast_cpu)
        net = (lambda t: self_ensemble(run, t)) if ensemble else run
        threads = usable_threads(torch.get_num_threads()) if fast_cpu else None
        release_freed_memory()  # a new image: tensor sizes unlike the last one's
        check = device.type == "cpu"
        if tile_count(h, w, tile or 0) == 1:
            if check:
                tiles_in_memory(model, (h, w), 1, 0, fast_cpu, ensemble, scale,
                                f"the whole {w}x{h} image", "give a --tile, e.g. 256")
            with torch_threads(threads):
                y = net(image_to_tensor(lr))
            if on_tile is not None:
                on_tile()
            return tensor_to_image(y)
        out = np.empty((h * scale, w * scale, 3), np.uint8)
        workers = threads or 1
        if check:
            window = tuple(_tile_window(side, tile, overlap, fast_cpu) for side in (h, w))
            workers = tiles_in_memory(
                model, window, min(workers, tile_count(h, w, tile)), out.nbytes, fast_cpu,
                ensemble, scale, f"one {window[1]}x{window[0]} tile", "use a smaller --tile")
        crop = lambda y0, y1, x0, x1: image_to_tensor(lr[y0:y1, x0:x1])  # noqa: E731
        with torch_threads(1 if fast_cpu else None):  # fast: one torch thread per tile
            _band_rows(tiled_bands(net, crop, h, w, scale, tile, overlap, on_tile,
                                   workers, same_shape=fast_cpu), out)
        return out


def describe_device(device: torch.device) -> str:
    """'cpu' or 'cuda (NVIDIA H200)': where a run's wall time was spent (tables keep them apart)."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when available; any other device must exist on this machine (torch
    names many device types that this build cannot run on, e.g. mps without Apple's GPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CclnnError(f"--device {name}: unknown device (use auto, cpu or cuda[:N])") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CclnnError(f"--device {name}: no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CclnnError(f"--device {name}: there are {torch.cuda.device_count()} CUDA "
                             "device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise CclnnError(f"--device {name}: MPS is not available in this build of torch")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise CclnnError(f"--device {name}: not a device cclnn runs on (use auto, cpu or cuda)")
    return device
