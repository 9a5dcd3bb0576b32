"""A network as one ONNX or TorchScript file, checked against PyTorch before it is published.

The exported model keeps the network's interface: N x 3 x h x w float RGB in [0, 255] in,
N x 3 x sh x sw out, with N, h and w free. It is traced from an *export copy* of the network
that computes the same function with shape-generic tensor programs where the eval path is
not one (the source network is left as it is):

* NLSA (NLSN, CCLNN): the fused kernels are replaced by the official tensor program written
  with tensor arithmetic on the input's shape (bucket count, chunking, padding), a sort by the
  unique key ``bucket * L + position`` (ONNX TopK, so stable), and the eval rotations, drawn
  from the same seeded generator for every bucket count a size can have, as one constant.
* RNAN's non-local blocks: the dense program (one HW x HW score matrix) instead of the loop
  over key chunks, whose count depends on the size.
* SRCNN and VDSR: their MATLAB-exact bicubic computes its weight tables in Python for the
  traced size, so ONNX is refused; TorchScript traces them for that one size.

Every export is run (onnxruntime, ``torch.jit.load``) on a test image and on a second size,
and written only when both match PyTorch within ``TOLERANCE`` on [0, 255].
"""
from __future__ import annotations

import copy
import importlib.util
import io
import math
import os
import warnings
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .atomic import atomic_path
from .errors import CclnnError
from .models.network_rnan import NonLocalBlock
from .models.network_srcnn import LuminanceNet
from .models.nlsa import KEY_NORM_EPS, MAX_BUCKETS, NonLocalSparseAttention

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-3  # max abs difference on [0, 255] an export may have from PyTorch
OPSET = 17


class ExportError(CclnnError):
    """A network that cannot be exported in the asked format, or an export that does not
    match PyTorch; the message names the file or network."""


@dataclass(frozen=True)
class ExportCheck:
    """What the check of one export found: the sizes run and the largest difference."""
    sizes: tuple[tuple[int, int], ...]
    max_difference: float
    any_size: bool  # False: a TorchScript trace that holds for its traced size only


def onnx_refusal(model: nn.Module) -> str | None:
    """Why ``model`` cannot go to ONNX with a free image size (None: it can)."""
    if any(isinstance(m, LuminanceNet) for m in model.modules()):
        return ("its MATLAB-exact bicubic upsampling computes its weight tables in Python for "
                "one image size, which ONNX cannot hold with h and w free")
    return None


