"""Architecture detection (cclnn/detect.py): every registry network and every rename table,
saved under the official key names in each wrapper style, is found again with its scale and
options. Full sizes are state dicts of meta tensors (keys and shapes only, no memory)."""
import dataclasses
import re
from pathlib import Path

import pytest
import torch

import cclnn
from cclnn.detect import SHAPELESS, AmbiguousWeights, detect
from cclnn.models import build_model, list_models
from cclnn.models.registry import get_entry
from cclnn.weights import read_weights, rename_keys, unwrap_state_dict

A2N_OFFICIAL = Path("/work/shared/weights/a2n/aan_x2.pt")


# Our key names -> the official ones: each rename table applied backwards, by hand.
RESBLOCK = [(r"\.conv1\.(weight|bias)$", r".body.0.\1"), (r"\.conv2\.(weight|bias)$", r".body.2.\1")]
NLSA = [(r"\.conv_(match|assembly)\.(weight|bias)$", r".conv_\1.0.\2")]
RCAN = RESBLOCK + [(r"\.ca\.squeeze\.", ".body.3.conv_du.0."),
                   (r"\.ca\.excite\.", ".body.3.conv_du.2.")]
A2N = [(r"\.conv_in\.", ".conv_first."), (r"\.conv_out\.", ".conv_last."),
       (r"\.branch_weights\.", ".ADM."), (r"^head\.", "conv_first."), (r"^blocks\.", "AAB_trunk."),
       (r"^body_conv\.", "trunk_conv."),
       (r"^upsample\.(\d+)\.conv\.", lambda m: f"upconv{int(m.group(1)) + 1}."),
       (r"^upsample\.(\d+)\.pa\.", lambda m: f"att{int(m.group(1)) + 1}.conv."),
       (r"^upsample\.(\d+)\.hr_conv\.", lambda m: f"HRconv{int(m.group(1)) + 1}."),
       (r"^tail\.", "conv_last.")]
DIVANET = [(r"^(sub|add)_mean\.", r"\1_mean.shifter."),
           (r"\.parametrizations\.weight\.original0$", ".weight_g"),
           (r"\.parametrizations\.weight\.original1$", ".weight_v"),
           (r"\.expand\.", ".body.0."), (r"\.reduce\.", ".body.2."), (r"\.conv\.", ".body.3."),
           (r"\.diva\.", ".DiVA."), (r"\.feature_fusion\.", ".reduction_1.conv."),
           (r"\.attention_fusion\.", ".reduction_2.conv."),
           (r"^trunk\.units\.(\d+)\.units\.(\d+)\.",
            lambda m: f"b{int(m.group(1)) + 1}.rb{int(m.group(2)) + 1}."),
           (r"^trunk\.units\.(\d+)\.", lambda m: f"b{int(m.group(1)) + 1}."), (r"^trunk\.", ""),
           (r"^head\.", "entry_1."), (r"^tail\.", "exit1."), (r"^upsample\.", "upsample.up.body.")]
RNAN = RESBLOCK + [
    (r"^(nonlocal_\w+\.block\.mask)\.pre\.", r"\1.MB_RB1.1."),
    (r"^(groups\.\d+\.block\.mask)\.pre\.", r"\1.MB_RB1.0."),
    (r"\.mask\.non_local\.out\.", ".mask.MB_RB1.0.W."), (r"\.mask\.non_local\.", ".mask.MB_RB1.0."),
    (r"\.mask\.down\.", ".mask.MB_Down.0."), (r"\.mask\.bottom\.", ".mask.MB_RB2."),
    (r"\.mask\.up\.", ".mask.MB_Up.0."), (r"\.mask\.post\.", ".mask.MB_RB3.0."),
    (r"\.mask\.to_mask\.", ".mask.MB_1x1conv.0."), (r"\.block\.pre\.", ".body.0.RA_RB1.0."),
    (r"\.block\.trunk\.", ".body.0.RA_TB.0.body."), (r"\.block\.mask\.", ".body.0.RA_MB.0."),
    (r"\.block\.post\.", ".body.0.RA_tail."), (r"^(groups\.\d+|nonlocal_\w+)\.conv\.", r"\1.body.1."),
    (r"^groups\.", "body."), (r"^nonlocal_low\.", "body_nl_low.0."),
    (r"^nonlocal_high\.", "body_nl_high.0."), (r"^head\.", "head.0.")]
