"""The model factory: cclnn.create_model, and the form the commands use (--model/--weights).
The descriptor it returns is tested in test_descriptor.py."""
import pytest
import torch
from safetensors.torch import load_file, save_file

import cclnn
from cclnn.cli.common import model_from_options
from cclnn.config import ConfigError
from cclnn.errors import CclnnError
from cclnn.factory import NoShippedWeights
from cclnn.weights import WeightsError, list_shipped_weights, shipped_weights
from conftest import tiny_weights

SMALL_EDSR = dict(n_resblocks=1, channels=8)


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_no_weights_is_build_model_in_eval_mode():
    torch.manual_seed(3)
    built = cclnn.build_model("edsr-baseline", 2, **SMALL_EDSR)
    torch.manual_seed(3)
    made = cclnn.create_model("edsr-baseline", 2, **SMALL_EDSR)
    assert _same_state(made, built) and not made.training
    assert made.info == built.info


def test_value_range_follows_the_loaded_weights(tmp_path):
    """A file without cclnn's record (an official one) sets the range through its mean shifts;
    a file cclnn saved also rebuilds the config it was trained with."""
    model = cclnn.build_model("edsr-baseline", 2, rgb_range=1, **SMALL_EDSR)
    save_file(model.state_dict(), str(tmp_path / "official.safetensors"))
    made = cclnn.create_model("edsr-baseline", 2, tmp_path / "official.safetensors", **SMALL_EDSR)
    assert made.info.value_range == 1.0 and made.info.config.rgb_range == 255.0
    cclnn.save_weights(model, tmp_path / "w.safetensors")
    made = cclnn.create_model("edsr-baseline", 2, tmp_path / "w.safetensors")
    assert made.info.value_range == 1.0 and made.info.config.rgb_range == 1.0


def test_shipped_weights():
    model = cclnn.create_model("cclnn-t", 2, "shipped")
    expected = load_file(str(shipped_weights("cclnn-t", 2)))
    state = model.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    assert not model.training and model.info.name == "cclnn-t"


def test_missing_shipped_weights_is_one_line_naming_what_ships():
    assert list_shipped_weights() == {"cclnn-t": [2, 3, 4]}
    with pytest.raises(NoShippedWeights) as error:
        cclnn.create_model("edsr-baseline", 2, "shipped", **SMALL_EDSR)
    assert str(error.value) == ("no weights ship with cclnn for 'edsr-baseline' at x2 "
                                "(shipped: cclnn-t x2, x3, x4); pretrained: "
                                "edsr_baseline_x2-1bc95232.pt from the official EDSR-PyTorch "
                                "model zoo (--weights pretrained, or cclnn weights fetch "
                                "edsr-baseline --scale 2)")
    assert isinstance(error.value, WeightsError)


def test_weights_from_a_path_and_a_scale_pattern(tmp_path):
    for scale in (2, 3):
        tiny_weights(tmp_path / f"w_x{scale}.safetensors", "edsr-baseline", scale, **SMALL_EDSR)
    x2 = cclnn.create_model("edsr-baseline", 2, str(tmp_path / "w_x2.safetensors"),
                            **SMALL_EDSR)
    pattern = tmp_path / "w_x{scale}.safetensors"  # a Path works as well as a str
    for scale in (2, 3):
        model = cclnn.create_model("edsr-baseline", scale, pattern, **SMALL_EDSR)
        saved = load_file(str(tmp_path / f"w_x{scale}.safetensors"))
        assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    assert _same_state(x2, cclnn.create_model("edsr-baseline", 2, pattern, **SMALL_EDSR))
    with pytest.raises(WeightsError, match="w_x4.safetensors: weights file not found"):
        cclnn.create_model("edsr-baseline", 4, pattern, **SMALL_EDSR)
    with pytest.raises(WeightsError, match="weights do not fit for model 'edsr-baseline' x2"):
        cclnn.create_model("edsr-baseline", 2, tmp_path / "w_x2.safetensors", n_resblocks=2,
                           channels=8)


def test_device():
    cpu = torch.device("cpu")
    for device in ["cpu", cpu] + ([] if torch.cuda.is_available() else ["auto"]):
        model = cclnn.create_model("srcnn", 2, device=device)
        assert {p.device for p in model.parameters()} == {cpu}
    meta = cclnn.create_model("edsr-baseline", 2, device=torch.device("meta"), **SMALL_EDSR)
    assert {p.device.type for p in meta.parameters()} == {"meta"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="about machines without CUDA")
def test_cuda_without_a_gpu_is_an_error():
    with pytest.raises(CclnnError, match="no CUDA device is available"):
        cclnn.create_model("srcnn", 2, device="cuda")


@pytest.mark.gpu
def test_device_cuda():
    model = cclnn.create_model("cclnn-t", 2, "shipped", device="cuda")
    assert {p.device.type for p in model.parameters()} == {"cuda"}


def test_name_scale_and_options_are_checked_before_weights():
    with pytest.raises(ConfigError, match="unknown model 'edsr-basline'"):
        cclnn.create_model("edsr-basline", 2, "shipped")
    with pytest.raises(ConfigError, match="scale must be one of"):
        cclnn.create_model("cclnn-t", 5, "shipped")
    with pytest.raises(ConfigError, match="unknown key 'chanels'"):
        cclnn.create_model("cclnn-t", 2, "shipped", chanels=8)


# ----------------------------------------------------------------------------- the commands' form


def test_commands_name_the_weights_option_in_their_errors(tmp_path):
    with pytest.raises(WeightsError) as error:
        model_from_options("srcnn", 2, None)
    assert str(error.value) == ("--weights: required for model 'srcnn' at x2: no weights ship "
                                "with cclnn for it; no pretrained weights are known for 'srcnn'; "
                                "networks with pretrained weights: a2n, cclnn-t, divanet, edsr, "
                                "edsr-baseline, nlsn, rcan, rnan (cclnn weights list)")
    with pytest.raises(WeightsError, match="^--weights: several scales need one file each"):
        model_from_options("srcnn", 2, "w.pt", n_scales=2)
    with pytest.raises(ConfigError, match="unknown model 'srcnnn'"):  # the name comes first
        model_from_options("srcnnn", 2, None)
    assert model_from_options("cclnn-t", 3, None).info.scale == 3  # the shipped weights
    tiny_weights(tmp_path / "s_x2.safetensors")
    assert not model_from_options("srcnn", 2, str(tmp_path / "s_x{scale}.safetensors"),
                                  n_scales=3).training
