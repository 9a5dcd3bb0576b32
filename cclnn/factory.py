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
from .config import ConfigError
from .data.layout import SCALES
from .detect import describe_state, detect_origin
from .manifest import find_pretrained, how_to_get, pretrained_path
from .models.registry import build_model, model_config
from .weights import (WeightsError, list_shipped_weights, load_state, read_weights,
                      shipped_weights)

SHIPPED = "shipped"  # ``weights=SHIPPED``: the weights that ship inside the package
PRETRAINED = "pretrained"  # ``weights=PRETRAINED``: the manifest's file, fetched on first use

Weights = Union[None, str, os.PathLike]


class NoShippedWeights(WeightsError):
    """``weights="shipped"`` for a network and scale that no weights ship for."""

    def __init__(self, name: str, scale: int):
        self.name, self.scale = name, scale
        shipped = "; ".join(f"{n} " + ", ".join(f"x{s}" for s in scales)
                            for n, scales in list_shipped_weights().items())
        self.how_to_get = how_to_get(name, scale)
        super().__init__(f"no weights ship with cclnn for '{name}' at x{scale} "
                         f"(shipped: {shipped or 'none'}); {self.how_to_get}")


def weights_path(name: str | None, scale: int | None, weights: Union[str, os.PathLike]) -> Path:
    """The file ``weights`` means for ``name`` at ``scale``: the shipped one for the string
    ``"shipped"``, the manifest's (fetched and checked) for ``"pretrained"``, else the path
    with ``{scale}`` replaced."""
    if scale is None and (weights in (SHIPPED, PRETRAINED) or "{scale}" in os.fspath(weights)):
        raise ConfigError(f"scale: needed to choose the weights file of '{weights}'")
    if isinstance(weights, str) and weights == PRETRAINED:
        if name is None:
            raise WeightsError("the pretrained weights need a network name")
        return pretrained_path(name, scale)
    if isinstance(weights, str) and weights == SHIPPED:
        if name is None:
            raise WeightsError("the shipped weights need a network name")
        path = shipped_weights(name, scale)
        if path is None:
            raise NoShippedWeights(name, scale)
        return path
    return Path(os.fspath(weights).replace("{scale}", str(scale)))


class WrongNetwork(WeightsError):
    """The weights file records another network or scale than the one asked for."""

    def __init__(self, path: Path, field: str, recorded: str, asked: str):
        self.path, self.field, self.recorded, self.asked = path, field, recorded, asked
        super().__init__(f"{path}: the weights are for {recorded}, not {asked}")


class UnnamedNetwork(WeightsError):
    """No network name was given and the weights file does not record one."""


def create_model(name: str | None, scale: int | None, weights: Weights = None,
                 device: Union[str, torch.device] = "cpu", **options) -> nn.Module:
    """Network ``name`` for upscaling factor ``scale``, ready to run: in eval mode on ``device``.

    ``weights``: ``None`` for a random initialisation (as :func:`cclnn.build_model`),
    ``"shipped"`` for the weights that ship with cclnn (a :class:`NoShippedWeights` error
    naming those that do, and the pretrained ones, if there are none), ``"pretrained"`` for
    the file :mod:`cclnn.manifest` lists for ``name`` at ``scale`` (fetched into the cache on
    first use, checked against its hash, built with its options), or a file (``{scale}`` in
    its name is replaced)
    read by the safe loader :func:`cclnn.load_weights` (strict: every key must fit).
    A file that records its network (saved by cclnn) is built as recorded: its options are
    the base that ``options`` override, ``name`` may be ``None``, and a ``name`` or ``scale``
    it contradicts is a :class:`WrongNetwork` error. A file without a record (an official
    checkpoint) that does not fit ``name`` as asked is built as what its tensors' names and
    shapes are (:func:`cclnn.detect.detect`: network, options and, where ``scale`` is ``None``,
    the scale); a ``name`` or ``scale`` that contradicts that is a :class:`WrongNetwork` error.
    ``device``: a ``torch.device`` or a name (``"auto"`` picks CUDA when available); the
    weights are loaded on the CPU first. ``options`` override fields of the network's config,
    as for :func:`cclnn.build_model`. The network's facts: :func:`cclnn.models.describe`.
    """
    if weights is None:
        if name is None:
            raise WeightsError("create_model: a network name or a weights file is needed")
        model = build_model(name, scale, **options)
    else:
        if scale is not None and scale not in SCALES:  # checked before any file is read
            raise ConfigError(f"scale must be one of {SCALES}, got {scale!r}")
        if isinstance(weights, str) and weights == PRETRAINED and name is not None:
            options = {**find_pretrained(name, scale).options, **options}
        if name is not None:
            model_config(name, **options)
        path = weights_path(name, scale, weights)
        state, origin = read_weights(path)
        if origin is None:
            origin = detect_origin(state, path, name, scale, options)
        if origin is not None:
            if name is not None and name != origin.name:
                raise WrongNetwork(path, "model", f"model '{origin.name}'", f"'{name}'")
            if scale is not None and scale != origin.scale:
                raise WrongNetwork(path, "scale", f"x{origin.scale}", f"x{scale}")
            name, scale, options = origin.name, origin.scale, {**origin.options, **options}
        elif name is None:
            raise UnnamedNetwork(f"{path}: the file does not record which network it holds, "
                                 f"and no registry network fits it ({describe_state(state)})")
        model = load_state(build_model(name, scale, **options), state, path)
    if isinstance(device, str):
        device = resolve_device(device)
    return model.to(device).eval()


__all__ = ["PRETRAINED", "SHIPPED", "NoShippedWeights", "UnnamedNetwork", "WrongNetwork",
           "create_model", "weights_path"]
