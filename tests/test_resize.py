import numpy as np
import pytest
import torch

from cclnn.assets import set5_hr, set5_lr
from cclnn.data.images import read_image
from cclnn.resize import imresize, resize_tensor

NAMES = ["baby", "bird", "butterfly", "head", "woman"]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bit_exact_against_matlab_set5(scale):
    for name in NAMES:
        hr = read_image(set5_hr(name))
        h, w = hr.shape[:2]
        hr = hr[: h - h % scale, : w - w % scale]
        assert np.array_equal(imresize(hr, 1 / scale), read_image(set5_lr(name, scale))), name


def test_float_and_tensor_paths_agree():
    hr = read_image(set5_hr("bird"))[:64, :48]
    f = imresize(hr.astype(np.float64), 0.5)
    t = imresize(torch.from_numpy(hr).permute(2, 0, 1)[None].double(), 0.5)[0].permute(1, 2, 0)
    assert np.allclose(f, t.numpy())
    u8 = imresize(torch.from_numpy(hr).permute(2, 0, 1).contiguous(), 0.5).permute(1, 2, 0)
    assert u8.dtype == torch.uint8 and np.array_equal(u8.numpy(), imresize(hr, 0.5))


def test_upscale_and_gradients():
    x = torch.rand(2, 3, 7, 9, requires_grad=True)
    y = resize_tensor(x, 3.0)
    assert y.shape == (2, 3, 21, 27)
    y.sum().backward()
    assert x.grad is not None
    # a constant image stays constant (weights sum to one, borders replicated)
    c = torch.full((1, 1, 5, 6), 7.0)
    assert torch.allclose(resize_tensor(c, 0.5), torch.full((1, 1, 3, 3), 7.0))
    assert torch.allclose(resize_tensor(c, 4.0), torch.full((1, 1, 20, 24), 7.0))


def test_grayscale_uint8():
    img = (np.arange(48, dtype=np.uint8) * 5).reshape(6, 8)
    out = imresize(img, 0.5)
    assert out.dtype == np.uint8 and out.shape == (3, 4)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bit_exact_against_shared_matlab_files(scale):
    from conftest import shared_path
    root = shared_path("data", "benchmark", "Set5")
    for name in NAMES:
        hr = read_image(root / "HR" / f"{name}.png")
        h, w = hr.shape[:2]
        lr = imresize(hr[: h - h % scale, : w - w % scale], 1 / scale)
        assert np.array_equal(lr, read_image(root / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png"))
