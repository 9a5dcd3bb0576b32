"""What a run validates on, and its scores: a benchmark (``val.dataset``) or a held-out part
of the training folders (``val.held_out``, never overlapping ``data.train``), with the
benchmark protocol's LR images; mean Y PSNR/SSIM over the images, split over the processes
under DDP and all-reduced."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from ..config import ConfigError
from ..data.benchmark import BenchmarkPair, BenchmarkSet, cached_bicubic_lr, resolve_benchmark
from ..data.images import read_image
from ..inference import super_resolve
from ..metrics import psnr, ssim
from ..resize import mod_crop
from .train_config import TrainConfig, expand_path
from .data import source_files


def validation_source(config: TrainConfig, scale: int) -> tuple[str, list]:
    """(name, one loader per validation pair), resolved when the run starts so that a
    missing dataset is an error then, not at the first validation."""
    v, s = config.val, scale
    if v.held_out is None:
        bench = BenchmarkSet(resolve_benchmark(v.dataset, v.data_root), s)
        loaders = [lambda i=i: bench.load(i) for i in range(len(bench))]
        name = bench.name
    else:
        files = source_files(v.held_out, "val.held_out")
        train = {p.resolve() for src in config.data.train for p in source_files(src)}
        shared = [p for p in files if p.resolve() in train]
        if shared:
            raise ConfigError(f"val.held_out: {len(shared)} image(s) also in data.train "
                              f"(e.g. {shared[0]}); leave them out with first/last")
        first = (v.held_out.first or 1)
        folder = expand_path(v.held_out.hr, "val.held_out.hr")
        name = f"{folder.name}[{first}-{first + len(files) - 1}]"
        loaders = [lambda p=p: held_out_pair(p, s) for p in files]
    return name, loaders[:v.max_images or len(loaders)]


def held_out_pair(path: Path, scale: int) -> BenchmarkPair:
    """A validation pair from a training-folder image: LR by the benchmark protocol."""
    hr = mod_crop(read_image(path), scale)
    return BenchmarkPair(path.stem, hr, cached_bicubic_lr(path, hr, scale))


class Validation:
    """A run's validation pairs: found when the run starts, loaded at the first validation."""

    def __init__(self, config: TrainConfig, scale: int):
        self.scale = scale
        self.name, self._loaders = validation_source(config, scale)
        self._pairs = None

    def pairs(self) -> list[BenchmarkPair]:
        if self._pairs is None:
            self._pairs = [load() for load in self._loaders]
        return self._pairs

    def scores(self, model: torch.nn.Module, device: torch.device, rank: int = 0,
               world: int = 1) -> tuple[float, float, int]:
        """(mean PSNR, mean SSIM, images) of ``model`` over every process's share of the
        pairs; ``model`` is left in training mode."""
        pairs = self.pairs()
        totals = torch.zeros(3, dtype=torch.float64)
        for pair in pairs[rank::world]:
            sr = super_resolve(model, pair.lr, self.scale, device=device)
            totals += torch.tensor([psnr(pair.hr, sr, self.scale), ssim(pair.hr, sr, self.scale), 1])
        model.train()
        if world > 1:
            totals = totals.to(device) if device.type == "cuda" else totals
            dist.all_reduce(totals)
            totals = totals.cpu()
        mean_psnr, mean_ssim = (totals[:2] / totals[2]).tolist()
        return mean_psnr, mean_ssim, int(totals[2])
