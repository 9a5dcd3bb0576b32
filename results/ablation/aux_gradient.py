"""How much the auxiliary loss weighs in a trained CCLNN-S run (Tables 2-4, docs/experiments.md).

For each run folder given: the final weights on one batch of 16 training patches (32x32 LR,
the runs' patch size, drawn with a fixed seed from T91), ``l_rec`` and ``lambda * l_aux``
(lambda and the auxiliary loss from the run's config), and the norms of their gradients on
the CCA parameters, the only ones the auxiliary loss reaches.

    .venv/bin/python results/ablation/aux_gradient.py results/ablation/runs/cclnn-s_x2_b2000_s0 ...
"""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

import cclnn
from cclnn.resize import imresize
from cclnn.weights import load_weights


def training_batch(folder: str = "../shared/data/train/T91", count: int = 16, lr_size: int = 32):
    rng = np.random.default_rng(0)
    lrs, hrs = [], []
    for path in sorted(Path(folder).glob("*.png"))[:count]:
        hr = np.array(Image.open(path).convert("RGB"))
        hr = hr[:hr.shape[0] // 2 * 2, :hr.shape[1] // 2 * 2]
        lr = imresize(hr, 0.5)
        y, x = (int(rng.integers(0, n - lr_size)) for n in lr.shape[:2])
        lrs.append(lr[y:y + lr_size, x:x + lr_size])
        hrs.append(hr[2 * y:2 * (y + lr_size), 2 * x:2 * (x + lr_size)])
    as_tensor = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float()  # noqa: E731
    return as_tensor(lrs), as_tensor(hrs)


def norm(grads) -> float:
    return float(torch.sqrt(sum((g ** 2).sum() for g in grads)))


def main(runs) -> None:
    torch.manual_seed(0)
    lr, hr = training_batch()
    for run in map(Path, runs):
        config = yaml.safe_load((run / "config.yaml").read_text())
        net = cclnn.build_model(config["model"]["name"], 2, **config["model"]["options"])
        load_weights(net, run / "final.safetensors")
        weight = config["loss"]["aux_weight"]
        cca = [p for name, p in net.named_parameters() if ".cca." in name]
        sr, gates = net(lr, return_aux=True)
        l_rec, l_aux = F.l1_loss(sr, hr), weight * net.auxiliary_loss(gates)
        g_rec = norm(torch.autograd.grad(l_rec, cca, retain_graph=True))
        g_aux = norm(torch.autograd.grad(l_aux, cca))
        print(f"{run.name}: l_rec {l_rec.item():.3f}, lambda*l_aux {l_aux.item():.2e} "
              f"({l_aux.item() / l_rec.item():.1e} of l_rec); gradient norm on the CCA "
              f"parameters: l_rec {g_rec:.3e}, lambda*l_aux {g_aux:.3e} (ratio {g_aux / g_rec:.1e})")


if __name__ == "__main__":
    main(sys.argv[1:])
