"""Metrics against independent, brute-force computations."""
import math

import numpy as np
import pytest
import torch

from cclnn.metrics import psnr, psnr_batch, ssim, ssim_batch


def y_of(img):
    img = img.astype(np.float64)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return 16 + (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255


def brute_ssim(a, b):
    """Wang et al.'s formula with explicit loops over every 11x11 'valid' window."""
    x = np.arange(11) - 5
    g = np.exp(-(x ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va = (w * (pa - ma) ** 2).sum()
            vb = (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            values.append(((2 * ma * mb + c1) * (2 * cov + c2))
                          / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, size=(30, 34, 3), dtype=np.uint8)
    noise = rng.integers(-20, 21, size=hr.shape)
    sr = np.clip(hr.astype(int) + noise, 0, 255).astype(np.uint8)
    return hr, sr


def test_psnr_by_hand(pair):
    hr, sr = pair
    d = (y_of(hr) - y_of(sr))[2:-2, 2:-2]
    expected = 10 * math.log10(255 ** 2 / np.mean(d ** 2))
    assert psnr(hr, sr, 2) == pytest.approx(expected, abs=1e-10)


def test_ssim_brute_force(pair):
    hr, sr = pair
    expected = brute_ssim(y_of(hr)[3:-3, 3:-3], y_of(sr)[3:-3, 3:-3])
    assert ssim(hr, sr, 3) == pytest.approx(expected, abs=1e-10)


def test_identical_images(pair):
    hr, _ = pair
    assert math.isinf(psnr(hr, hr, 2))
    assert ssim(hr, hr, 2) == pytest.approx(1.0, abs=1e-12)


def test_grayscale_is_replicated(pair):
    hr, sr = pair
    g_hr, g_sr = hr[..., 0], sr[..., 0]
    rgb_hr = np.repeat(g_hr[..., None], 3, axis=2)
    rgb_sr = np.repeat(g_sr[..., None], 3, axis=2)
    assert psnr(g_hr, g_sr, 2) == psnr(rgb_hr, rgb_sr, 2)
    assert ssim(g_hr, g_sr, 2) == ssim(rgb_hr, rgb_sr, 2)


def test_border_shave(pair):
    hr, _ = pair
    sr = hr.copy()
    sr[:4] = 255 - sr[:4]  # damage only the top 4 rows
    assert math.isinf(psnr(hr, sr, 4))
    assert not math.isinf(psnr(hr, sr, 3))
    assert ssim(hr, sr, 2) < 1.0


def test_hr_is_cropped_to_sr_size(pair):
    hr, sr = pair
    assert psnr(hr, sr[:28, :32], 2) == psnr(hr[:28, :32], sr[:28, :32], 2)


def test_batched_versions_agree(pair):
    hr, sr = pair
    t_hr = torch.from_numpy(hr).permute(2, 0, 1)[None].float()
    t_sr = torch.from_numpy(sr).permute(2, 0, 1)[None].float() + 0.3  # rounds back
    both_hr = torch.cat([t_hr, t_hr])
    both_sr = torch.cat([t_sr, t_hr])
    p = psnr_batch(both_sr, both_hr, 2)
    assert p[0].item() == pytest.approx(psnr(hr, sr, 2), abs=1e-9) and math.isinf(p[1].item())
    assert ssim_batch(both_sr, both_hr, 2)[0].item() == pytest.approx(ssim(hr, sr, 2), abs=1e-9)
