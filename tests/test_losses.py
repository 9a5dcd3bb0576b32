import math

import pytest
import torch

from cclnn.losses import contrast_count, contrastive_loss, sparsity_loss


def test_contrastive_loss_by_hand():
    w = torch.tensor([[0.9, 0.1, 0.5, 0.3]])
    # n = 25 %: k = 1; pos = e^0.9, neg = e^0.1 -> -log(e^0.8) + 1 = 0.2
    assert contrastive_loss(w, 0.25).item() == pytest.approx(0.2, abs=1e-6)
    w2 = torch.tensor([[0.6, 0.2, 0.6, 0.4]])
    # n = 50 %: k = 2; pos = e^0.6, neg = (e^0.4 + e^0.2) / 2
    expected2 = -math.log(math.exp(0.6) / ((math.exp(0.4) + math.exp(0.2)) / 2)) + 1
    assert contrastive_loss(w2, 0.5).item() == pytest.approx(expected2, abs=1e-6)
    both = torch.cat([w, torch.tensor([[0.6, 0.2, 0.6, 0.4]])])
    # batch mean; k = 1 for both at 25 %: second is -log(e^0.6/e^0.2) + 1 = 0.6
    assert contrastive_loss(both, 0.25).item() == pytest.approx((0.2 + 0.6) / 2, abs=1e-6)
    # relu: a margin smaller than the gap gives 0
    assert contrastive_loss(w, 0.25, margin=0.5).item() == 0.0


def test_contrastive_loss_gradient_separates_weights():
    w = torch.tensor([[0.9, 0.1, 0.5, 0.3]], requires_grad=True)
    contrastive_loss(w, 0.25).backward()
    assert w.grad[0, 0] < 0 and w.grad[0, 1] > 0  # raise the top, lower the bottom
    assert w.grad[0, 2] == 0 and w.grad[0, 3] == 0


def test_contrast_count():
    assert contrast_count(256, 0.15) == 38
    assert contrast_count(256, 0.10) == 26  # 25.6 -> 26
    assert contrast_count(10, 0.05) == 1  # 0.5 rounds half up
    assert contrast_count(4, 0.01) == 1  # at least one


def test_sparsity_loss_by_hand():
    w = torch.tensor([[0.9, 0.1], [0.5, 0.3]])
    assert sparsity_loss(w).item() == pytest.approx(0.45)
