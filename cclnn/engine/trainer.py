"""The training loop: the paper's protocol on one CPU, one GPU or many (torchrun + DDP).

Objective (SPEC section 2): ``l_rec = L1(SR, HR)`` on [0, 255] values (EDSR-PyTorch's scale),
plus ``lambda * model.auxiliary_loss(W)`` after ``loss.warmup_epochs`` for networks that have
one. Adam, learning rate multiplied by ``lr_gamma`` every ``lr_step_epochs`` epochs.

A run directory (``out_dir/name``) holds ``config.yaml`` (resolved), ``train_log.csv``,
``val_log.csv``, ``latest.pt`` (everything needed to resume: model, optimizer, scheduler,
EMA, grad scaler, RNG states, position) and ``best.pt`` (weights of the best validation PSNR).
Checkpoints are written to a temporary file and renamed, so a kill at any moment leaves the
previous one intact; ``--resume`` continues from ``latest.pt`` and, with ``deterministic:
true`` on CPU, reproduces the losses of an uninterrupted run exactly (the data order and
augmentations are a function of the seed and position, see ``engine/data.py``).

Under ``torchrun`` (``WORLD_SIZE`` > 1) each process takes its slice of every global batch,
gradients are averaged by DistributedDataParallel, validation images are split over the
processes and the sums all-reduced, and only rank 0 writes logs and checkpoints.

SIGINT (Ctrl-C) or SIGTERM (``kill``, a batch scheduler's time limit) stops a run cleanly: the
current step finishes, ``latest.pt`` is written at that iteration and ``TrainingInterrupted``
says how to resume, so no work since the last periodic checkpoint is lost. A second Ctrl-C
stops at once. Under DDP the ranks agree on the stop each step.

Fault injection for tests: ``CCLNN_FAULT=kill@iteration:N`` kills the process with SIGKILL
before iteration N, ``CCLNN_FAULT=kill@checkpoint:N`` after writing the temporary file of
the iteration-N checkpoint and before renaming it, ``CCLNN_FAULT=term@iteration:N`` sends it
SIGTERM before iteration N.
"""
from __future__ import annotations

import copy
import math
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from ..atomic import atomic_path, write_text_if_changed
from ..config import ConfigError, config_to_dict
from ..data.benchmark import BenchmarkPair, BenchmarkSet, cached_bicubic_lr, resolve_benchmark
from ..data.images import read_image
from ..errors import CclnnError
from ..inference import describe_device, resolve_device, super_resolve
from ..metrics import psnr, ssim
from ..models.common import RGB_RANGE, value_range
from ..models.registry import build_model
from ..resize import mod_crop
from ..weights import load_matching_weights
from .config import TrainConfig, config_from_dict, dump_config, expand_path
from .data import EpochBatches, TrainPatches, source_files
from .logs import (LOG_FIELDS, TRAIN_LOG, VAL_LOG, append_row, start_logs, train_row,
                   truncate_log, val_row)

CHECKPOINT_FORMAT = "cclnn-train-checkpoint/1"


class TrainingError(CclnnError):
    """The run cannot start or had to stop; the message says why and what was kept."""


class TrainingInterrupted(TrainingError):
    """SIGINT/SIGTERM stopped the run after a checkpoint; the CLI exits with status 130."""
    exit_code = 130


def _fault(kind: str, iteration: int) -> None:
    fault = os.environ.get("CCLNN_FAULT")
    if fault == f"kill@{kind}:{iteration}":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault == f"term@{kind}:{iteration}":
        os.kill(os.getpid(), signal.SIGTERM)


class StopRequest:
    """While active, SIGINT and SIGTERM set ``requested`` instead of killing the process
    (a second SIGINT raises KeyboardInterrupt at once). Only the main thread can catch
    signals; elsewhere this does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def atomic_torch_save(obj, path: Path, fault_iteration: int | None = None) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
        if fault_iteration is not None:
            _fault("checkpoint", fault_iteration)


@dataclass
class StepTimes:
    data: float
    compute: float


class ExponentialMovingAverage:
    """Shadow weights ``ema = d * ema + (1 - d) * w`` updated after every step."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1 - self.decay)


