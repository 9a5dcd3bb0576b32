"""How much the auxiliary loss weighs in a trained CCLNN-S run (Tables 2-4 of the first study,
docs/experiments-first-study.md).

For each run folder given: its final weights on the first training batch of its own config
(``TrainPatches`` and ``EpochBatches``, epoch 0, the run's seed), ``l_rec`` and
``lambda * l_aux`` (the auxiliary loss from the run's config, weighted as the trainer weighs it:
lambda against l1 in the network's value range), and the norms of
their gradients on the CCA parameters, the only ones the auxiliary loss reaches; then, for
every run (also those without an auxiliary loss), how contrastive its CCA gates are.

    .venv/bin/python scripts/aux_gradient.py results/ablation/runs/cclnn-s_x2_b2000_s0 ...
"""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import cclnn
from cclnn.engine.train_config import load_config
from cclnn.engine.data import EpochBatches, TrainPatches
from cclnn.engine.trainer import aux_weight_on_255
from cclnn.losses import contrast_count, contrastive_loss
from cclnn.weights import load_weights


def first_batch(config):
    patches = TrainPatches(config.data, config.model.scale, config.seed)
    keys = next(iter(EpochBatches(len(patches), config.data.batch_size, config.seed, epoch=0)))
    lrs, hrs = zip(*(patches[k] for k in keys))
    return torch.stack(lrs), torch.stack(hrs)


def norm(grads) -> float:
    return float(torch.sqrt(sum((g ** 2).sum() for g in grads)))


def gate_summary(net, gates) -> str:
    """Per CCLN block: the contrastive loss of its CCA gates W (whatever loss the run trained
    with) and the mean of the k largest and k smallest gates, k = n * C."""
    parts = []
    for i, w in enumerate(gates):
        k = contrast_count(w.shape[1], net.contrast_ratio)
        ordered = w.sort(dim=1, descending=True).values
        loss = contrastive_loss(w, net.contrast_ratio, net.contrast_margin)
        parts.append(f"block {i}: contrastive {loss.item():.3f}, top-{k} "
                     f"{ordered[:, :k].mean():.3f}, bottom-{k} {ordered[:, -k:].mean():.3f}")
    return "; ".join(parts)


def main(runs) -> None:
    for run in map(Path, runs):
        config = load_config(run / "config.yaml")
        net = cclnn.build_model(config.model.name, config.model.scale, **config.model.options)
        load_weights(net, run / "final.safetensors")
        lr, hr = first_batch(config)
        cca = [p for name, p in net.named_parameters() if ".cca." in name]
        torch.manual_seed(config.seed)  # NLSA's hash rotations, drawn anew in training mode
        sr, gates = net(lr, return_aux=True)
        l_rec = F.l1_loss(sr, hr)
        l_aux = aux_weight_on_255(config.loss.aux_weight, net) * net.auxiliary_loss(gates)
        line = f"{run.name}: l_rec {l_rec.item():.3f}"
        if l_aux.requires_grad:  # a run with an auxiliary loss
            g_rec = norm(torch.autograd.grad(l_rec, cca, retain_graph=True))
            g_aux = norm(torch.autograd.grad(l_aux, cca))
            line += (f", lambda*l_aux {l_aux.item():.2e} ({l_aux.item() / l_rec.item():.1e} of "
                     f"l_rec); gradient norm on the CCA parameters: l_rec {g_rec:.3e}, "
                     f"lambda*l_aux {g_aux:.3e} (ratio {g_aux / g_rec:.1e})")
        print(line + "\n  gates " + gate_summary(net, [w.detach() for w in gates]))


if __name__ == "__main__":
    main(sys.argv[1:])
