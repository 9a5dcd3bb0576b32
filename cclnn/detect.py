"""Which registry network a weights file holds, read from its tensors' names and shapes alone.

Official checkpoints (EDSR-PyTorch, BasicSR, the A2N, RCAN, NLSN, RNAN and DiVANet codes) carry
no record of their network. For each registry family a reader takes the options that shape
the tensors (widths from the head conv, depths from the highest block index, reductions from
the attention convs' widths, ...) from the file, after the family's rename table; every
registered name of the family is then built with those options, at every scale, on the meta
device (no memory), and kept only if its state dict has exactly the file's keys and shapes
(as :func:`cclnn.weights.load_state` would map them). Guessing is therefore never trusted:
only what verifies is a candidate.

Of several candidates, a registry size taken as it is wins; a file of no registry size is
the family's first-registered network (``edsr``, ``cclnn``, ``rcan``, ...) with the options it
needs (else the name needing the fewest). Registry sizes that differ only in
training (``aux_loss``: ``cclnn-l``, ``cclnn-tsparse``, ``cclnn-nsparse``) are the same network
for inference, so the first stands for all; two that would compute different things are an
:class:`AmbiguousWeights` error listing them. The scale is in the upsampler's shapes except
for A2N at x2/x3 and the pre-upsampling SRCNN/VDSR: then a requested scale or an ``x3`` in the
file name decides. Options no tensor reveals (``res_scale``, ``n_hashes``, ``chunk_size``,
``aux_loss``, A2N's ``temperature``) keep the registry default and are reported as such.
"""
from __future__ import annotations

import dataclasses
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import torch

from .data.layout import SCALES
from .models.common import MeanShift
from .models.descriptor import mean_shift_range
from .models.network_a2n import A2N
from .models.network_cclnn import CCLNN
from .models.network_divanet import DiVANet
from .models.network_edsr import EDSR
from .models.network_nlsn import NLSN
from .models.network_rcan import RCAN
from .models.network_rnan import RNAN
from .models.network_srcnn import SRCNN, VDSR
from .models.registry import build_model, get_entry, list_models, model_config
from .weights import WeightsError, WeightsOrigin, rename_keys

State = Mapping[str, torch.Tensor]
TRAINING_ONLY = ("aux_loss", "contrast_ratio", "contrast_margin")  # never change the output
SCALE_IN_NAME = re.compile(r"(?:^|[^a-z0-9]|bi)x([234])(?![0-9])", re.IGNORECASE)


class AmbiguousWeights(WeightsError):
    """The tensors fit several networks (or scales) that would compute different things;
    ``candidates``: what they fit."""

    def __init__(self, message: str, candidates: tuple["Candidate", ...]):
        super().__init__(message)
        self.candidates = candidates


@dataclass(frozen=True)
class Candidate:
    """A registry network and scale whose state dict is exactly the file's; ``options``: the
    overrides of its registry defaults that it needs, as sorted (name, value) pairs."""
    name: str
    scale: int
    options: tuple[tuple[str, Any], ...]

    def label(self) -> str:
        extra = ", ".join(f"{k}={v!r}" for k, v in self.options)
        return f"{self.name} x{self.scale}" + (f" ({extra})" if extra else "")


@dataclass(frozen=True)
class Detection:
    """What the tensors were found to be. ``read``: the options taken from the tensors (the
    rest keep the registry default: the weights cannot tell them); ``scale_from``: "weights",
    "file name" or "request"; ``same_network``: other names that fit with identical inference
    (they differ in training only); ``candidates``: everything that fits."""
    name: str
    scale: int
    options: dict[str, Any]
    read: tuple[str, ...]
    scale_from: str
    same_network: tuple[str, ...]
    candidates: tuple[Candidate, ...]

    @property
    def config(self) -> Any:
        return model_config(self.name, **self.options)

    @property
    def unread(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.config) if f.name not in self.read)

    def candidate(self) -> Candidate:
        return Candidate(self.name, self.scale, tuple(sorted(self.options.items())))

    def origin(self) -> WeightsOrigin:
        return WeightsOrigin(self.name, self.scale, dict(self.options))


# --- reading a family's options from its tensors (our key names) ---

def _shape(state: State, key: str) -> Optional[tuple[int, ...]]:
    tensor = state.get(key)
    return None if tensor is None else tuple(tensor.shape)


