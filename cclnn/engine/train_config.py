"""Training configuration: YAML files loaded into typed, validated dataclasses.

A config file mirrors :class:`TrainConfig`; ``key=value`` overrides use dotted paths
(``optim.lr=2e-4``, ``model.options.channels=32``) and YAML syntax for values. Unknown keys and
wrong types are one-line :class:`~cclnn.config.ConfigError` messages naming the key. Paths in a
config are relative to the current directory; ``$VARS`` and ``~`` are expanded, and an unset
variable is an error naming the key (not a folder named ``$VAR``). YAML anchors and aliases
are refused: no config needs them, and a few hundred bytes of nested aliases expand to
gigabytes (an "alias bomb").
"""
from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

import yaml

from ..config import ConfigError, check_number, config_to_dict, make_config, shown
from ..data.layout import SCALES, SCALES_TEXT
from ..models.registry import get_entry, model_config


@dataclass(frozen=True)
class ModelSection:
    name: str
    scale: int
    options: Mapping[str, Any] = field(default_factory=dict)  # validated against the network's config
    init_weights: Optional[str] = None  # e.g. x2 weights to start x3/x4 from (tail skipped)

    def validate(self) -> None:
        if self.scale not in SCALES:
            raise ConfigError(f"model.scale: must be {SCALES_TEXT}, got {self.scale}")
        get_entry(self.name)
        try:
            model_config(self.name, **dict(self.options))
        except ConfigError as exc:
            raise ConfigError(f"model.options: {exc}") from None


@dataclass(frozen=True)
class ImageFolders:
    """One training source: a folder of HR images, optionally with matching LR images.

    ``lr`` may contain ``{scale}``; LR files are named ``{stem}x{scale}{suffix}`` (the DIV2K
    layout). Without ``lr``, LR images are made with the MATLAB-exact bicubic resize.
    ``first``/``last`` select images by their 1-based position in name order (DIV2K's
    train split is images 1-800).
    """
    hr: str
    lr: Optional[str] = None
    first: Optional[int] = None
    last: Optional[int] = None

    def check(self, key: str) -> None:
        """Range checks, with ``key`` (e.g. ``data.train[0]``) naming this folder in errors."""
        check_number(f"{key}.first", self.first, 1, optional=True)
        check_number(f"{key}.last", self.last, 1, optional=True)
        if self.first is not None and self.last is not None and self.first > self.last:
            raise ConfigError(f"{key}.first: must not be after last={self.last}, "
                              f"got {self.first}")


@dataclass(frozen=True)
class DataConfig:
    train: tuple[ImageFolders, ...]
    patch_size: int = 48  # LR pixels
    batch_size: int = 16  # global batch (split over processes under DDP)
    repeat: int = 20  # times each image is sampled per epoch
    augment: bool = True  # the 8 flips/rotations
    cache: Literal["memory", "npy"] = "memory"  # decoded images: in RAM or as .npy files
    workers: int = 0  # DataLoader worker processes

    def validate(self) -> None:
        if not self.train:
            raise ConfigError("data.train: at least one image folder is needed")
        for key in ("patch_size", "batch_size", "repeat"):
            check_number(f"data.{key}", getattr(self, key), 1)
        check_number("data.workers", self.workers, 0)
        for i, folders in enumerate(self.train):
            folders.check(f"data.train[{i}]")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4
    betas: tuple[float, ...] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    lr_step_epochs: int = 200  # halve (gamma) every this many epochs
    lr_step_iterations: Optional[int] = None  # the same in iterations (CPU budgets); wins if set
    lr_gamma: float = 0.5
    grad_clip: Optional[float] = None  # max global gradient norm
    ema_decay: Optional[float] = None  # e.g. 0.999; validation and best.pt then use EMA weights

    def validate(self) -> None:
        check_number("optim.lr", self.lr, 0, low_open=True)
        if len(self.betas) != 2:
            raise ConfigError(f"optim.betas: expected 2 values, got {len(self.betas)}")
        for i, beta in enumerate(self.betas):
            check_number(f"optim.betas[{i}]", beta, 0, 1, high_open=True)
        check_number("optim.eps", self.eps, 0)
        check_number("optim.weight_decay", self.weight_decay, 0)
        check_number("optim.lr_step_epochs", self.lr_step_epochs, 1)
        check_number("optim.lr_step_iterations", self.lr_step_iterations, 1, optional=True)
        check_number("optim.lr_gamma", self.lr_gamma, 0, 1, low_open=True)
        check_number("optim.grad_clip", self.grad_clip, 0, low_open=True, optional=True)
        check_number("optim.ema_decay", self.ema_decay, 0, 1, low_open=True, high_open=True,
                     optional=True)