class _ExportNLSA(nn.Module):
    """Eval-mode NLSA as a shape-generic tensor program (see the module docstring): the same
    function as :class:`NonLocalSparseAttention` in eval mode, for any input size."""

    def __init__(self, nlsa: NonLocalSparseAttention):
        super().__init__()
        self.conv_match, self.conv_assembly = nlsa.conv_match, nlsa.conv_assembly
        self.chunk_size, self.res_scale = nlsa.chunk_size, nlsa.res_scale
        match, rounds = nlsa.channels // nlsa.reduction, nlsa.n_hashes
        half_max = MAX_BUCKETS // 2
        # table[k]: the rotations of a size with 2 (k + 1) buckets, zero beyond column k
        table = torch.zeros(half_max, match, rounds, half_max)
        for half in range(1, half_max + 1):
            generator = torch.Generator().manual_seed(nlsa.eval_seed)
            table[half - 1, :, :, :half] = torch.randn((match, rounds, half), generator=generator)
        self.register_buffer("rotations", table)

    def _order(self, query: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """[N, R, L] positions sorted by bucket, ties in raster order."""
        chunks = torch.div(length, self.chunk_size, rounding_mode="floor")
        half = torch.clamp(chunks + chunks % 2, 2, MAX_BUCKETS) // 2
        rotations = self.rotations.index_select(0, (half - 1).reshape(1))[0]
        projected = torch.einsum("nlc,crb->nrlb", query, rotations)
        used = torch.arange(rotations.shape[-1], device=query.device) < half
        low = torch.tensor(float("-inf"), dtype=projected.dtype)
        codes = torch.cat([torch.where(used, projected, low), torch.where(used, -projected, low)],
                          dim=-1).argmax(dim=-1)  # padded bucket ids keep the buckets' order
        position = torch.arange(query.shape[1], device=query.device)
        keys = codes * length + position
        return torch.topk(keys, query.shape[1], dim=-1, largest=False, sorted=True).indices

    def _attention(self, query: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """The official chunked program, [N, L, Cq] and [N, L, C] -> [N, L, C]."""
        n, length, channels = value.shape
        shape = torch._shape_as_tensor(query)
        length_t = shape[1]
        chunk = torch.clamp(length_t, max=self.chunk_size)
        n_chunks = torch.div(length_t + chunk - 1, chunk, rounding_mode="floor")
        padding = n_chunks * chunk - length_t
        keys = F.normalize(query, p=2, dim=-1, eps=KEY_NORM_EPS)
        outs, scores_lse = [], []
        order = self._order(query, length_t)
        for r in range(order.shape[1]):
            own = order[:, r]
            padded = torch.cat([own, own[:, length_t - padding:]], dim=1)

            def chunked(t: torch.Tensor) -> torch.Tensor:
                index = padded.unsqueeze(-1).expand(-1, -1, t.shape[-1])
                return t.gather(1, index).reshape(n, n_chunks, chunk, t.shape[-1])

            def with_neighbours(t: torch.Tensor) -> torch.Tensor:
                previous = torch.cat([t[:, -1:], t[:, :-1]], dim=1)
                following = torch.cat([t[:, 1:], t[:, :1]], dim=1)
                return torch.cat([t, previous, following], dim=2)

            scores = chunked(query) @ with_neighbours(chunked(keys)).transpose(-1, -2)
            lse = scores.logsumexp(dim=-1, keepdim=True)
            out = torch.exp(scores - lse) @ with_neighbours(chunked(value))
            out = out.reshape(n, -1, channels)[:, :length_t]
            lse = lse.reshape(n, -1, 1)[:, :length_t]
            undo = own.unsqueeze(-1)
            outs.append(torch.zeros_like(value).scatter(1, undo.expand(-1, -1, channels), out))
            scores_lse.append(torch.zeros_like(lse).scatter(1, undo, lse))
        weights = torch.softmax(torch.stack(scores_lse, 0), dim=0)
        return (torch.stack(outs, 0) * weights).sum(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = self.conv_match(x).flatten(2).transpose(1, 2)
        value = self.conv_assembly(x).flatten(2).transpose(1, 2)
        attended = self._attention(query, value)
        return x + self.res_scale * attended.transpose(1, 2).reshape(x.shape)


class _DenseNonLocal(nn.Module):
    """RNAN's non-local block through its dense program (one matrix, any size)."""

    def __init__(self, block: NonLocalBlock):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block.dense_forward(x)


def export_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode, CPU, float32) whose every part traces shape-generically."""
    copied = copy.deepcopy(model).float().cpu().eval()
    for parent in list(copied.modules()):
        for name, child in parent.named_children():
            if isinstance(child, NonLocalSparseAttention):
                setattr(parent, name, _ExportNLSA(child))
            elif isinstance(child, NonLocalBlock):
                setattr(parent, name, _DenseNonLocal(child))
    return copied


def check_images(size: tuple[int, int]) -> list[torch.Tensor]:
    """The inputs an export is checked on: Set5's butterfly at ``size`` (h, w; mirrored where
    the image is smaller) and a batch of two at a second size, so that an export fixed to one
    size or batch fails its check instead of shipping."""
    from .assets import set5_hr
    from .data.images import read_image
    image = read_image(set5_hr("butterfly"))
    height, width = size
    second = (max(2, height * 3 // 4 + 1), max(2, width * 5 // 4 + 1))
    out = []
    for (h, w), batch in ((size, 1), (second, 2)):
        reps = (math.ceil(h / image.shape[0]), math.ceil(w / image.shape[1]))
        tiled = np.pad(image, ((0, image.shape[0] * (reps[0] - 1)),
                               (0, image.shape[1] * (reps[1] - 1)), (0, 0)), mode="symmetric")
        crops = [tiled[i * 7:i * 7 + h, i * 5:i * 5 + w] for i in range(batch)]
        crops = [np.pad(c, ((0, h - c.shape[0]), (0, w - c.shape[1]), (0, 0)), mode="edge")
                 for c in crops]
        out.append(torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().contiguous())
    return out


def _quietly(action):
    """``action()`` with the tracer's warnings and the exporter's prints kept off the user's
    terminal (an export that fails says why in one line)."""
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()), \
            redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return action()


def _onnx_runner(model: nn.Module, sample: torch.Tensor, path: Path):
    """Write ``model`` as ONNX to ``path``; return a function running the file (onnxruntime)."""
    try:
        if importlib.util.find_spec("onnx") is None:  # torch's exporter imports it itself
            raise ImportError("onnx")
        import onnxruntime
    except ImportError:
        raise ExportError("--format onnx needs the onnx and onnxruntime packages "
                          "(pip install 'cclnn[export]')") from None
    axes = {"lr": {0: "batch", 2: "height", 3: "width"},
            "sr": {0: "batch", 2: "out_height", 3: "out_width"}}
    _quietly(lambda: torch.onnx.export(model, (sample,), str(path), dynamo=False,
                                       opset_version=OPSET, input_names=["lr"],
                                       output_names=["sr"], dynamic_axes=axes))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"lr": x.numpy()})[0])


def _torchscript_runner(model: nn.Module, sample: torch.Tensor, path: Path):
    """Write ``model`` traced as TorchScript to ``path``; return the file loaded again."""
    traced = _quietly(lambda: torch.jit.trace(model, sample, check_trace=False))
    _quietly(lambda: torch.jit.save(traced, str(path)))
    return _quietly(lambda: torch.jit.load(str(path)))


def _difference(run, model: nn.Module, x: torch.Tensor) -> float:
    """Max abs difference of ``run(x)`` to ``model(x)``; inf when ``run`` fails or its output
    has another shape (a trace fixed to another size)."""
    expected = model(x)
    try:
        got = _quietly(lambda: run(x))
    except Exception:  # an exported program refusing a size: the check reports it
        return math.inf
    if tuple(got.shape) != tuple(expected.shape):
        return math.inf
    return float((got.float() - expected).abs().max())


@torch.no_grad()
def export_network(model: nn.Module, path: str | os.PathLike, fmt: str, label: str,
                   size: tuple[int, int] = (48, 40)) -> ExportCheck:
    """``model`` exported as ``fmt`` ("onnx" or "torchscript") to ``path``, written (atomically,
    replacing it) only after the exported file, run on :func:`check_images` of ``size``,
    matched PyTorch within :data:`TOLERANCE`. ``label`` names the network in errors."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    reason = onnx_refusal(model) if fmt == "onnx" else None
    if reason:
        raise ExportError(f"{label} cannot be exported to ONNX: {reason}; use --format "
                          f"torchscript (traced for the --size it is exported at)")
    model = model.float().cpu().eval()
    traceable = export_copy(model)
    images = check_images(size)
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = _onnx_runner if fmt == "onnx" else _torchscript_runner
        try:
            run = writer(traceable, images[0], tmp)
        except ExportError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"{label}: the {fmt} exporter failed ({first})") from None
        first, second = (_difference(run, model, x) for x in images)
        if first > TOLERANCE:
            raise ExportError(f"{path}: not written: the {fmt} export of {label} differs from "
                              f"PyTorch by {first:.3g} (over {TOLERANCE:g} on [0, 255])")
        any_size = second <= TOLERANCE
        if not any_size and fmt == "onnx":
            raise ExportError(f"{path}: not written: the ONNX export of {label} does not hold "
                              f"for other sizes (difference {second:.3g} at "
                              f"{tuple(images[1].shape[2:])})")
    sizes = tuple(tuple(x.shape[2:]) for x in (images if any_size else images[:1]))
    return ExportCheck(sizes=sizes, max_difference=max(first, second if any_size else 0.0),
                       any_size=any_size)
