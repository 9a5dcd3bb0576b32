"""Running a network on whole images: uint8 in, uint8 out, tiled and self-ensembled.

Tiling: the LR image is cut into ``tile`` x ``tile`` cores; each tile's input extends
``overlap`` LR pixels beyond its core on every side (clipped at the image border).
Neighbouring outputs are cross-faded (linear weights) over the ``overlap // 2`` LR pixels
next to each core and the rest of the margin is discarded, so a convolutional network whose
receptive-field radius is at most ``overlap // 2`` LR pixels gives exactly its untiled
output, and peak memory depends on the tile size, not the image size (apart from the output
itself).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .errors import CclnnError
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


def self_ensemble(net: Net, x: torch.Tensor) -> torch.Tensor:
    """Mean of the outputs on the 8 flips/rotations of ``x`` (the papers' "+" rows)."""
    total = None
    for flip in (False, True):
        for k in range(4):
            y = _undo_dihedral(net(_dihedral(x, k, flip)), k, flip)
            total = y if total is None else total + y
    return total / 8


def _fade(length: int, start: int, stop: int, scale: int, fade: int) -> torch.Tensor:
    """Weights of the HR rows of one tile whose core is LR rows [start, stop)."""
    u = (torch.arange(length, dtype=torch.float64) + 0.5) / scale  # LR coordinate of centres
    outside = torch.clamp(torch.maximum(start - u, u - stop), min=0)
    if fade == 0:
        return (outside == 0).double()
    return torch.clamp(1 - outside / fade, min=0)


def tiled(net: Net, x: torch.Tensor, scale: int, tile: int, overlap: int) -> torch.Tensor:
    """Apply ``net`` to 1 x C x H x W ``x`` tile by tile (see module docstring)."""
    n, _, h, w = x.shape
    if tile <= 0:
        raise ValueError("tile must be positive")
    if h <= tile and w <= tile:
        return net(x)
    fade = overlap // 2
    out = None
    weight_sum = torch.zeros(1, 1, h * scale, w * scale)
    for y0 in range(0, h, tile):
        y1 = min(y0 + tile, h)
        iy0, iy1 = max(0, y0 - overlap), min(h, y1 + overlap)
        wy = _fade((iy1 - iy0) * scale, y0 - iy0, y1 - iy0, scale, fade)
        for x0 in range(0, w, tile):
            x1 = min(x0 + tile, w)
            ix0, ix1 = max(0, x0 - overlap), min(w, x1 + overlap)
            wx = _fade((ix1 - ix0) * scale, x0 - ix0, x1 - ix0, scale, fade)
            sr = net(x[..., iy0:iy1, ix0:ix1]).float().cpu()
            if out is None:
                out = torch.zeros(n, sr.shape[1], h * scale, w * scale)
            weights = (wy[:, None] * wx[None, :]).float()
            region = (..., slice(iy0 * scale, iy1 * scale), slice(ix0 * scale, ix1 * scale))
            out[region] += sr * weights
            weight_sum[region] += weights
    return out.div_(weight_sum)


def model_runner(model: torch.nn.Module, device: torch.device) -> Net:
    """``net(x)`` that runs ``model`` on ``device`` and returns CPU float output."""
    def run(x: torch.Tensor) -> torch.Tensor:
        return model(x.to(device)).float().cpu()
    return run


@torch.inference_mode()
def super_resolve(model: torch.nn.Module, lr: np.ndarray, scale: int, *,
                  tile: int | None = None, overlap: int = 16, ensemble: bool = False,
                  device: torch.device | str = "cpu") -> np.ndarray:
    """uint8 H x W x 3 LR -> uint8 sH x sW x 3 SR with ``model`` in eval mode.

    ``tile=None`` runs the whole image unless the network's descriptor has a ``max_tile``
    (RNAN: its non-local blocks are quadratic in the image size); ``tile=0`` always runs it
    whole.
    """
    if tile is None:
        info = describe(model)
        tile = info.max_tile if info else None
    model.eval()
    run = model_runner(model, torch.device(device))
    net = (lambda t: tiled(run, t, scale, tile, overlap)) if tile else run
    x = image_to_tensor(lr)
    y = self_ensemble(net, x) if ensemble else net(x)
    return tensor_to_image(y)


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
