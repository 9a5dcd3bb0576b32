"""Local Attribution Maps (LAM) and the Diffusion Index (Gu & Dong, CVPR 2021, "Interpreting
Super-Resolution Networks with Local Attribution Maps").

Reference: the authors' code, github.com/X-Lowlevel-Vision/LAM_Demo (``SaliencyModel/
BackProp.py``: ``GaussianBlurPath``, ``Path_gradient``, ``saliency_map_PG``; ``SaliencyModel/
attributes.py``: ``attr_grad``; ``SaliencyModel/utils.py``: ``isotropic_gaussian_kernel``,
``grad_abs_norm``, ``gini``) and its Colab notebook, which fixes ``sigma = 1.2, fold = 50,
l = 9, window_size = 16`` and reports ``DI = (1 - gini(abs_normed_grad)) * 100``. Every choice
below follows that code unless marked *differs*.

Inputs. The LR image is MATLAB ``imresize(modcrop(HR, s), 1/s, 'bicubic')`` on uint8
(:func:`cclnn.imresize`; the official demo uses PIL's bicubic). The network sees float RGB in
[0, 255] (the official models see [0, 1]); both the objective and the attribution scale by the
same factor, and the map is normalised by its maximum, so DI does not depend on the range.

Objective (``attr_grad``). For the SR output ``O`` (N x 3 x sH x sW) the gradient magnitude at
pixel (i, j) of channel c is ``sqrt((O[i,j] - O[i+1,j])^2 + (O[i,j] - O[i,j+1])^2)`` (forward
differences; the map is (sH - 1) x (sW - 1)), summed over the ``window`` x ``window`` pixels
with top-left corner (x, y) = (column, row) in SR pixels, over the 3 channels and the batch.
The window must fit in the difference map: ``x + window <= sW - 1`` (the official code
silently truncates). *Differs*: where the squared sum is exactly 0 our sqrt has gradient 0; the
official sqrt gives NaN there, which then zeroes that step's whole input gradient wherever it
reached (``grad[np.isnan(grad)] = 0``). Both agree whenever no window pixel is exactly flat.

Path. ``sigmas = linspace(1.2, 0, 51)``; kernel k (k = 0..50) is the 9 x 9 isotropic Gaussian
``exp(-(dx^2 + dy^2) / (2 (sigma_k + 1e-5)^2))`` on dx, dy in -4..4, normalised to sum 1 in 2-D
(the 1e-5 makes sigma = 0 an exact delta). Step i (i = 0..49) evaluates the network at
``gamma_i = K_{i+1} * I`` (so the most blurred image, sigma = 1.2, is the baseline and is never
evaluated; the last step is the LR image itself), and the path derivative is the finite
difference ``dgamma_i = ((K_{i+1} - K_i) * 50) * I``. Filtering is correlation with OpenCV's
default border (reflect-101, ``abcb|abcd|cbcb``), per channel, in float64, and then cast to
float32 for the network, as ``cv2.filter2D`` on the float image followed by ``.astype(float32)``.

Attribution. ``A = mean_i(grad_i * dgamma_i)`` (3 x h x w, a right-endpoint Riemann sum of the
path integral; the product in float32 as in the official code, the mean accumulated in float64);
``grad_i`` is the gradient of the objective with respect to ``gamma_i``, NaNs set to 0. The
path steps go through the network in chunks of ``batch`` (the objective is summed over the
chunk; samples are independent in eval mode, so the gradients equal per-step ones).

Map and DI (``grad_abs_norm``, ``gini``). ``M = |sum_c A_c| / max |sum_c A_c|`` (channels summed
with their signs before the absolute value). ``Gini``: flatten, add 1e-7, sort ascending,
``G = sum_k (2k - n - 1) a_k / (n sum_k a_k)`` (k = 1..n); ``DI = (1 - G) * 100``. A single
spike gives ``G = (n - 1) / (n (1 + 1e-7 n))`` (DI just above 100 / n), a uniform map G = 0
(DI = 100). *Differs*: we compute G in float64 (the official code in float32: ~1e-6 relative).

Dataset mode (``cclnn lam --dataset``): one window per image, at the centre of the SR image:
``x = (sW - window) // 2, y = (sH - window) // 2``; DI is averaged over the images.

``radius99`` (ours, not in the paper): the smallest Chebyshev distance, in LR pixels, from the
window's centre (in LR coordinates) to LR pixel centres, within which 99 % of the mass of M lies.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..inference import tensor_to_image
from ..models.descriptor import describe
from ..resize import degrade, imresize, mod_crop
from . import AnalysisError, new_figure

SIGMA = 1.2
STEPS = 50
KERNEL_SIZE = 9
WINDOW = 16
KERNEL_EPS = 1e-5
GINI_EPS = 1e-7
BATCH = 10


def gaussian_kernel(size: int = KERNEL_SIZE, sigma: float = SIGMA) -> np.ndarray:
    """The official ``isotropic_gaussian_kernel(l, sigma)``: size x size, sums to 1."""
    if size % 2 != 1:
        raise ValueError(f"kernel size must be odd, got {size}")
    ax = np.arange(-size // 2 + 1.0, size // 2 + 1.0)
    xx, yy = np.meshgrid(ax, ax)
    kernel = np.exp(-(xx ** 2 + yy ** 2) / (2.0 * (sigma + KERNEL_EPS) ** 2))
    return kernel / np.sum(kernel)


def path_kernels(sigma: float = SIGMA, steps: int = STEPS,
                 size: int = KERNEL_SIZE) -> np.ndarray:
    """(steps + 1) x size x size: the kernels for ``linspace(sigma, 0, steps + 1)``."""
    return np.stack([gaussian_kernel(size, s) for s in np.linspace(sigma, 0.0, steps + 1)])


def filter_image(img: torch.Tensor, kernels: np.ndarray) -> torch.Tensor:
    """Correlate 1 x C x h x w ``img`` with each of K kernels (K x k x k), reflect-101 border
    (OpenCV's default); returns K x C x h x w in ``img``'s dtype."""
    k = kernels.shape[-1]
    pad = k // 2
    _, c, h, w = img.shape
    if h <= pad or w <= pad:
        raise AnalysisError(f"LR image {w}x{h} is too small for the {k}x{k} blur kernel")
    padded = F.pad(img, (pad, pad, pad, pad), mode="reflect")
    weight = torch.from_numpy(kernels).to(img.dtype)[:, None]  # K x 1 x k x k
    # channels as the batch, kernels as output channels: (C x 1 x H x W) * (K x 1 x k x k)
    out = F.conv2d(padded.transpose(0, 1), weight)  # C x K x h x w
    return out.transpose(0, 1).contiguous()


def window_gradient_magnitude(sr: torch.Tensor, x: int, y: int,
                              window: int = WINDOW) -> torch.Tensor:
    """The official ``attr_grad(sr, h=y, w=x, window, reduce='sum')`` (see module docstring)."""
    patch = sr[..., y: y + window + 1, x: x + window + 1]
    top_left = patch[..., :-1, :-1]
    down = top_left - patch[..., 1:, :-1]
    right = top_left - patch[..., :-1, 1:]
    squared = down * down + right * right
    positive = squared > 0
    safe = torch.where(positive, squared, torch.ones_like(squared))
    return torch.where(positive, torch.sqrt(safe), torch.zeros_like(squared)).sum()


def check_window(x: int, y: int, window: int, sr_width: int, sr_height: int) -> None:
    if window < 1:
        raise AnalysisError(f"--window must be positive, got {window}")
    if x < 0 or y < 0 or x + window > sr_width - 1 or y + window > sr_height - 1:
        raise AnalysisError(
            f"window {window}x{window} at (x={x}, y={y}) does not fit the {sr_width}x{sr_height} "
            f"SR image: need 0 <= x <= {sr_width - 1 - window} and 0 <= y <= "
            f"{sr_height - 1 - window} (the gradient-magnitude map is one pixel smaller)")


def centre_window(sr_width: int, sr_height: int, window: int = WINDOW) -> tuple[int, int]:
    """The dataset-mode window position: the centre of the SR image."""
    return (sr_width - window) // 2, (sr_height - window) // 2


def gini(values) -> float:
    """The official ``gini``: shift negatives to 0, add 1e-7, sorted-rank formula; float64."""
    a = np.asarray(values, dtype=np.float64).flatten()
    if a.size == 0:
        raise ValueError("gini of an empty array")
    if a.min() < 0:
        a = a - a.min()
    a = np.sort(a + GINI_EPS)
    n = a.size
    index = np.arange(1, n + 1, dtype=np.float64)
    return float(np.sum((2 * index - n - 1) * a) / (n * np.sum(a)))


def normalised_map(attribution: np.ndarray) -> np.ndarray:
    """The official ``grad_abs_norm``: |sum over channels| / its maximum (h x w)."""
    flat = np.abs(np.asarray(attribution, dtype=np.float64).sum(axis=0))
    peak = flat.max()
    if not peak > 0:
        raise AnalysisError("the attribution is zero everywhere: the window's gradient magnitude "
                            "does not depend on the input (a flat output?)")
    return flat / peak


def diffusion_index(attribution_map: np.ndarray) -> tuple[float, float]:
    """(DI, Gini) of a non-negative h x w map (normalised to max 1 first, as the official
    code scores ``grad_abs_norm``'s output). DI = (1 - Gini) * 100."""
    m = np.abs(np.asarray(attribution_map, dtype=np.float64))
    peak = m.max()
    if peak > 0:
        m = m / peak
    g = gini(m)
    return (1.0 - g) * 100.0, g


def mass_radius(attribution_map: np.ndarray, centre_xy: tuple[float, float],
                fraction: float = 0.99) -> float:
    """Smallest Chebyshev distance (pixels) from ``centre_xy`` to pixel centres within which
    ``fraction`` of the map's mass lies."""
    m = np.abs(np.asarray(attribution_map, dtype=np.float64))
    h, w = m.shape
    cy = np.abs(np.arange(h) + 0.5 - centre_xy[1])
    cx = np.abs(np.arange(w) + 0.5 - centre_xy[0])
    dist = np.maximum(cy[:, None], cx[None, :]).ravel()
    order = np.argsort(dist, kind="stable")
    cumulative = np.cumsum(m.ravel()[order])
    k = int(np.searchsorted(cumulative, fraction * cumulative[-1] * (1 - 1e-12)))
    return float(dist[order][min(k, dist.size - 1)])


@dataclass
class LamResult:
    attribution: np.ndarray  # 3 x h x w float64: mean_i grad_i * dgamma_i
    map: np.ndarray  # h x w float64 in [0, 1]: |sum_c attribution| / max
    di: float
    gini: float
    x: int
    y: int
    window: int
    scale: int
    sr: np.ndarray  # uint8 sh x sw x 3: the network's output on the LR image (last path step)
    radius99: float

    def as_dict(self) -> dict:
        return {"di": self.di, "gini": self.gini, "x": self.x, "y": self.y,
                "window": self.window, "scale": self.scale, "radius99": self.radius99,
                "lr_size": [int(self.map.shape[1]), int(self.map.shape[0])]}


class _FrozenParameters:
    """Switch off parameter gradients for the duration (restored afterwards)."""

    def __init__(self, model: torch.nn.Module):
        self.params = list(model.parameters())

    def __enter__(self):
        self.flags = [p.requires_grad for p in self.params]
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p, flag in zip(self.params, self.flags):
            p.requires_grad_(flag)


def local_attribution_map(model: torch.nn.Module, lr: np.ndarray, x: int, y: int,
                          window: int = WINDOW, *, scale: int | None = None,
                          sigma: float = SIGMA, steps: int = STEPS,
                          kernel_size: int = KERNEL_SIZE, batch: int = BATCH,
                          device: torch.device | str = "cpu", progress=None) -> LamResult:
    """LAM of ``model`` for the ``window`` x ``window`` SR window at top-left (x, y).

    ``lr``: uint8 h x w x 3 (or float in [0, 255]). ``scale`` defaults to the model's
    (its :class:`~cclnn.models.ModelInfo`). ``progress``: optional callable(n_steps_done) for
    progress reports.
    """
    info = describe(model)
    scale = scale or (info.scale if info else None)
    if not scale:
        raise ValueError("scale: not given, and the model was not built by cclnn (no ModelInfo)")
    lr_arr = np.asarray(lr)
    if lr_arr.ndim != 3 or lr_arr.shape[2] != 3:
        raise AnalysisError(f"expected an h x w x 3 LR image, got shape {lr_arr.shape}")
    h, w = lr_arr.shape[:2]
    check_window(x, y, window, w * scale, h * scale)
    if steps < 1 or batch < 1:
        raise AnalysisError("steps and batch must be positive")
    device = torch.device(device)
    image = torch.from_numpy(np.ascontiguousarray(lr_arr, dtype=np.float64)).permute(2, 0, 1)[None]
    kernels = path_kernels(sigma, steps, kernel_size)
    total = torch.zeros(3, h, w, dtype=torch.float64)
    sr_last = None
    model.eval()
    with _FrozenParameters(model):
        for start in range(0, steps, batch):
            stop = min(steps, start + batch)
            path = filter_image(image, kernels[start + 1: stop + 1]).float()
            derivative = filter_image(
                image, (kernels[start + 1: stop + 1] - kernels[start: stop]) * steps).float()
            inputs = path.to(device).requires_grad_(True)
            with torch.enable_grad():
                sr = model(inputs)
                if sr.shape[-2:] != (h * scale, w * scale):
                    raise AnalysisError(f"the network returned {tuple(sr.shape[-2:])} for a "
                                        f"{h}x{w} input at x{scale}")
                objective = window_gradient_magnitude(sr, x, y, window)
                (grad,) = torch.autograd.grad(objective, inputs)
            grad = grad.detach().float().cpu()
            grad = torch.where(torch.isnan(grad), torch.zeros_like(grad), grad)
            total += (grad * derivative).double().sum(dim=0)
            if stop == steps:
                sr_last = sr[-1:].detach().float().cpu()
            del sr, inputs, grad
            if progress is not None:
                progress(stop - start)
    attribution = (total / steps).numpy()
    norm_map = normalised_map(attribution)
    di, g = diffusion_index(norm_map)
    centre = ((x + window / 2) / scale, (y + window / 2) / scale)
    return LamResult(attribution, norm_map, di, g, x, y, window, scale,
                     tensor_to_image(sr_last), mass_radius(norm_map, centre))


def lr_from_hr(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(mod-cropped HR, its MATLAB-bicubic LR), both uint8."""
    hr = mod_crop(hr, scale)
    return hr, degrade(hr, scale)


# ----------------------------------------------------------------------------- picture

PANEL_W = 300  # pixels per panel
GAP = 16
TOP = 64  # suptitle
TITLE = 28  # panel titles
BOTTOM = 12
BOX_COLOUR = "#00a0ff"
ZOOM = 6  # zoomed panels show a ZOOM * window square around the window


def lam_figure_size(hr_shape: tuple[int, ...]) -> tuple[int, int]:
    """(width, height) in pixels of the LAM picture for an HR image of ``hr_shape``."""
    panel_h = _panel_height(hr_shape)
    return 4 * PANEL_W + 5 * GAP, TOP + TITLE + panel_h + BOTTOM


def _panel_height(hr_shape) -> int:
    h, w = hr_shape[:2]
    return int(min(max(round(PANEL_W * h / w), 150), 600))


def heat_colours(norm_map: np.ndarray) -> np.ndarray:
    """The official ``vis_saliency`` colours: seismic colour map of ``map * 0.5 + 0.5``
    (0 -> white, 1 -> dark red), h x w x 3 in [0, 1]."""
    import matplotlib
    cmap = matplotlib.colormaps["seismic"]
    return cmap(norm_map * 0.5 + 0.5)[..., :3]


def zoom_box(result: LamResult, hr_shape, factor: int = ZOOM) -> tuple[int, int, int, int]:
    """(x, y, w, h) in HR pixels: a ``factor * window`` square centred on the window, shifted
    to lie inside the image (and cut to it when the image is smaller)."""
    height, width = hr_shape[:2]
    side = factor * result.window
    w, h = min(side, width), min(side, height)
    cx, cy = result.x + result.window // 2, result.y + result.window // 2
    x0 = int(min(max(cx - w // 2, 0), width - w))
    y0 = int(min(max(cy - h // 2, 0), height - h))
    return x0, y0, w, h


def lam_figure(hr: np.ndarray, lr: np.ndarray, result: LamResult, title: str):
    """Four panels: HR with the window; the LAM map blended over the LR input (50 %, the
    official demo's "blend_abs_and_input"), whole image; the LAM map alone and the SR output,
    both zoomed on a ``ZOOM * window`` square around the window (dashed in panel 2)."""
    from matplotlib.patches import Rectangle
    width, height = lam_figure_size(hr.shape)
    fig = new_figure(width, height)
    panel_h = _panel_height(hr.shape)
    s = result.scale
    colours = heat_colours(result.map)
    colours_up = np.repeat(np.repeat(colours, s, axis=0), s, axis=1)  # nearest, as zoomin=s
    lr_up = np.clip(imresize(lr.astype(np.float64), s), 0, 255) / 255.0
    blend = 0.5 * colours_up + 0.5 * lr_up
    zx, zy, zw, zh = zoom_box(result, hr.shape)
    zoom = (slice(zy, zy + zh), slice(zx, zx + zw))
    full = (-0.5, hr.shape[1] - 0.5, hr.shape[0] - 0.5, -0.5)
    zoomed = (zx - 0.5, zx + zw - 0.5, zy + zh - 0.5, zy - 0.5)
    panels = [
        (hr, full, f"HR, window at (x={result.x}, y={result.y})"),
        (blend, full, "LAM over the LR input"),
        (colours_up[zoom], zoomed, "LAM (|attribution|, max = 1), zoom"),
        (result.sr[zoom], zoomed, f"SR output (x{s}), zoom"),
    ]
    for k, (img, extent, label) in enumerate(panels):
        left = GAP + k * (PANEL_W + GAP)
        ax = fig.add_axes([left / width, BOTTOM / height, PANEL_W / width, panel_h / height])
        ax.imshow(img, interpolation="nearest", extent=extent)
        ax.add_patch(Rectangle((result.x - 0.5, result.y - 0.5), result.window, result.window,
                               fill=False, edgecolor=BOX_COLOUR, linewidth=1.5))
        if k == 1 and (zw, zh) != (hr.shape[1], hr.shape[0]):
            ax.add_patch(Rectangle((zx - 0.5, zy - 0.5), zw, zh, fill=False, edgecolor="0.15",
                                   linewidth=1, linestyle="--"))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label, fontsize=10, pad=6)
    fig.text(0.5, 1 - 12 / height, title, ha="center", va="top", fontsize=12)
    fig.text(0.5, 1 - 36 / height,
             f"DI = {result.di:.2f}   (Gini {result.gini:.4f}; 99 % of the attribution within "
             f"{result.radius99:.1f} LR px of the window centre)",
             ha="center", va="top", fontsize=10)
    return fig


__all__ = ["BATCH", "KERNEL_SIZE", "LamResult", "SIGMA", "STEPS", "WINDOW", "centre_window",
           "diffusion_index", "gaussian_kernel", "gini", "lam_figure", "local_attribution_map",
           "lr_from_hr", "mass_radius", "zoom_box", "normalised_map", "path_kernels",
           "window_gradient_magnitude"]