def _count(state: State, pattern: str) -> int:
    """How many distinct indices the first group of ``pattern`` takes among the keys."""
    regex = re.compile(pattern)
    return len({m.group(1) for key in state if (m := regex.match(key))})


def _edsr(state: State) -> Optional[dict]:
    head = _shape(state, "head.0.weight")
    if head is None:
        return None
    return dict(channels=head[0], n_resblocks=_count(state, r"^body\.(\d+)\.conv1\.weight$"))


def _nlsn(state: State) -> Optional[dict]:
    options, match = _edsr(state), _shape(state, "body.0.conv_match.weight")
    if options is None or match is None:
        return None
    return dict(options, reduction=options["channels"] // match[0])


def _cclnn(state: State) -> Optional[dict]:
    options = _edsr(state)
    match, squeeze = _shape(state, "body.0.nlsa.conv_match.weight"), \
        _shape(state, "body.0.cca.squeeze.weight")
    if options is None or (match is None and squeeze is None):
        return None
    c = options["channels"]
    options["branches"] = "both" if match and squeeze else "nonlocal" if match else "local"
    if match:
        options["reduction"] = c // match[0]
    if squeeze:
        options["cca_reduction"] = c // squeeze[0]
    return options


def _rcan(state: State) -> Optional[dict]:
    head, squeeze = _shape(state, "head.0.weight"), _shape(state, "body.0.body.0.ca.squeeze.weight")
    if head is None or squeeze is None:
        return None
    return dict(channels=head[0], reduction=head[0] // squeeze[0],
                n_resgroups=_count(state, r"^body\.(\d+)\.body\.0\.conv1\.weight$"),
                n_resblocks=_count(state, r"^body\.0\.body\.(\d+)\.conv1\.weight$"))


def _rnan(state: State) -> Optional[dict]:
    head = _shape(state, "head.weight")
    if head is None or "nonlocal_low.conv.weight" not in state:
        return None
    return dict(channels=head[0], n_resgroups=_count(state, r"^groups\.(\d+)\.") + 2)


def _srcnn(state: State) -> Optional[dict]:
    shapes = [_shape(state, f"net.{i}.weight") for i in (0, 2, 4)]
    if None in shapes or "net.6.weight" in state:
        return None
    return dict(channels=shapes[0][0], mid_channels=shapes[1][0],
                kernels=tuple(s[-1] for s in shapes))


def _vdsr(state: State) -> Optional[dict]:
    first = _shape(state, "net.0.weight")
    if first is None:
        return None
    return dict(channels=first[0], depth=_count(state, r"^net\.(\d+)\.weight$"))


def _a2n(state: State) -> Optional[dict]:
    head, up = _shape(state, "head.weight"), _shape(state, "upsample.0.conv.weight")
    mlp = _shape(state, "blocks.0.branch_weights.0.weight")
    if head is None or up is None:
        return None
    options = dict(channels=head[0], up_channels=up[0], n_blocks=_count(state, r"^blocks\.(\d+)\."))
    if mlp:
        options["reduction"] = head[0] // mlp[0]
    return options


def _divanet(state: State) -> Optional[dict]:
    weight = ".parametrizations.weight.original1"
    head = _shape(state, "head" + weight)
    expand = _shape(state, "trunk.units.0.units.0.expand" + weight)
    narrow, up = _shape(state, "trunk.units.0.units.0.reduce" + weight), \
        _shape(state, "upsample.0" + weight)
    if None in (head, expand, narrow, up):
        return None
    c, default = head[0], get_entry("divanet").defaults.squeeze
    return dict(channels=c, expansion=expand[0] // c, up_groups=c // up[1],
                squeeze=default if int(c * default) == narrow[0] else narrow[0] / c,
                n_groups=_count(state, r"^trunk\.units\.(\d+)\.feature_fusion\."),
                n_blocks=_count(state, r"^trunk\.units\.0\.units\.(\d+)\.expand\."))


READERS: dict[type, Callable[[State], Optional[dict]]] = {
    EDSR: _edsr, NLSN: _nlsn, CCLNN: _cclnn, RCAN: _rcan, RNAN: _rnan, SRCNN: _srcnn,
    VDSR: _vdsr, A2N: _a2n, DiVANet: _divanet}


def read_value_range(state: State) -> Optional[float]:
    """The value range the mean-shift biases hold (as :class:`MeanShift` reads it when it
    loads); ``None`` without a mean shift or without values (meta tensors)."""
    weight, bias = state.get("sub_mean.weight"), state.get("sub_mean.bias")
    if weight is None or bias is None or bias.device.type == "meta" or bias.shape != (3,):
        return None
    probe = MeanShift(-1)
    probe.load_state_dict({"weight": weight.float(), "bias": bias.float()})
    return probe.rgb_range


# --- verifying ---

# Options that shape no tensor: networks that differ only in these have the same state dict
# (tests/test_detect.py checks it for every family), so one build per structure is verified.
SHAPELESS = ("res_scale", "rgb_range", "n_hashes", "chunk_size", "temperature") + TRAINING_ONLY
_SHAPES: dict[tuple, Optional[dict[str, tuple[int, ...]]]] = {}


def _shapes(name: str, scale: int, options: Mapping[str, Any]
            ) -> Optional[dict[str, tuple[int, ...]]]:
    """Keys and shapes of ``name`` built on the meta device (no memory); ``None`` if the
    options are invalid for it. Remembered per family, scale and shaping options."""
    try:
        config = model_config(name, **options)
    except (ValueError, TypeError):  # ConfigError is a ValueError
        return None
    key = (get_entry(name).build, scale, tuple(
        (f.name, getattr(config, f.name)) for f in dataclasses.fields(config)
        if f.name not in SHAPELESS))
    if key not in _SHAPES:
        if len(_SHAPES) > 256:
            _SHAPES.clear()
        try:
            with torch.device("meta"):
                model = build_model(name, scale, **options)
            _SHAPES[key] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        except (ValueError, TypeError):
            _SHAPES[key] = None
    return _SHAPES[key]


def fits(state: State, name: str, scale: int, **options) -> bool:
    """``state`` has exactly the keys (after ``name``'s rename table) and shapes of ``name``."""
    return _fits(state, name, _shapes(name, scale, options), {})


def _fits(state: State, name: str, own: Optional[dict[str, tuple[int, ...]]],
          renamed_for: dict[int, dict]) -> bool:
    """:func:`fits` against ``own`` shapes; ``renamed_for`` remembers the renamed state per
    structure (the names of a family share one rename table)."""
    if own is None:
        return False
    if renamed_for.get(id(own), (None,))[0] is not own:
        renamed_for[id(own)] = own, rename_keys(state, own, get_entry(name).key_renames)
    renamed = renamed_for[id(own)][1]
    return renamed.keys() == own.keys() and all(tuple(v.shape) == own[k]
                                                 for k, v in renamed.items())


def _family_candidates(state: State, names: list[str], scales) -> list[tuple[Candidate, tuple]]:
    """(candidate, options read) for every name of one family that fits, at ``scales``."""
    entry = get_entry(names[0])
    ours = rename_keys(state, (), entry.key_renames)
    read = READERS[entry.build](ours)
    if read is None:
        return []
    value_range, renamed_for = read_value_range(ours), {}
    found = []
    for name in names:
        defaults = get_entry(name).defaults
        options = dict(read)
        if value_range is not None and hasattr(defaults, "rgb_range"):
            options["rgb_range"] = value_range
        overrides = tuple(sorted((k, v) for k, v in options.items() if getattr(defaults, k) != v))
        found += [(Candidate(name, s, overrides), tuple(options)) for s in scales
                  if _fits(state, name, _shapes(name, s, dict(overrides)), renamed_for)]
    return found


def candidates(state: State, scales=SCALES) -> list[tuple[Candidate, tuple[str, ...]]]:
    """Every registry network and scale the tensors fit, with the options read from them."""
    families: dict[Any, list[str]] = {}
    for name in list_models():
        if get_entry(name).build in READERS:
            families.setdefault(get_entry(name).build, []).append(name)
    return [found for names in families.values()
            for found in _family_candidates(state, names, scales)]


def describe_state(state: State) -> str:
    """What a state dict looks like, in a few words (for the error when nothing fits)."""
    keys = list(state)
    more = ", ..." if len(keys) > 3 else ""
    return f"{len(keys)} tensors: " + ", ".join(keys[:3]) + more


def detect(state: State, path: str | os.PathLike = "<memory>",
           scale: int | None = None) -> Optional[Detection]:
    """The network the tensors are (``None`` if no registry network fits them). ``scale``: the
    scale asked for; where the tensors fit it, only it is considered. The file name of ``path``
    decides between scales the tensors fit alike. Raises :class:`AmbiguousWeights`."""
    found = candidates(state)
    if not found:
        return None
    scales = sorted({c.scale for c, _ in found})
    named = [int(m) for m in SCALE_IN_NAME.findall(os.path.basename(os.fspath(path)))]
    if scale in scales:
        chosen, scale_from = scale, "request" if len(scales) > 1 else "weights"
    elif len(scales) == 1:
        chosen, scale_from = scales[0], "weights"
    elif len(set(named) & set(scales)) == 1:
        chosen, scale_from = (set(named) & set(scales)).pop(), "file name"
    else:
        names = sorted({c.name for c, _ in found})
        raise AmbiguousWeights(f"{path}: the weights fit {', '.join(names)} at "
                               f"{', '.join(f'x{s}' for s in scales)} alike (the scale is not in "
                               "their shapes nor in the file name); give the scale",
                               tuple(c for c, _ in found))
    at_scale = [(c, read) for c, read in found if c.scale == chosen]
    return _choose(at_scale, path, scale_from)


def _choose(found: list[tuple[Candidate, tuple]], path, scale_from: str) -> Detection:
    order = {name: i for i, name in enumerate(list_models())}
    bases = {get_entry(name).build: name for name in reversed(list_models())}

    def preference(pair: tuple[Candidate, tuple]) -> tuple:
        c = pair[0]  # a registry size as it is, else the family's first name, else the closest
        return bool(c.options), bases[get_entry(c.name).build] != c.name, len(c.options), \
            order[c.name]
    found.sort(key=preference)
    best, read = found[0]
    best_config = _inference_fields(model_config(best.name, **dict(best.options)))
    same, rivals = [], []
    for other, _ in found[1:]:
        if len(other.options) != len(best.options) or best.options:
            continue  # only registry sizes taken as they are can tie
        config = _inference_fields(model_config(other.name, **dict(other.options)))
        (same if config == best_config else rivals).append(other)
    if rivals:
        raise AmbiguousWeights(f"{path}: the weights fit several networks that compute "
                               f"different things: {'; '.join(c.label() for c in [best, *rivals])}"
                               "; name the network", tuple(c for c, _ in found))
    return Detection(best.name, best.scale, dict(best.options), read, scale_from,
                     tuple(c.name for c in same), tuple(c for c, _ in found))


def _inference_fields(config: Any) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.name not in TRAINING_ONLY}


