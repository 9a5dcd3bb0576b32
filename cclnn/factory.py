"""One way from a network's name to a ready network: :func:`create_model`.

Every command and analysis tool builds its network here (``cclnn test``, ``demo``,
``upscale``, ``lam``, ``compare``, and :func:`cclnn.upscale`); training and the experiment
runner build untrained networks with :func:`cclnn.build_model`, the no-weights form.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch
from torch import nn

from .inference import resolve_device
from .models.registry import build_model
from .weights import WeightsError, list_shipped_weights, load_weights, shipped_weights

SHIPPED = "shipped"  # ``weights=SHIPPED``: the weights that ship inside the package

Weights = Union[None, str, os.PathLike]


class NoShippedWeights(WeightsError):
    """``weights="shipped"`` for a network and scale that no weights ship for."""

    def __init__(self, name: str, scale: int):
        self.name, self.scale = name, scale
        shipped = "; ".join(f"{n} " + ", ".join(f"x{s}" for s in scales)
                            for n, scales in list_shipped_weights().items())
        super().__init__(f"no weights ship with cclnn for '{name}' at x{scale} "
                         f"(shipped: {shipped or 'none'})")


def weights_path(name: str, scale: int, weights: Union[str, os.PathLike]) -> Path:
    """The file ``weights`` means for ``name`` at ``scale``: the shipped one for the string
    ``"shipped"``, else the path with ``{scale}`` replaced."""
    if isinstance(weights, str) and weights == SHIPPED:
        path = shipped_weights(name, scale)
        if path is None:
            raise NoShippedWeights(name, scale)
        return path
    return Path(os.fspath(weights).replace("{scale}", str(scale)))


def create_model(name: str, scale: int, weights: Weights = None,
                 device: Union[str, torch.device] = "cpu", **options) -> nn.Module:
    """Network ``name`` for upscaling factor ``scale``, ready to run: in eval mode on ``device``.

    ``weights``: ``None`` for a random initialisation (as :func:`cclnn.build_model`),
    ``"shipped"`` for the weights that ship with cclnn (a :class:`NoShippedWeights` error
    naming those that do if there are none), or a file (``{scale}`` in its name is replaced)
    read by the safe loader :func:`cclnn.load_weights` (strict: every key must fit).
    ``device``: a ``torch.device`` or a name (``"auto"`` picks CUDA when available); the
    weights are loaded on the CPU first. ``options`` override fields of the network's config,
    as for :func:`cclnn.build_model`. The network's facts: :func:`cclnn.models.describe`.
    """
    model = build_model(name, scale, **options)
    if weights is not None:
        load_weights(model, weights_path(name, scale, weights))
    if isinstance(device, str):
        device = resolve_device(device)
    return model.to(device).eval()


__all__ = ["SHIPPED", "NoShippedWeights", "create_model", "weights_path"]
