import numpy as np
import torch

import cclnn
from cclnn.inference import self_ensemble, super_resolve, tiled


def test_tiled_equals_untiled_for_conv_net():
    model = cclnn.build_model("edsr-baseline", 2, n_resblocks=2, channels=16).eval()
    # receptive-field radius: 1 (head) + 2 x 2 (blocks) + 1 (body) + 1 (upsampler) + 1 (tail,
    # at HR) -> at most 8 LR pixels; an overlap of 16 keeps blended pixels 8 from tile borders
    x = torch.rand(1, 3, 45, 61) * 255
    with torch.no_grad():
        full = model(x)
        pieces = tiled(model, x, 2, tile=16, overlap=16)
    assert (full - pieces).abs().max().item() <= 1e-4
    with torch.no_grad():  # too little overlap is visibly different (the test can fail)
        rough = tiled(model, x, 2, tile=16, overlap=2)
    assert (full - rough).abs().max().item() > 1e-3


def test_tiled_blends_nonlocal_network_without_gaps():
    model = cclnn.build_model("nlsn", 3, channels=16, n_resblocks=0, chunk_size=16).eval()
    x = torch.rand(1, 3, 30, 41) * 255
    with torch.no_grad():
        out = tiled(model, x, 3, tile=12, overlap=6)
    assert out.shape == (1, 3, 90, 123) and torch.isfinite(out).all()


def test_self_ensemble_of_equivariant_op_is_identity():
    x = torch.rand(1, 3, 9, 7)
    out = self_ensemble(lambda t: torch.nn.functional.interpolate(t, scale_factor=2,
                                                                  mode="nearest"), x)
    assert torch.allclose(out, torch.nn.functional.interpolate(x, scale_factor=2))


def test_super_resolve_uint8():
    model = cclnn.build_model("edsr-baseline", 4, n_resblocks=1, channels=8)
    lr = np.random.default_rng(0).integers(0, 256, (11, 13, 3)).astype(np.uint8)
    a = super_resolve(model, lr, 4)
    b = super_resolve(model, lr, 4, tile=6, overlap=12)
    assert a.dtype == np.uint8 and a.shape == (44, 52, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    c = super_resolve(model, lr, 4, ensemble=True)
    assert c.shape == a.shape