@dataclass(frozen=True)
class LossConfig:
    aux_weight: float = 0.0  # lambda of Eq. 6, against l1 in the network's value range (rgb_range)
    warmup_epochs: int = 0  # epochs with l_rec only
    warmup_iterations: Optional[int] = None  # the same in iterations; wins if set

    def validate(self) -> None:
        check_number("loss.aux_weight", self.aux_weight, 0)
        check_number("loss.warmup_epochs", self.warmup_epochs, 0)
        check_number("loss.warmup_iterations", self.warmup_iterations, 0, optional=True)


@dataclass(frozen=True)
class ValidationConfig:
    """What picks ``best.pt`` and draws the validation curve: a benchmark (``dataset``), or
    ``held_out``, images of a training folder that ``data.train`` leaves out (``first``/
    ``last``), so that no reported test set chooses the weights. ``held_out`` wins if set."""
    dataset: str = "Set5"  # a benchmark name (under data_root) or folder
    data_root: Optional[str] = None
    held_out: Optional[ImageFolders] = None  # LR by the MATLAB-exact resize; lr is not read
    every: int = 1000  # iterations; 0 disables
    max_images: Optional[int] = None

    def validate(self) -> None:
        check_number("val.every", self.every, 0)
        check_number("val.max_images", self.max_images, 1, optional=True)
        if self.held_out is not None:
            self.held_out.check("val.held_out")


MAX_SEED = 2**63 - 1  # torch.manual_seed's limit


def check_name(name: str) -> None:
    """A run's name is one folder inside ``out_dir``: not empty, no separator, no '..'."""
    if not name.strip():
        raise ConfigError(f"name: must not be empty, got {shown(name)}")
    if any(c in name for c in "/\\\0") or ".." in name or name == ".":
        raise ConfigError(f"name: must be one folder name inside out_dir (no '/', '\\' "
                          f"or '..'), got {shown(name)}")


@dataclass(frozen=True)
class TrainConfig:
    name: str
    model: ModelSection
    data: DataConfig
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    val: ValidationConfig = ValidationConfig()
    epochs: int = 1000
    max_iterations: Optional[int] = None  # stop early (CPU budgets); schedule stays in epochs
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    checkpoint_every: int = 500  # iterations
    log_every: int = 10  # iterations
    out_dir: str = "runs"

    def validate(self) -> None:
        check_name(self.name)
        check_number("epochs", self.epochs, 1)
        check_number("max_iterations", self.max_iterations, 1, optional=True)
        check_number("seed", self.seed, 0, MAX_SEED)
        check_number("checkpoint_every", self.checkpoint_every, 1)
        check_number("log_every", self.log_every, 1)
        if self.loss.warmup_epochs > self.epochs:
            raise ConfigError("loss.warmup_epochs: longer than the run")


class YamlAliasError(yaml.YAMLError):
    """A YAML alias (``*name``) where cclnn reads a config; the message is one line."""


class _NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing aliases before anything is built from them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YamlAliasError(f"line {event.start_mark.line + 1}: YAML aliases "
                                 f"(*{shown(event.anchor)[1:-1]}) are not allowed in a cclnn "
                                 f"config; write the value out")
        return super().compose_node(parent, index)


def read_yaml(text: str):
    """``text`` parsed like ``yaml.safe_load``, but an alias is a :class:`YamlAliasError`."""
    loader = _NoAliasLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """``["optim.lr=2e-4", "name=x"]`` -> ``[("optim.lr", "2e-4"), ("name", "x")]``.

    Values are read with YAML rules; numbers YAML leaves as strings (``2e-4``) are converted
    by the typed fields they land in.
    """
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = read_yaml(raw) if raw else ""
        except YamlAliasError as exc:
            raise ConfigError(f"override '{shown(item)[1:-1]}': {exc}") from None
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out


def config_from_dict(tree: Mapping[str, Any]) -> TrainConfig:
    return make_config(TrainConfig, dict(tree))


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config, apply ``key=value`` overrides, validate."""
    path = Path(path)
    try:
        tree = read_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                          f"offset {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    tree = copy.deepcopy(tree)
    for key, value in parse_overrides(overrides or []):
        _set_dotted(tree, key, value)
    try:
        return config_from_dict(tree)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def dump_config(config: TrainConfig) -> str:
    def plain(v):
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return yaml.safe_dump(plain(config_to_dict(config)), sort_keys=False)


_VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})")


def expand_path(path: str, key: str) -> Path:
    """``path`` with ``~`` and ``$VARS`` expanded; a variable that is not set is a
    :class:`ConfigError` naming ``key`` (``os.path.expandvars`` would leave ``$VAR`` in it)."""
    expanded = os.path.expandvars(os.path.expanduser(path))
    unset = _VARIABLE.search(expanded)
    if unset:
        raise ConfigError(f"{key}: environment variable {unset.group(1).strip('{}')} is not set")
    return Path(expanded)
