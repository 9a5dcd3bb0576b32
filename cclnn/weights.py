"""Loading and saving network weights, safely.

Never unpickles arbitrary objects: a file is told by its first bytes (never its name);
safetensors files are read with safetensors, PyTorch files with
``torch.load(weights_only=True)``, which refuses pickles that would run code, after their zip
directory shows they do not inflate far beyond their size. Every tensor must be finite
floating point (integer or NaN weights would run and give a black image).
Accepted layouts: a plain state dict (EDSR-PyTorch and the official codes of these networks),
our own checkpoints (``{"model": state_dict, ...}``), and BasicSR/KAIR-style wrappers
(``params``, ``params_ema``, ``state_dict``); a ``module.`` prefix (DataParallel/DDP) is
stripped. Official key names are mapped to ours with each network's rename table.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .atomic import write_bytes_atomic
from .config import config_to_dict
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
METADATA_KEY = "cclnn"  # the safetensors metadata entry holding the network's JSON record
FLOAT_TYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# torch writes its zip members uncompressed, so a file whose members expand far beyond its own
# size is not a torch file but a decompression bomb (refused before torch.load inflates it)
MAX_EXPANSION, EXPANSION_SLACK = 8, 1 << 20
MAX_HEADER = 100 << 20  # safetensors' own limit on its JSON header


@dataclass(frozen=True)
class WeightsOrigin:
    """The network a weights file was saved from, as the file records it."""
    name: str
    scale: int
    options: dict[str, Any]


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], WeightsOrigin | None]:
    """The tensors of ``path`` (format from its first bytes, never its name) and the network
    it records (``None`` for files without a cclnn record: official files, older cclnn files).
    Every tensor is checked to be finite floating point before anything runs on it."""
    path = Path(path)
    kind = _file_format(path)
    if kind == "safetensors":
        from safetensors.torch import load_file
        origin = _origin_from_header(path)
        try:
            state = load_file(str(path))
        except Exception as exc:  # corrupt header etc.
            raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    else:
        if kind == "zip":
            _check_zip(path)
        data = _torch_load(path)
        state, origin = unwrap_state_dict(data, path), _origin_from_checkpoint(data, path)
    _check_values(state, path)
    return state, origin


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    return read_weights(path)[0]


def read_origin(path: str | os.PathLike, detect: bool = True) -> WeightsOrigin | None:
    """The network ``path`` records (a safetensors file: from its header alone); for a file
    without a record (an official checkpoint), with ``detect``, the registry network its
    tensors' names and shapes fit (:func:`cclnn.detect.detect`), ``None`` if none does."""
    path = Path(path)
    if _file_format(path) == "safetensors":
        origin = _origin_from_header(path)
        if origin is not None or not detect:
            return origin
    state, origin = read_weights(path)
    if origin is None and detect:
        from .detect import detect  # it builds on this module
        found = detect(state, path)
        origin = None if found is None else found.origin()
    return origin


def _file_format(path: Path) -> str:
    """"safetensors", "zip" (torch.save) or "pickle" (legacy torch.save), by magic bytes."""
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    size = path.stat().st_size
    with open(path, "rb") as file:
        head = file.read(9)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x80"):
        return "pickle"
    if len(head) == 9 and head[8:] == b"{":
        length = int.from_bytes(head[:8], "little")
        if length > size - 8 or length > MAX_HEADER:
            raise WeightsError(f"{path}: safetensors header claims {length} bytes in a file of "
                               f"{size} bytes; the file is damaged or not weights")
        return "safetensors"
    what = "an empty file" if not head else f"starts with {head[:8]!r}"
    raise WeightsError(f"{path}: not a weights file ({what}; expected safetensors or a "
                       "PyTorch .pt/.pth file)")


def _check_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            expanded = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({exc})") from None
    size = path.stat().st_size
    if expanded > MAX_EXPANSION * size + EXPANSION_SLACK:
        raise WeightsError(f"{path}: refused: its zip members expand to {expanded} bytes from "
                           f"{size} on disk (over {MAX_EXPANSION}x); not a PyTorch weights file")


def _torch_load(path: Path):
    try:  # from an open file: torch.load would pick its reader by the name's suffix
        with open(path, "rb") as file:
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path}: refused to load: the file holds Python objects other "
                           f"than tensors, which could run code ({first})") from None
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({exc})") from None


def _check_values(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Integer or non-finite tensors would load and give a black or grey image; refuse them."""
    for key, value in state.items():
        if value.dtype not in FLOAT_TYPES:
            dtype = str(value.dtype).removeprefix("torch.")
            raise WeightsError(f"{path}: tensor '{key}' is {dtype}, not floating point; not "
                               "network weights")
        if not bool(torch.isfinite(value).all()):
            raise WeightsError(f"{path}: tensor '{key}' holds NaN or infinite values")


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """The cclnn record of a safetensors file's header (the network, and what its writer put
    beside it: :func:`save_weights`'s ``metadata``); {} for a file without one."""
    with open(path, "rb") as file:
        length = int.from_bytes(file.read(8), "little")
        raw = file.read(length)
    try:
        header = json.loads(raw)
        metadata = header.get("__metadata__") or {}
        record = metadata.get(METADATA_KEY)
        record = {} if record is None else json.loads(record)
    except (ValueError, AttributeError) as exc:
        raise WeightsError(f"{path}: unreadable safetensors header ({exc})") from None
    if not isinstance(record, dict):
        raise WeightsError(f"{path}: its cclnn record is damaged ({record!r:.80})")
    return record


def _origin_from_header(path: Path) -> WeightsOrigin | None:
    record = read_record(path)
    return _origin(record, "model", path) if record else None


def _origin_from_checkpoint(data: Any, path: Path) -> WeightsOrigin | None:
    """A ``cclnn train`` checkpoint records its network in ``config.model``."""
    config = data.get("config") if isinstance(data, Mapping) else None
    section = config.get("model") if isinstance(config, Mapping) else None
    return _origin(section, "name", path) if isinstance(section, Mapping) else None


def _origin(record: Any, name_key: str, path: Path) -> WeightsOrigin:
    name = record.get(name_key) if isinstance(record, Mapping) else None
    scale, options = (record.get("scale"), record.get("options") or {}) if name else (None, None)
    if not isinstance(name, str) or not isinstance(scale, int) or not isinstance(options, Mapping):
        raise WeightsError(f"{path}: its cclnn record of the network is damaged ({record!r:.80})")
    return WeightsOrigin(name, scale, dict(options))


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
    return load_state(model, read_state_dict(path), path, strict)


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike,
               strict: bool = True) -> nn.Module:
    """:func:`load_weights` of tensors already read from ``path`` (named in the errors)."""
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

    A network cclnn built records its name, scale and every config option (from its
    descriptor) as JSON under the metadata key ``"cclnn"``, with ``metadata`` beside them, so
    that the file alone rebuilds the network it was trained as (:func:`cclnn.create_model`).
    The bytes are written with ``open`` (safetensors' own ``save_file`` creates files
    readable by their owner only, whatever the umask)."""
    from safetensors.torch import save
    path = Path(path)
    record = dict(metadata or {})
    info = describe(model)
    if info is not None:
        record.update(model=info.name, scale=info.scale, options=config_to_dict(info.config))
    header = {METADATA_KEY: json.dumps(record, default=str)} if record else None
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    write_bytes_atomic(path, save(state, metadata=header))