OFFICIAL = {"edsr": RESBLOCK, "nlsn": RESBLOCK + NLSA, "cclnn": RESBLOCK + NLSA, "rcan": RCAN,
            "a2n": A2N, "divanet": DIVANET, "rnan": RNAN, "srcnn": [], "vdsr": []}
FAMILY = {name: next(base for base in OFFICIAL if name == base or name.startswith(base + "-"))
          for name in list_models()}


def official_state(model: torch.nn.Module) -> dict:
    """``model``'s state dict under its official code's key names."""
    name = model.info.name
    table = list(OFFICIAL[FAMILY[name]])
    if FAMILY[name] == "rnan":  # the body conv follows the local groups
        table.append((r"^body_conv\.", f"body.{model.info.config.n_resgroups - 2}."))
    out = {}
    for key, value in model.state_dict().items():
        for pattern, replacement in table:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    return out


def _meta(name: str, scale: int, **options) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(name, scale, **options)


WRAPPERS = {"plain": lambda s: s, "params": lambda s: {"params": s},
            "params_ema": lambda s: {"params_ema": s, "params": s},
            "module.": lambda s: {f"module.{k}": v for k, v in s.items()},
            "state_dict": lambda s: {"state_dict": s, "epoch": 3}}


@pytest.mark.parametrize("index, name", list(enumerate(list_models())))
def test_every_registry_network_is_found_in_every_wrapper(index, name):
    scale = (2, 3, 4)[index % 3]
    model = _meta(name, scale)
    official = official_state(model)
    # the rename table maps the official layout back onto ours
    assert rename_keys(official, model.state_dict(), get_entry(name).key_renames).keys() == \
        model.state_dict().keys()
    for wrap in WRAPPERS.values():  # every wrapper gives detection the same tensors
        unwrapped = unwrap_state_dict(wrap(official))
        assert unwrapped.keys() == official.keys()
        assert all(unwrapped[k] is v for k, v in official.items())
    found = detect(unwrapped, f"{name}_x{scale}.pt")
    assert (found.scale, found.options) == (scale, {})
    assert name == found.name or name in found.same_network  # aux_loss is not in weights


@pytest.mark.parametrize("name, options, scale", [
    ("edsr", dict(channels=32, n_resblocks=3), 2),
    ("edsr", dict(channels=16, n_resblocks=2, rgb_range=1.0), 3),
    ("nlsn", dict(channels=32, n_resblocks=4, reduction=2), 4),
    ("cclnn", dict(channels=32, n_resblocks=2, cca_reduction=4, branches="local"), 2),
    ("cclnn", dict(channels=16, n_resblocks=9, reduction=2, cca_reduction=2), 3),
    ("rcan", dict(channels=16, n_resgroups=2, n_resblocks=3, reduction=4), 4),
    ("rnan", dict(channels=8, n_resgroups=3), 2),
    ("a2n", dict(channels=12, up_channels=8, n_blocks=2, reduction=3), 4),
    ("divanet", dict(channels=16, n_groups=2, n_blocks=2, expansion=2, squeeze=0.5,
                     up_groups=2), 3),
    ("srcnn", dict(channels=16, mid_channels=8, kernels=(5, 1, 3)), 2),
    ("vdsr", dict(channels=8, depth=5), 4),
])
def test_non_default_options_are_read_from_the_shapes(name, options, scale):
    """Small networks with real values: the value range is read from the mean shifts too."""
    model = build_model(name, scale, **options)
    found = detect(unwrap_state_dict({"params": official_state(model)}), f"net_x{scale}.pth")
    assert (found.name, found.scale, found.options) == (name, scale, options)
    assert found.config == model.info.config