def aux_weight_on_255(aux_weight: float, model: torch.nn.Module) -> float:
    """lambda as it weighs l_aux against l_rec on [0, 255] values.

    The paper's lambda weighs l_aux against l1 in the network's own value range, as the official
    codes compute it (their ``--rgb_range``: 1 for NLSN); l_rec here is always on [0, 255],
    which is 255 / rgb_range times larger, so lambda is scaled by that.
    """
    return aux_weight * RGB_RANGE / value_range(model)


class Trainer:
    def __init__(self, config: TrainConfig, run_dir: Path | None = None, resume: bool = False,
                 progress: bool = True):
        self.config = config
        self.progress = progress
        self.world, local_rank = _launch()
        self.device = _process_device(resolve_device(config.device), self.world, local_rank)
        self.rank = _join_process_group(self.device) if self.world > 1 else 0
        self.run_dir = Path(run_dir) if run_dir else expand_path(config.out_dir) / config.name
        self._seed_everything(config.seed, config.deterministic)

        c = config
        self.scale = c.model.scale
        self.model = build_model(c.model.name, c.model.scale, **dict(c.model.options))
        if c.model.init_weights and not resume:
            kept = load_matching_weights(self.model, expand_path(c.model.init_weights))
            if self.is_main and kept:
                print(f"init_weights: kept the model's own values for {len(kept)} tensor(s) "
                      f"({', '.join(kept[:4])}{' ...' if len(kept) > 4 else ''})")
        self.model.to(self.device)
        if c.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.has_aux = hasattr(self.model, "auxiliary_loss")
        self.aux_weight = aux_weight_on_255(c.loss.aux_weight, self.model)
        self.net = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

        self.dataset = TrainPatches(c.data, self.scale, c.seed)
        self.iters_per_epoch = len(self.dataset) // c.data.batch_size
        if self.iters_per_epoch < 1:
            raise TrainingError(f"data.batch_size {c.data.batch_size} is larger than an epoch "
                                f"({len(self.dataset)} samples)")
        self.total_iterations = c.epochs * self.iters_per_epoch
        if c.max_iterations is not None:
            self.total_iterations = min(self.total_iterations, c.max_iterations)
        self.warmup_iterations = (c.loss.warmup_iterations if c.loss.warmup_iterations is not None
                                  else c.loss.warmup_epochs * self.iters_per_epoch)
        self.lr_step = max(1, c.optim.lr_step_iterations
                           or c.optim.lr_step_epochs * self.iters_per_epoch)

        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=c.optim.lr, betas=tuple(c.optim.betas),
                                          eps=c.optim.eps, weight_decay=c.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=self.lr_step, gamma=c.optim.lr_gamma)
        self.ema = (ExponentialMovingAverage(self.model, c.optim.ema_decay)
                    if c.optim.ema_decay else None)
        self.amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[c.amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=c.amp == "fp16")

        self.iteration = 0
        self.best_psnr = -math.inf
        self.best_iteration = 0
        self._val_name, self._val_loaders = self._validation_source()  # checked before training
        self._val_pairs = None
        self.times: list[StepTimes] = []
        self._elapsed_before = 0.0  # wall seconds of earlier processes of this run (resume)
        self._started = time.perf_counter()
        self.devices = [describe_device(self.device)]  # every device the run trained on, in order
        self.tensorboard = None
        if resume:
            self._load_latest()
        elif self.is_main:
            self._prepare_run_dir()
        if self.is_main:
            self.tensorboard = _tensorboard_writer(self.run_dir)

    # ----------------------------------------------------------------- set-up
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def _seed_everything(seed: int, deterministic: bool) -> None:
        # the same seed on every rank: NLSA's training-time rotations then agree across ranks
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    def _prepare_run_dir(self) -> None:
        if (self.run_dir / "latest.pt").exists():
            raise TrainingError(f"{self.run_dir} already holds a run; continue it with "
                                f"`cclnn train --resume {self.run_dir}` or choose another name=")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(dump_config(self.config))
        start_logs(self.run_dir)

    # ----------------------------------------------------------------- checkpoints
    def _state(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": CHECKPOINT_FORMAT,
            "iteration": self.iteration,
            "best_psnr": self.best_psnr,
            "best_iteration": self.best_iteration,
            "model": self.model.state_dict(),
            "ema": self.ema.model.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "elapsed_seconds": self.elapsed_seconds,
            "devices": self.devices,
            "config": config_to_dict(self.config),
        }

    @property
    def elapsed_seconds(self) -> float:
        """Wall time of the run so far, over all its processes (work redone after a resume
        counts once per process that did it)."""
        return self._elapsed_before + time.perf_counter() - self._started

    def _apply_optim_config(self) -> None:
        """After loading a checkpoint, the current config's optimiser settings and schedule
        win over the ones stored with the optimiser and scheduler states (which would
        otherwise silently ignore a --resume override such as optim.lr_step_epochs=4): the
        learning rate is set to the config's schedule at the checkpoint's iteration."""
        c = self.config.optim
        lr = c.lr * c.lr_gamma ** (self.iteration // self.lr_step)
        self.scheduler.step_size, self.scheduler.gamma = self.lr_step, c.lr_gamma
        self.scheduler.base_lrs = [c.lr] * len(self.optimizer.param_groups)
        self.scheduler._last_lr = [lr] * len(self.optimizer.param_groups)
        for group in self.optimizer.param_groups:
            group.update(lr=lr, initial_lr=c.lr, betas=tuple(c.betas), eps=c.eps,
                         weight_decay=c.weight_decay)

    def save_checkpoint(self) -> None:
        if self.is_main:
            atomic_torch_save(self._state(), self.run_dir / "latest.pt", self.iteration)
        if self.world > 1:
            dist.barrier()

    def _load_latest(self) -> None:
        path = self.run_dir / "latest.pt"
        if not path.is_file():
            raise TrainingError(f"{self.run_dir}: no latest.pt to resume from")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise TrainingError(f"{path}: not a cclnn training checkpoint")
        self.model.load_state_dict(state["model"])
        if self.ema and state["ema"] is not None:
            self.ema.model.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.iteration = state["iteration"]
        self._apply_optim_config()
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.best_psnr = state["best_psnr"]
        self.best_iteration = state["best_iteration"]
        self._elapsed_before = state.get("elapsed_seconds", 0.0)
        earlier = list(state.get("devices", []))  # absent in checkpoints made before it was kept
        self.devices = earlier + [d for d in self.devices if earlier[-1:] != [d]]
        if self.is_main:  # drop log rows written after this checkpoint
            for name in LOG_FIELDS:
                truncate_log(self.run_dir / name, self.iteration)
            # keep overrides given with --resume (e.g. epochs=20) for the next resume
            write_text_if_changed(self.run_dir / "config.yaml", dump_config(self.config))

    # ----------------------------------------------------------------- training
    def _log(self, name: str, row: list) -> None:
        if self.is_main:
            append_row(self.run_dir / name, row)

    def step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict:
        """One optimisation step on a batch; returns the loss parts (floats)."""
        c = self.config
        device_type = self.device.type
        with torch.autocast(device_type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            if self.has_aux:
                sr, weights = self.net(lr, return_aux=True)
            else:
                sr, weights = self.net(lr), None
            l_rec = F.l1_loss(sr.float(), hr)
            l_aux = self.model.auxiliary_loss(weights).float() if weights is not None else None
        use_aux = (l_aux is not None and self.aux_weight > 0
                   and self.iteration >= self.warmup_iterations)
        loss = l_rec + self.aux_weight * l_aux if use_aux else l_rec
        finite = torch.isfinite(loss.detach()).float()
        if self.world > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() < 1:
            raise TrainingError(
                f"non-finite loss at iteration {self.iteration + 1}; training stopped. The last "
                f"good checkpoint is {self.run_dir / 'latest.pt'} (lower optim.lr or set "
                f"optim.grad_clip, then resume)")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if c.optim.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with warnings.catch_warnings():
            # a step the fp16 scaler skipped (inf gradients while it calibrates its scale)
            # still counts as an iteration of the schedule, as in the logs and on resume
            warnings.filterwarnings(
                "ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            self.scheduler.step()
        if self.ema:
            self.ema.update(self.model)
        return {"loss": loss.item(), "l_rec": l_rec.item(),
                "l_aux": l_aux.item() if l_aux is not None else 0.0}

    def _batches(self):
        """(lr, hr) batches from the current position to the end of the run."""
        c = self.config
        while self.iteration < self.total_iterations:
            epoch, start = divmod(self.iteration, self.iters_per_epoch)
            sampler = EpochBatches(len(self.dataset), c.data.batch_size, c.seed, epoch, start,
                                   self.rank, self.world)
            loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=sampler,
                                                 num_workers=c.data.workers,
                                                 pin_memory=self.device.type == "cuda")
            for batch in loader:
                yield batch
                if self.iteration >= self.total_iterations:
                    return

    def train(self) -> dict:
        """Run to the end of the schedule; returns the last validation result (or {}).
        Raises ``TrainingInterrupted`` after saving a checkpoint on SIGINT/SIGTERM."""
        with StopRequest() as stop:
            return self._train(stop)

    def _stop_agreed(self, stop: StopRequest) -> bool:
        if self.world == 1:
            return stop.requested
        flag = torch.tensor([float(stop.requested)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _train(self, stop: StopRequest) -> dict:
        c = self.config
        last_val: dict = {}
        batches = self._batches()
        with tqdm(total=self.total_iterations, initial=self.iteration, unit="it",
                  disable=not (self.progress and self.is_main), dynamic_ncols=True) as bar:
            while self.iteration < self.total_iterations:
                _fault("iteration", self.iteration + 1)
                t0 = time.perf_counter()
                lr, hr = next(batches)
                lr, hr = self._to_device(lr), self._to_device(hr)
                t1 = time.perf_counter()
                parts = self.step(lr, hr)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                t2 = time.perf_counter()
                self.iteration += 1
                self.times.append(StepTimes(t1 - t0, t2 - t1))
                epoch = (self.iteration - 1) // self.iters_per_epoch
                if self.iteration % c.log_every == 0 or self.iteration == self.total_iterations:
                    self._log(TRAIN_LOG, train_row(self.iteration, epoch,
                                                   self.scheduler.get_last_lr()[0], parts,
                                                   t1 - t0, t2 - t1))
                if self.tensorboard and self.iteration % c.log_every == 0:
                    for key, value in parts.items():
                        self.tensorboard.add_scalar(f"train/{key}", value, self.iteration)
                bar.update(1)
                bar.set_postfix(loss=f"{parts['l_rec']:.3f}",
                                aux=f"{parts['l_aux']:.3f}" if self.has_aux else "-",
                                best=f"{self.best_psnr:.2f}" if self.best_iteration else "-")
                done = self.iteration == self.total_iterations
                if c.val.every and (self.iteration % c.val.every == 0 or done):
                    last_val = self.validate()
                interrupted = not done and self._stop_agreed(stop)
                if self.iteration % c.checkpoint_every == 0 or done or interrupted:
                    self.save_checkpoint()
                if interrupted:
                    raise TrainingInterrupted(
                        f"interrupted at iteration {self.iteration} of {self.total_iterations}; "
                        f"checkpoint saved, continue with: cclnn train --resume {self.run_dir}")
        if self.tensorboard:
            self.tensorboard.flush()
        return last_val

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.device, non_blocking=True)
        return t.contiguous(memory_format=torch.channels_last) if self.config.channels_last else t

    # ----------------------------------------------------------------- validation
    def _validation_source(self) -> tuple[str, list]:
        """(name, one loader per validation pair), resolved when the run starts so that a
        missing dataset is an error then, not at the first validation."""
        v, s = self.config.val, self.scale
        if v.held_out is None:
            bench = BenchmarkSet(resolve_benchmark(v.dataset, v.data_root), s)
            loaders = [lambda i=i: bench.load(i) for i in range(len(bench))]
            name = bench.name
        else:
            files = source_files(v.held_out, "val.held_out")
            train = {p.resolve() for src in self.config.data.train for p in source_files(src)}
            shared = [p for p in files if p.resolve() in train]
            if shared:
                raise ConfigError(f"val.held_out: {len(shared)} image(s) also in data.train "
                                  f"(e.g. {shared[0]}); leave them out with first/last")
            first = (v.held_out.first or 1)
            name = f"{expand_path(v.held_out.hr).name}[{first}-{first + len(files) - 1}]"
            loaders = [lambda p=p: held_out_pair(p, s) for p in files]
        return name, loaders[:v.max_images or len(loaders)]

    def _validation_pairs(self):
        if self._val_pairs is None:
            self._val_pairs = [load() for load in self._val_loaders]
        return self._val_name, self._val_pairs

    def validate(self) -> dict:
        """Mean Y PSNR/SSIM (the evaluation protocol) of the EMA or raw weights."""
        name, pairs = self._validation_pairs()
        model = self.ema.model if self.ema else self.model
        totals = torch.zeros(3, dtype=torch.float64)
        for pair in pairs[self.rank::self.world]:
            sr = super_resolve(model, pair.lr, self.scale, device=self.device)
            totals += torch.tensor([psnr(pair.hr, sr, self.scale), ssim(pair.hr, sr, self.scale), 1])
        model.train()
        if self.world > 1:
            totals = totals.to(self.device) if self.device.type == "cuda" else totals
            dist.all_reduce(totals)
            totals = totals.cpu()
        mean_psnr, mean_ssim = (totals[:2] / totals[2]).tolist()
        epoch = (self.iteration - 1) // self.iters_per_epoch
        self._log(VAL_LOG, val_row(self.iteration, epoch, name, mean_psnr, mean_ssim,
                                   int(totals[2])))
        if self.tensorboard:
            self.tensorboard.add_scalar(f"val/{name}_psnr", mean_psnr, self.iteration)
            self.tensorboard.add_scalar(f"val/{name}_ssim", mean_ssim, self.iteration)
        if mean_psnr > self.best_psnr:
            self.best_psnr, self.best_iteration = mean_psnr, self.iteration
            if self.is_main:
                atomic_torch_save({"model": model.state_dict(), "iteration": self.iteration,
                                   "psnr": mean_psnr, "ssim": mean_ssim, "dataset": name,
                                   "config": config_to_dict(self.config)},
                                  self.run_dir / "best.pt")
        return {"dataset": name, "psnr": mean_psnr, "ssim": mean_ssim,
                "iteration": self.iteration}


def held_out_pair(path: Path, scale: int) -> BenchmarkPair:
    """A validation pair from a training-folder image: LR by the benchmark protocol."""
    hr = mod_crop(read_image(path), scale)
    return BenchmarkPair(path.stem, hr, cached_bicubic_lr(path, hr, scale))


def _tensorboard_writer(run_dir: Path):
    """A TensorBoard writer under ``run_dir/tensorboard`` when tensorboard is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _launch() -> tuple[int, int]:
    """(world size, local rank) as torchrun sets them; (1, 0) for a plain process."""
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))


def _process_device(device: torch.device, world: int, local_rank: int) -> torch.device:
    """This process's device: under torchrun each process on a machine takes the GPU of its
    local rank, and one with no GPU left is refused before the process group waits on it."""
    if device.type != "cuda" or world <= 1:
        return device
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise TrainingError(f"process of local rank {local_rank}: this machine has {count} CUDA "
                            f"device(s); start at most {count} per machine (torchrun "
                            f"--nproc_per_node {count}), or set device: cpu")
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


def _join_process_group(device: torch.device) -> int:
    """This process's rank, after initialising the process group (once): NCCL for GPUs, gloo
    for the CPU (``device: cpu`` on a GPU machine too)."""
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank()


def resume_config(run_dir: Path, overrides: list[str] | None = None) -> TrainConfig:
    """The config stored in ``run_dir`` with ``key=value`` overrides (e.g. a longer run)."""
    from .config import load_config
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise TrainingError(f"{run_dir}: not a run directory (no config.yaml)")
    return load_config(path, overrides)


__all__ = ["Trainer", "TrainingError", "config_from_dict", "resume_config"]
