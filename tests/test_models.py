import pytest
import torch

import cclnn
from cclnn.config import ConfigError
from cclnn.models import count_parameters, model_config
from cclnn.models.common import ChannelAttention
from cclnn.models.network_cclnn import CCLNBlock, PixelAttention
from cclnn.models.network_rnan import NonLocalBlock
from cclnn.models.nlsa import NonLocalSparseAttention
from conftest import FULL_SIZE, slow_if_full_size

EXPECTED = {  # millions, MeanShift included (SPEC section 1)
    "nlsn": (41.80, 44.75, 44.16),
    "edsr": (40.73, 43.68, 43.09),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_published_parameter_counts(name):
    for scale, expected in zip((2, 3, 4), EXPECTED[name]):
        assert abs(count_parameters(name, scale) / 1e6 - expected) <= 0.01


def test_cclnn_overhead_matches_paper():
    ratios = {s: count_parameters("cclnn", s) / count_parameters("nlsn", s) for s in (2, 3, 4)}
    assert 1.145 <= ratios[2] <= 1.155
    assert 1.135 <= ratios[3] <= 1.150
    assert 1.135 <= ratios[4] <= 1.150


def test_ccln_block_adds_resblock_pa_cca():
    c, r = 256, 16
    resblock = 2 * (9 * c * c + c)
    pa = c * c + c
    cca = 2 * c * c // r + c // r + c
    diff = count_parameters("cclnn", 2) - count_parameters("nlsn", 2)
    assert diff == 5 * (resblock + pa + cca)


def _has(model, cls):
    return any(isinstance(m, cls) for m in model.modules())


def test_variants_are_what_spec_says():
    local = cclnn.build_model("cclnn-local", 2, channels=32, n_resblocks=8)
    assert not _has(local, NonLocalSparseAttention) and not _has(local, PixelAttention)
    assert _has(local, ChannelAttention)
    nonlocal_ = cclnn.build_model("cclnn-nonlocal", 2, channels=32, n_resblocks=8)
    assert _has(nonlocal_, NonLocalSparseAttention) and _has(nonlocal_, PixelAttention)
    assert not _has(nonlocal_, ChannelAttention)
    for block in (m for m in nonlocal_.modules() if isinstance(m, CCLNBlock)):
        assert not hasattr(block, "res") and not hasattr(block, "cca")
    with torch.device("meta"):  # full size: only the modules are counted, nothing allocated
        full = cclnn.build_model("cclnn-l", 2)
        paper = cclnn.build_model("cclnn", 2)
    assert sum(isinstance(m, CCLNBlock) for m in full.modules()) == 3
    assert sum(isinstance(m, CCLNBlock) for m in paper.modules()) == 5
    assert model_config("cclnn-tsparse").aux_loss == "sparse"
    assert model_config("cclnn-nsparse").aux_loss == "none"
    assert count_parameters("cclnn-nsparse", 2) == count_parameters("cclnn-l", 2)


SMALL = {  # keep every code path, shrink width and depth
    "cclnn": dict(channels=32, n_resblocks=8, cca_reduction=2),
    "nlsn": dict(channels=32, n_resblocks=8),
    "edsr": dict(channels=16, n_resblocks=2),
    "rcan": dict(channels=16, n_resgroups=2, n_resblocks=2, reduction=2),
    "vdsr": dict(depth=6),
    "rnan": dict(channels=8, n_resgroups=3),
    "divanet": dict(channels=8, n_groups=2, n_blocks=2),
}


def _small(name):
    return SMALL.get(name.split("-")[0], {})


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", cclnn.list_models())
def test_forward_shape_and_gradients(name, scale):
    model = cclnn.build_model(name, scale, **_small(name)).train()
    for m in model.modules():  # RNAN's non-local output conv starts at zero, as officially:
        if isinstance(m, NonLocalBlock):  # then its inner convs get exactly zero gradient
            torch.nn.init.normal_(m.out.weight, std=0.1)
    x = (torch.rand(1, 3, 37, 53) * 255).requires_grad_()
    if model.info.has_aux_loss:
        sr, weights = model(x, return_aux=True)
        loss = sr.mean() + model.auxiliary_loss(weights)
    else:
        sr = model(x)
        loss = sr.mean()
    assert sr.shape == (1, 3, 37 * scale, 53 * scale)
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: {pname}"
        else:
            assert "mean" in pname  # only the frozen MeanShift


@pytest.mark.parametrize("name", slow_if_full_size(cclnn.list_models()))
def test_full_size_forward(name):
    model = cclnn.build_model(name, 2).eval()
    with torch.no_grad():
        sr = model(torch.rand(1, 3, 9, 11) * 255)
    assert sr.shape == (1, 3, 18, 22) and torch.isfinite(sr).all()


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("name", FULL_SIZE)
def test_full_size_shapes_on_the_meta_device(name, scale):
    """The paper-size networks built and run on the meta device: every layer's shapes agree,
    without allocating their parameters (their real forward is a slow test above)."""
    with torch.device("meta"):
        model = cclnn.build_model(name, scale).eval()
        with torch.no_grad():
            sr = model(torch.rand(1, 3, 9, 11) * 255)
    assert sr.is_meta and sr.shape == (1, 3, 9 * scale, 11 * scale)


def test_init_is_near_identity_for_ccln_block():
    config = model_config("cclnn-l", channels=32, cca_reduction=4)
    block = CCLNBlock(config).eval()
    x = torch.randn(1, 32, 12, 12)
    with torch.no_grad():
        y, w = block(x)
    assert w.shape == (1, 32)
    # both gates ~ 0.5 at init, so Y ~ X: far closer to X than to 0 or 2X
    assert (y - x).norm() < 0.5 * x.norm()


def test_aux_loss_reaches_cca_only_through_weights():
    model = cclnn.build_model("cclnn-l", 2, channels=32, n_resblocks=8, cca_reduction=4)
    _, weights = model(torch.rand(2, 3, 12, 12) * 255, return_aux=True)
    assert len(weights) == 2 and weights[0].shape == (2, 32)
    model.auxiliary_loss(weights).backward()
    cca = [p for n, p in model.named_parameters() if ".cca." in n]
    assert cca and all(p.grad is not None and p.grad.abs().sum() > 0 for p in cca)
    nsparse = cclnn.build_model("cclnn-nsparse", 2, channels=32, n_resblocks=8, cca_reduction=4)
    _, weights = nsparse(torch.rand(1, 3, 12, 12) * 255, return_aux=True)
    assert nsparse.auxiliary_loss(weights).item() == 0


def test_contrast_ratio_default_by_scale():
    assert cclnn.build_model("cclnn-l", 2, channels=16, n_resblocks=0).contrast_ratio == 0.15
    assert cclnn.build_model("cclnn-l", 3, channels=16, n_resblocks=0).contrast_ratio == 0.15
    assert cclnn.build_model("cclnn-l", 4, channels=16, n_resblocks=0).contrast_ratio == 0.10
    m = cclnn.build_model("cclnn-l", 4, channels=16, n_resblocks=0, contrast_ratio=0.25)
    assert m.contrast_ratio == 0.25


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="unknown key 'chanels'.*did you mean 'channels'"):
        cclnn.build_model("cclnn", 2, chanels=64)
    with pytest.raises(ConfigError, match="n_resblocks: expected an integer"):
        cclnn.build_model("edsr", 2, n_resblocks="16")
    with pytest.raises(ConfigError, match="branches"):
        cclnn.build_model("cclnn", 2, branches="sideways")
    with pytest.raises(ConfigError, match="unknown model 'nlsn-x'"):
        cclnn.build_model("nlsn-x", 2)
    with pytest.raises(ConfigError, match="scale"):
        cclnn.build_model("edsr", 5)
    with pytest.raises(ConfigError, match="aux_loss"):
        cclnn.build_model("cclnn-nonlocal", 2, aux_loss="contrastive")
    assert model_config("edsr", res_scale=1).res_scale == 1.0  # int accepted for float


def test_srcnn_vdsr_start_from_bicubic_luminance():
    from cclnn.resize import resize_tensor
    vdsr = cclnn.build_model("vdsr", 2, depth=3)
    for p in vdsr.net[-1].parameters():  # zero last layer: VDSR output is exactly bicubic
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 3, 10, 12) * 255
    with torch.no_grad():
        assert torch.allclose(vdsr(x), resize_tensor(x, 2.0), atol=1e-3)


@pytest.mark.parametrize("name", ["cclnn-s", "rcan-s"])
def test_study_networks_channel_attention_has_at_least_8_hidden_units(name):
    """At 32 channels, r = 16 left 2 hidden units: a gate that barely varies across images."""
    with torch.device("meta"):
        model = cclnn.build_model(name, 2)
    widths = {m.squeeze.out_channels for m in model.modules() if isinstance(m, ChannelAttention)}
    assert widths and min(widths) >= 8
    assert model.info.value_range == 1.0
