"""The network registry: every network of the paper, built by name from a typed config.

A network family registers one or more names with :func:`register`, each with its own
default config (a frozen dataclass). :func:`build_model` applies keyword overrides through
the validating :func:`cclnn.config.make_config`, so ``build_model("cclnn", 2, chanels=64)``
fails with "unknown key 'chanels' (did you mean 'channels'?)" instead of being ignored.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..config import ConfigError, make_config, suggest
from .descriptor import attach, make_info

from ..data.layout import SCALES


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[[Any, int], nn.Module]  # (config, scale) -> module
    defaults: Any  # a config dataclass instance
    summary: str
    key_renames: tuple[tuple[str, str], ...] = ()  # regex renames for official checkpoints
    published: str = ""  # the size its paper gives, for `cclnn models` (where there is one)
    max_tile: int | None = None  # LR tile side whole images are run in by default (RNAN)


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, defaults: Any, summary: str,
             key_renames: tuple[tuple[str, str], ...] = (), published: str = "",
             max_tile: int | None = None):
    """Class/function decorator: ``@register("edsr", EDSRConfig(...), "...")``.

    The decorated callable is called as ``build(config, scale)``. ``max_tile``: see
    :class:`~cclnn.models.descriptor.ModelInfo`.
    """
    def decorator(build):
        if name in _REGISTRY:
            raise RuntimeError(f"model name registered twice: {name}")
        _REGISTRY[name] = ModelEntry(name, build, defaults, summary, key_renames,
                                     published, max_tile)
        return build
    return decorator


def get_entry(name: str) -> ModelEntry:
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ConfigError(f"unknown model '{name}'{suggest(name, _REGISTRY)}; "
                          f"known models: {', '.join(list_models())}")
    return entry


def list_models() -> list[str]:
    """Names of all registered networks, in registration order."""
    return list(_REGISTRY)


def model_config(name: str, **overrides) -> Any:
    """The validated config ``name`` would be built with."""
    entry = get_entry(name)
    return make_config(type(entry.defaults), overrides, base=entry.defaults)


def build_model(name: str, scale: int, **overrides) -> nn.Module:
    """Build network ``name`` for upscaling factor ``scale`` (2, 3 or 4).

    ``overrides`` replace fields of the network's default config (see ``cclnn models``
    and :func:`model_config`). Randomly initialised, in training mode; the module's facts
    are its :class:`~cclnn.models.descriptor.ModelInfo` (``model.info``, read with
    :func:`~cclnn.models.descriptor.describe`). Ready trained networks:
    :func:`cclnn.create_model`.
    """
    if scale not in SCALES:
        raise ConfigError(f"scale must be one of {SCALES}, got {scale!r}")
    entry = get_entry(name)
    config = model_config(name, **overrides)
    model = entry.build(config, scale)
    return attach(model, make_info(model, name, scale, config, entry.max_tile))


def count_parameters(name: str, scale: int, **overrides) -> int:
    """All parameters (frozen MeanShift ones included), counted without allocating memory."""
    with torch.device("meta"):
        model = build_model(name, scale, **overrides)
    return sum(p.numel() for p in model.parameters())


def describe_config(config: Any) -> str:
    return ", ".join(f"{f.name}={getattr(config, f.name)!r}" for f in dataclasses.fields(config))
