"""The network descriptor (ModelInfo)."""
import copy
import dataclasses

import pytest
import torch

import cclnn
from cclnn.models import ModelInfo, describe, list_models, model_config

LOOSE_ATTRIBUTES = ("name", "scale", "config", "max_tile")  # what modules carried before
SMALL_EDSR = dict(n_resblocks=1, channels=8)


# ----------------------------------------------------------------------------- descriptor


def _expected_value_range(name: str):
    config = model_config(name)
    if hasattr(config, "rgb_range"):  # EDSR family, NLSN, CCLNN, RCAN: a config field
        return float(config.rgb_range)
    return {"rnan": 255.0, "divanet": 1.0}.get(name.split("-")[0])  # fixed mean shifts; else none


@pytest.mark.parametrize("name", list_models())
def test_descriptor_of_every_network(name):
    with torch.device("meta"):  # full-size networks without allocating them
        model = cclnn.build_model(name, 2)
    info = describe(model)
    assert isinstance(info, ModelInfo) and info is model.info
    assert (info.name, info.scale, info.config) == (name, 2, model_config(name))
    assert info.value_range == _expected_value_range(name)
    assert info.max_tile == (128 if name.startswith("rnan") else None)
    assert info.has_aux_loss == name.startswith("cclnn")
    assert info.has_aux_loss == hasattr(model, "auxiliary_loss")
    assert not [a for a in LOOSE_ATTRIBUTES if hasattr(model, a)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.scale = 3


def test_descriptor_keeps_options_travels_with_copies_and_is_none_for_other_modules():
    model = cclnn.build_model("edsr-baseline", 3, rgb_range=1, **SMALL_EDSR)
    assert model.info.config == model_config("edsr-baseline", rgb_range=1, **SMALL_EDSR)
    assert model.info.value_range == 1.0 and model.info.scale == 3
    assert describe(copy.deepcopy(model)) == model.info  # e.g. the trainer's EMA copy
    assert describe(torch.nn.Conv2d(3, 3, 1)) is None


def test_value_range_follows_the_loaded_weights(tmp_path):
    in_0_1 = cclnn.build_model("edsr-baseline", 2, rgb_range=1, **SMALL_EDSR)
    cclnn.save_weights(in_0_1, tmp_path / "w.safetensors")
    model = cclnn.load_weights(cclnn.build_model("edsr-baseline", 2, **SMALL_EDSR),
                               tmp_path / "w.safetensors")
    assert model.info.value_range == 1.0  # built at 255, the file's mean shifts say 1
    assert model.info.config.rgb_range == 255.0  # what it was built with stays recorded