def test_full_size_non_default_options_on_meta():
    found = detect(official_state(_meta("rcan", 3, n_resgroups=2)), "rcan.pt")
    assert (found.name, found.scale, found.options) == ("rcan", 3, {"n_resgroups": 2})
    assert set(found.unread) == {"res_scale", "rgb_range"}  # meta tensors hold no values


def test_options_no_tensor_shows_keep_the_default_and_are_reported():
    found = detect(official_state(_meta("nlsn", 2)), "nlsn.pt")
    assert {"n_hashes", "chunk_size", "res_scale"} <= set(found.unread)
    assert {"channels", "n_resblocks", "reduction"} <= set(found.read)


@pytest.mark.parametrize("name", ["edsr-s", "nlsn-s", "cclnn-s", "rcan-s", "rnan-s", "a2n",
                                  "divanet-s"])
def test_shapeless_options_change_no_tensor(name):
    """What detect.SHAPELESS claims (one build verifies all names of a family that differ
    only in these)."""
    config = get_entry(name).defaults
    changed = {"res_scale": 0.5, "rgb_range": 7.0, "n_hashes": 2, "chunk_size": 16,
               "temperature": 3.0, "aux_loss": "none", "contrast_ratio": 0.2,
               "contrast_margin": 2.0}
    options = {k: v for k, v in changed.items()
               if k in SHAPELESS and k in {f.name for f in dataclasses.fields(config)}}
    plain, other = _meta(name, 2).state_dict(), _meta(name, 2, **options).state_dict()
    assert {k: v.shape for k, v in plain.items()} == {k: v.shape for k, v in other.items()}


def test_a2n_x2_and_x3_are_told_apart_by_the_file_name_or_the_request():
    state = official_state(_meta("a2n", 2))
    assert detect(state, "aan_x3.pt").scale == 3
    assert detect(state, "RCAN_BIX2.pt").scale == 2
    assert detect(state, "a2n.pt", scale=3).scale == 3
    with pytest.raises(AmbiguousWeights) as error:
        detect(state, "a2n.pt")
    assert "x2, x3" in str(error.value) and len(str(error.value).splitlines()) == 1
    assert {(c.name, c.scale) for c in error.value.candidates} == {("a2n", 2), ("a2n", 3)}


def test_a_state_dict_of_no_registry_network_is_none():
    assert detect({"fc.weight": torch.zeros(3, 4)}, "x.pt") is None
    state = official_state(_meta("edsr-baseline", 2))
    del state["tail.1.bias"]
    assert detect(state, "x.pt") is None


@pytest.mark.filterwarnings("ignore:.*res_scale=0.1")  # not a registry size: said once
def test_files_in_every_wrapper_style_are_built_from_their_tensors(tmp_path):
    model = build_model("edsr", 4, channels=8, n_resblocks=2)
    for style, wrap in WRAPPERS.items():
        path = tmp_path / f"{style}.pt"
        torch.save(wrap(official_state(model)), path)
        made = cclnn.create_model(None, None, path)
        assert (made.info.name, made.info.scale, made.info.config) == \
            ("edsr", 4, model.info.config)
        assert all(torch.equal(a, b) for a, b in zip(made.state_dict().values(),
                                                     model.state_dict().values()))


@pytest.mark.skipif(not A2N_OFFICIAL.is_file(), reason="the official A2N x2 file is not here")
def test_the_official_a2n_x2_file_is_a2n_x2():
    state, origin = read_weights(A2N_OFFICIAL)
    found = detect(state, A2N_OFFICIAL)
    assert origin is None and (found.name, found.scale, found.options) == ("a2n", 2, {})
    assert found.scale_from == "file name" and found.unread == ("temperature",)
    # our inverse table gives exactly the official layout
    assert official_state(_meta("a2n", 2)).keys() == state.keys()
    model = cclnn.create_model(None, None, A2N_OFFICIAL)
    assert (model.info.name, model.info.scale) == ("a2n", 2)