def detect_origin(state: State, path: str | os.PathLike, name: str | None = None,
                  scale: int | None = None, options: Mapping[str, Any] | None = None
                  ) -> Optional[WeightsOrigin]:
    """The network to build for a file without a record: ``None`` when ``name`` at ``scale``
    with ``options`` fits as asked (nothing to detect) or when no registry network fits;
    otherwise what :func:`detect` finds (the caller reports a name or scale it contradicts)."""
    if name is not None and scale is not None and fits(state, name, scale, **dict(options or {})):
        return None
    found = detect(state, path, scale)
    if found is None:
        return None
    guessed = [f for f in found.unread if f not in TRAINING_ONLY]
    contradicted = (name or found.name) != found.name or (scale or found.scale) != found.scale
    if found.options and guessed and not contradicted:  # no registry size: defaults guessed
        config = found.config
        warnings.warn(f"{path}: no record of its network; its tensors are "
                      f"{found.candidate().label()}; not in the weights, defaults used: "
                      + ", ".join(f"{f}={getattr(config, f)!r}" for f in guessed), stacklevel=3)
    return found.origin()


def model_value_range(name: str, scale: int, options: Mapping[str, Any], state: State
                      ) -> Optional[float]:
    """The value range ``name`` works in with these weights: the mean shifts' biases where
    they hold values, else the config's; ``None`` for a network without mean shifts."""
    with torch.device("meta"):
        model = build_model(name, scale, **dict(options))
    own_range = mean_shift_range(model)
    if own_range is None:
        return None
    renamed = rename_keys(state, model.state_dict(), get_entry(name).key_renames)
    found = read_value_range(renamed)
    return own_range if found is None else found


__all__ = ["AmbiguousWeights", "Candidate", "Detection", "candidates", "describe_state", "detect",
           "detect_origin", "fits", "model_value_range", "read_value_range"]
