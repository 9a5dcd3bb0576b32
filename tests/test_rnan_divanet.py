"""RNAN and DiVANet (Table 5 comparison networks): shapes, gradients, sizes, official keys."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

import cclnn
from cclnn.config import ConfigError
from cclnn.models import count_parameters
from cclnn.models.network_rnan import MaskBranch, NonLocalBlock
from cclnn.models.registry import get_entry
from cclnn.weights import load_weights, rename_keys
from conftest import slow_if_full_size

SMALL = {  # every code path kept, width and depth shrunk
    "rnan": dict(channels=8, n_resgroups=3),  # non-local, one local group, non-local
    "divanet": dict(channels=8, n_groups=2, n_blocks=2),
}


def _wake_nonlocal(model):
    """Non-local blocks start as the identity (output conv zero), which blocks the gradient to
    g/theta/phi until the first update; give the output conv weights as after training."""
    for m in model.modules():
        if isinstance(m, NonLocalBlock):
            torch.nn.init.normal_(m.out.weight, std=0.1)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", sorted(SMALL))
def test_odd_size_forward_and_gradients(name, scale):
    model = cclnn.build_model(name, scale, **SMALL[name]).train()
    _wake_nonlocal(model)
    x = (torch.rand(1, 3, 37, 53) * 255).requires_grad_()
    sr = model(x)
    assert sr.shape == (1, 3, 37 * scale, 53 * scale)
    sr.mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: {pname}"
        else:
            assert "mean" in pname  # only the frozen MeanShifts


def test_rnan_nonlocal_starts_as_identity():
    model = cclnn.build_model("rnan", 2, **SMALL["rnan"])
    blocks = [m for m in model.modules() if isinstance(m, NonLocalBlock)]
    assert len(blocks) == 2 and all(not b.out.weight.any() and not b.out.bias.any()
                                    for b in blocks)
    features = torch.rand(1, 8, 10, 12)
    assert torch.equal(blocks[0](features), features)
    model(torch.rand(1, 3, 10, 12) * 255).mean().backward()
    silent = {n for n, p in model.named_parameters() if p.requires_grad and not p.grad.any()}
    expected = {f"{group}.block.mask.non_local.{conv}.{t}" for group in
                ("nonlocal_low", "nonlocal_high") for conv in ("g", "theta", "phi")
                for t in ("weight", "bias")}
    assert silent == expected


def test_rnan_mask_branch_odd_size_is_zero_padding():
    branch = MaskBranch(4, non_local=False)
    x = torch.randn(1, 4, 9, 7)
    with torch.no_grad():
        skip = branch.pre(x)
        up = branch.up(branch.bottom(branch.down(F.pad(skip, (0, 1, 0, 1)))))[:, :, :9, :7]
        expected = torch.sigmoid(branch.to_mask(branch.post(skip + up)))
        assert torch.allclose(branch(x), expected, atol=1e-6)


def test_divanet_is_bicubic_when_the_residual_is_zero():
    model = cclnn.build_model("divanet", 3, **SMALL["divanet"])
    with torch.no_grad():  # weight norm: g = 0 (v = 0 would divide by zero) and bias = 0
        model.tail.parametrizations.weight.original0.zero_()
        model.tail.bias.zero_()
    x = torch.rand(1, 3, 9, 11) * 255
    with torch.no_grad():
        expected = F.interpolate(x, size=(27, 33), mode="bicubic", align_corners=False)
        assert torch.allclose(model(x), expected, atol=1e-3)


@pytest.mark.parametrize("name", slow_if_full_size(sorted(SMALL)))
def test_full_size_forward(name):
    model = cclnn.build_model(name, 2).eval()
    with torch.no_grad():
        sr = model(torch.rand(1, 3, 9, 11) * 255)
    assert sr.shape == (1, 3, 18, 22) and torch.isfinite(sr).all()


RNAN_PARAMS = (9_107_291, 9_291_931, 9_255_003)  # official SR code, F64G10, MeanShift included
DIVANET_PARAMS = (902_388, 949_108, 939_764)  # as the official solver.py counts
DIVANET_PUBLISHED_K = (902, 949, 939)  # the paper: thousands, last digits dropped
RNAN_QUOTED = 7.5e6  # what later papers quote; not reproducible (see network_rnan)


def test_parameter_counts():
    rnan = tuple(count_parameters("rnan", s) for s in (2, 3, 4))
    divanet = tuple(count_parameters("divanet", s) for s in (2, 3, 4))
    assert rnan == RNAN_PARAMS
    assert divanet == DIVANET_PARAMS
    assert tuple(n // 1000 for n in divanet) == DIVANET_PUBLISHED_K
    assert round((rnan[0] - RNAN_QUOTED) / 1e6, 2) == 1.61  # the gap documented in network_rnan


def _wn(prefix):
    return [f"{prefix}.weight_g", f"{prefix}.weight_v", f"{prefix}.bias"]


def _wb(prefix):
    return [f"{prefix}.weight", f"{prefix}.bias"]


def _official_rnan_keys(n_resgroups, scale):
    """The key names of yulunzhang/RNAN SR/code/model/rnan.py, written out by hand."""
    def resblock(p):
        return _wb(f"{p}.body.0") + _wb(f"{p}.body.2")

    def group(p, non_local):
        b, mb = f"{p}.body.0", f"{p}.body.0.RA_MB.0"
        keys = resblock(f"{b}.RA_RB1.0") + resblock(f"{b}.RA_TB.0.body.0")
        keys += resblock(f"{b}.RA_TB.0.body.1")
        if non_local:
            keys += [k for n in ("g", "W", "theta", "phi") for k in _wb(f"{mb}.MB_RB1.0.{n}")]
        keys += resblock(f"{mb}.MB_RB1.{int(non_local)}") + _wb(f"{mb}.MB_Down.0")
        keys += resblock(f"{mb}.MB_RB2.0") + resblock(f"{mb}.MB_RB2.1") + _wb(f"{mb}.MB_Up.0")
        keys += resblock(f"{mb}.MB_RB3.0") + _wb(f"{mb}.MB_1x1conv.0")
        keys += resblock(f"{b}.RA_tail.0") + resblock(f"{b}.RA_tail.1") + _wb(f"{p}.body.1")
        return keys

    keys = _wb("sub_mean") + _wb("add_mean") + _wb("head.0") + group("body_nl_low.0", True)
    for i in range(n_resgroups - 2):
        keys += group(f"body.{i}", False)
    keys += _wb(f"body.{n_resgroups - 2}") + group("body_nl_high.0", True)
    keys += _wb("tail.0.0") + (_wb("tail.0.2") if scale == 4 else []) + _wb("tail.1")
    return keys


def _official_divanet_keys(scale):
    """The key names of pbehjatii/DiVANet divanet.py (3 x 3 blocks, fixed), written out."""
    keys = _wb("sub_mean.shifter") + _wb("add_mean.shifter") + _wn("entry_1")
    for b in (1, 2, 3):
        for r in (1, 2, 3):
            p = f"b{b}.rb{r}"
            keys += _wn(f"{p}.body.0") + _wn(f"{p}.body.2") + _wn(f"{p}.body.3")
            keys += _wb(f"{p}.DiVA.conv_h") + _wb(f"{p}.DiVA.conv_w")
        keys += _wn(f"b{b}.reduction_1.conv") + _wn(f"b{b}.reduction_2.conv")
    keys += _wn("reduction_1.conv") + _wn("reduction_2.conv") + _wn("upsample.up.body.0")
    keys += (_wn("upsample.up.body.3") if scale == 4 else []) + _wn("exit1")
    return keys


@pytest.mark.parametrize("name, overrides, official_keys", [
    ("rnan", SMALL["rnan"], _official_rnan_keys(3, 4)),
    ("divanet", {}, _official_divanet_keys(4)),
])
def test_official_checkpoint_keys_load(tmp_path, name, overrides, official_keys):
    model = cclnn.build_model(name, 4, **overrides)
    _wake_nonlocal(model)
    ours = model.state_dict()
    renamed = list(rename_keys(dict.fromkeys(official_keys), ours, get_entry(name).key_renames))
    assert len(set(renamed)) == len(official_keys) and set(renamed) == set(ours)
    official = {k: ours[r] for k, r in zip(official_keys, renamed)}
    torch.save({"model_state_dict": official, "step": 1} if name == "divanet" else official,
               tmp_path / "official.pt")
    fresh = load_weights(cclnn.build_model(name, 4, **overrides), tmp_path / "official.pt")
    x = torch.rand(1, 3, 12, 10) * 255
    with torch.no_grad():
        assert torch.equal(model.eval()(x), fresh.eval()(x))


def test_config_errors():
    with pytest.raises(ConfigError, match="n_resgroups"):
        cclnn.build_model("rnan", 2, n_resgroups=1)
    with pytest.raises(ConfigError, match="channels"):
        cclnn.build_model("divanet", 2, channels=10)  # 4 upsampler groups


def test_rnan_nonlocal_in_key_chunks_equals_the_dense_official_form(monkeypatch):
    import cclnn.models.network_rnan as rnan
    block = NonLocalBlock(8)
    torch.nn.init.normal_(block.out.weight, std=0.1)
    x = torch.randn(2, 8, 9, 11, requires_grad=True)
    with torch.no_grad():  # the reference itself, against the official formula written out
        small = x[:1, :, :3, :4]
        theta, phi, g = (m(small).flatten(2)[0].T for m in (block.theta, block.phi, block.g))
        weights = torch.softmax(theta @ phi.T, dim=0)  # [query, key], normalised over queries
        y = torch.stack([sum(weights[q, k] * g[k] for k in range(12)) for q in range(12)])
        looped = small + block.out(y.T.reshape(1, 4, 3, 4))
        assert torch.allclose(block.dense_forward(small), looped, atol=1e-5)
    expected = block.dense_forward(x)
    (grad_expected,) = torch.autograd.grad(expected.square().sum(), x)
    monkeypatch.setattr(rnan, "KEY_CHUNK_ELEMENTS", 99 * 7)  # 7 keys a chunk: 15 chunks, last short
    got = block(x)
    (grad_got,) = torch.autograd.grad(got.square().sum(), x)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(grad_got, grad_expected, atol=1e-4)


def test_rnan_whole_images_run_in_tiles_like_the_official_chop():
    from cclnn.inference import super_resolve, tiled, image_to_tensor, tensor_to_image
    from cclnn.upscaling import _tile_for
    model = cclnn.build_model("rnan", 2, **SMALL["rnan"]).eval()
    assert model.info.max_tile == 128  # the real limit; a small one keeps the test fast:
    model.info = dataclasses.replace(model.info, max_tile=16)
    lr = (torch.rand(40, 37, 3) * 255).to(torch.uint8).numpy()
    with torch.no_grad():
        expected = tensor_to_image(tiled(model, image_to_tensor(lr), 2, 16, 16))
        whole = tensor_to_image(model(image_to_tensor(lr)))
    assert (super_resolve(model, lr, 2) == expected).all()  # default: the network's limit
    assert (super_resolve(model, lr, 2, tile=0) == whole).all()  # 0: the whole image
    assert _tile_for((600, 500), "auto", 2, model.info.max_tile) == 16
    assert _tile_for((600, 500), "auto", 2, None) == 512
    assert _tile_for((600, 500), 0, 2, model.info.max_tile) == 0
