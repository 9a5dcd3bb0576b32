"""Loading and saving network weights, safely.

Never unpickles arbitrary objects: ``.safetensors`` files are read with safetensors, anything
else with ``torch.load(weights_only=True)``, which refuses pickles that would run code.
Accepted layouts: a plain state dict (EDSR-PyTorch and the official codes of these networks),
our own checkpoints (``{"model": state_dict, ...}``), and BasicSR/KAIR-style wrappers
(``params``, ``params_ema``, ``state_dict``); a ``module.`` prefix (DataParallel/DDP) is
stripped. Official key names are mapped to ours with each network's rename table.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .atomic import write_bytes_atomic
from .errors import CclnnError
from .models.descriptor import describe, update_value_range
from .models.registry import get_entry


class WeightsError(CclnnError, ValueError):
    """The weights file cannot be read, or does not fit the network."""


PRETRAINED = Path(__file__).resolve().parent / "pretrained"


def shipped_weights(name: str, scale: int) -> Path | None:
    """Weights that ship inside the package for ``name`` at ``scale``, if any."""
    path = PRETRAINED / f"{name}_x{scale}.safetensors"
    return path if path.is_file() else None


def list_shipped_weights() -> dict[str, list[int]]:
    """The networks weights ship for inside the package, each with its scales."""
    found: dict[str, list[int]] = {}
    for path in sorted(PRETRAINED.glob("*_x*.safetensors")):
        name, _, scale = path.stem.rpartition("_x")
        if scale.isdigit():
            found.setdefault(name, []).append(int(scale))
    return {name: sorted(scales) for name, scales in found.items()}


WRAPPER_KEYS = ("model", "params_ema", "params", "state_dict", "model_state_dict")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as exc:  # corrupt header etc.
            raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path}: refused to load: the file holds Python objects other "
                           f"than tensors, which could run code ({first})") from None
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({exc})") from None
    return unwrap_state_dict(data, path)


def unwrap_state_dict(data, path: str | os.PathLike = "<memory>") -> dict[str, torch.Tensor]:
    for _ in range(2):  # e.g. {"model": {"params": ...}} at most two levels deep
        if isinstance(data, Mapping) and not _is_state_dict(data):
            for key in WRAPPER_KEYS:
                if key in data and isinstance(data[key], Mapping):
                    data = data[key]
                    break
            else:
                break
    if not isinstance(data, Mapping) or not _is_state_dict(data):
        raise WeightsError(f"{path}: no state dict of tensors found")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in data.items()}


def _is_state_dict(data: Mapping) -> bool:
    return bool(data) and all(isinstance(v, torch.Tensor) for v in data.values())


def rename_keys(state: Mapping[str, torch.Tensor], own_keys, renames) -> dict[str, torch.Tensor]:
    """Apply the network's official-to-ours renames to keys the network does not have."""
    out = {}
    for key, value in state.items():
        if key not in own_keys:
            for pattern, replacement in renames:
                key = re.sub(pattern, replacement, key)
        out[key] = value
    return out


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load ``path`` into ``model`` (built by :func:`cclnn.build_model`); returns ``model``.

    With ``strict`` (the default) every key of the file must be used and every parameter and
    buffer of the model provided; otherwise a :class:`WeightsError` lists the offenders.
    The model's :class:`~cclnn.models.ModelInfo` follows the value range the file holds.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    info = describe(model)
    renames = get_entry(info.name).key_renames if info else ()
    state = rename_keys(state, own, renames)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    problems = []
    if strict and missing:
        problems.append(f"missing keys: {_short(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys: {_short(unexpected)}")
    shapes = [f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
              for k in sorted(set(state) & set(own)) if state[k].shape != own[k].shape]
    if shapes:
        problems.append(f"shape mismatch: {_short(shapes)}")
    if problems:
        label = f" for model '{info.name}' x{info.scale}" if info else ""
        raise WeightsError(f"{path}: weights do not fit{label}: " + "; ".join(problems))
    # through load_state_dict, so that modules which read what they load see it (MeanShift
    # takes its value range from its bias); the keys were checked above
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    update_value_range(model)
    return model


def load_matching_weights(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Load every tensor of ``path`` whose name and shape match ``model`` (e.g. x2 weights
    into an x3 network, as EDSR does: all but the upsampler); returns the keys left as they
    were. Fails if nothing matches."""
    state = read_state_dict(path)
    own = model.state_dict()
    info = describe(model)
    state = rename_keys(state, own, get_entry(info.name).key_renames if info else ())
    loaded = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    if not loaded:
        raise WeightsError(f"{path}: no tensor fits the model")
    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    update_value_range(model)
    return sorted(set(own) - set(loaded))


def _short(items: list[str], limit: int = 8) -> str:
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def save_weights(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write the model's state dict as safetensors, atomically (temp file + rename).

    The bytes are written with ``open`` (safetensors' own ``save_file`` creates files
    readable by their owner only, whatever the umask)."""
    from safetensors.torch import save
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    write_bytes_atomic(path, save(state, metadata={k: str(v) for k, v in (metadata or {}).items()}))

