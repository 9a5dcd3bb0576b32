"""What a built network is: :class:`ModelInfo`, one typed descriptor per module.

:func:`~cclnn.models.registry.build_model` attaches it as the single attribute ``model.info``;
every reader (weights loading, inference, the trainer, the commands) asks :func:`describe`,
which returns ``None`` for a module the registry did not build (a user's own network).

Why an attribute and not a registry-side table keyed by module: the facts travel with the
module wherever it goes. ``copy.deepcopy`` (the trainer's EMA copy), pickling and ``.to()``
keep them; a side table (even a ``WeakKeyDictionary``) would silently lose them on every copy.
Why one frozen object and not loose attributes (``name``, ``scale``, ``config``, ``max_tile``
as before): one place to read, typed, and nothing can change one fact without the others.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from torch import nn

from .common import value_range

INFO_ATTRIBUTE = "info"


@dataclass(frozen=True)
class ModelInfo:
    """The facts of one built network.

    ``config``: the validated config dataclass it was built from (its options).
    ``value_range``: the range its weights work in, 255 or 1 (EDSR-PyTorch's ``rgb_range``,
    held by its mean shifts); ``None`` for a network without mean shifts (SRCNN, VDSR, A2N
    take [0, 255] directly). Loading weights can change it (a checkpoint's mean-shift biases
    record its range): :func:`cclnn.weights.load_weights` updates the descriptor.
    ``max_tile``: the largest LR tile side whole images are run in by default (RNAN: 128;
    ``None``: no limit). ``has_aux_loss``: the network accepts ``return_aux=True`` and has
    ``auxiliary_loss(weights)`` (every CCLNN variant, also those whose loss is zero).
    """
    name: str
    scale: int
    config: Any
    value_range: Optional[float]
    max_tile: Optional[int]
    has_aux_loss: bool


def mean_shift_range(model: nn.Module) -> Optional[float]:
    """The value range of ``model``'s mean shifts, ``None`` if it has none."""
    return value_range(model, default=None)


def make_info(model: nn.Module, name: str, scale: int, config: Any,
              max_tile: Optional[int]) -> ModelInfo:
    """The descriptor of ``model`` as just built (the value range from its mean shifts, the
    auxiliary-loss flag from its class)."""
    return ModelInfo(name=name, scale=scale, config=config,
                     value_range=mean_shift_range(model), max_tile=max_tile,
                     has_aux_loss=callable(getattr(type(model), "auxiliary_loss", None)))


def attach(model: nn.Module, info: ModelInfo) -> nn.Module:
    setattr(model, INFO_ATTRIBUTE, info)
    return model


def describe(model: nn.Module) -> Optional[ModelInfo]:
    """The descriptor of a network built by :func:`cclnn.build_model` /
    :func:`cclnn.create_model`; ``None`` for any other module."""
    info = getattr(model, INFO_ATTRIBUTE, None)
    return info if isinstance(info, ModelInfo) else None


def update_value_range(model: nn.Module) -> None:
    """After loading weights: the descriptor's value range as the mean shifts now hold it."""
    info = describe(model)
    if info is not None and info.value_range != (found := mean_shift_range(model)):
        attach(model, dataclasses.replace(info, value_range=found))
