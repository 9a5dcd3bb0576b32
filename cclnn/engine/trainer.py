"""The training loop: the paper's protocol on one CPU, one GPU or many (torchrun + DDP).

Objective (SPEC section 2): ``l_rec = L1(SR, HR)`` on [0, 255] values (EDSR-PyTorch's scale),
plus ``lambda * model.auxiliary_loss(W)`` after ``loss.warmup_epochs`` for networks that have
one. Adam, learning rate multiplied by ``lr_gamma`` every ``lr_step_epochs`` epochs.

A run directory (``out_dir/name``) holds ``config.yaml`` (resolved), ``train_log.csv``,
``val_log.csv``, ``latest.pt`` (everything needed to resume: model, optimizer, scheduler,
EMA, grad scaler, RNG states, position) and ``best.pt`` (weights of the best validation PSNR).
Checkpoints are written atomically and only with finite weights (a NaN/Inf loss stops the
run, naming the last checkpoint to resume from); ``--resume`` continues from ``latest.pt``
and, with ``deterministic: true`` on CPU, reproduces the losses of an uninterrupted run
exactly (the data order and augmentations are a function of the seed and position).

Under ``torchrun`` (``WORLD_SIZE`` > 1) each process takes its slice of every global batch,
gradients are averaged by DistributedDataParallel, validation images are split over the
processes and the sums all-reduced, and only rank 0 writes logs and checkpoints.

Signals and fault injection: ``engine/processes.py``; the run folder's lock: ``rundir.py``;
checkpoints: ``checkpoint.py``; logs: ``logs.py``.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from ..config import config_to_dict
from ..inference import describe_device, resolve_device
from ..models.common import RGB_RANGE, value_range
from ..models.descriptor import describe
from ..models.registry import build_model
from ..weights import load_matching_weights
from .checkpoint import (BEST, CHECKPOINT_FORMAT, LATEST, CheckpointError, finite_weights,
                         load_training_state, write_checkpoint)
from .train_config import TrainConfig, config_from_dict, dump_config, expand_path
from .data import EpochBatches, TrainPatches
from .ema import ExponentialMovingAverage
from .logs import TRAIN_LOG, VAL_LOG, append_row, tensorboard_writer, train_row, val_row
from .processes import (StopRequest, TrainingError, TrainingInterrupted, diverged, fault,
                        join_process_group, launch, process_device)
from .rundir import RunLock, claim_run_dir, resume_config, rewind_run, start_run
from .validation import Validation


@dataclass
class StepTimes:
    data: float
    compute: float


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
        self.world, local_rank = launch()
        self.device = process_device(resolve_device(config.device), self.world, local_rank)
        self.rank = join_process_group(self.device) if self.world > 1 else 0
        self.run_dir = (Path(run_dir) if run_dir
                        else expand_path(config.out_dir, "out_dir") / config.name)
        self._seed_everything(config.seed, config.deterministic)

        c = config
        self.scale = c.model.scale
        self.model = build_model(c.model.name, c.model.scale, **dict(c.model.options))
        if c.model.init_weights and not resume:
            kept = load_matching_weights(self.model, expand_path(c.model.init_weights,
                                                                 "model.init_weights"))
            if self.is_main and kept:
                print(f"init_weights: kept the model's own values for {len(kept)} tensor(s) "
                      f"({', '.join(kept[:4])}{' ...' if len(kept) > 4 else ''})")
        self.model.to(self.device)
        if c.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.has_aux = describe(self.model).has_aux_loss
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
        self.validation = Validation(c, self.scale)  # checked before training
        if c.val.every:
            self.validation.pairs()  # an unreadable image is an error now, not mid-run
        self.times: list[StepTimes] = []
        self._elapsed_before = 0.0  # wall seconds of earlier processes of this run (resume)
        self._started = time.perf_counter()
        self.devices = [describe_device(self.device)]  # every device the run trained on, in order
        self.last_good: int | None = None  # iteration of the latest.pt known to be finite
        self._lock: RunLock | None = claim_run_dir(self.run_dir, resume) if self.is_main else None
        try:
            if resume:
                self._load_latest()
            elif self.is_main:
                start_run(self.run_dir, dump_config(self.config))
            self.tensorboard = tensorboard_writer(self.run_dir) if self.is_main else None
        except BaseException:
            self.close()
            raise

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

    def close(self) -> None:
        """Release the run folder (done by :meth:`train` when it ends)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

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
        """``latest.pt`` at this iteration; weights that are not finite are never saved (the
        run stops, naming the last checkpoint that is)."""
        if not finite_weights(self.model, self.ema.model if self.ema else None):
            raise self._diverged(f"non-finite weights at iteration {self.iteration}")
        if self.is_main:
            write_checkpoint(self._state(), self.run_dir / LATEST,
                             lambda: fault("checkpoint", self.iteration))
        self.last_good = self.iteration
        if self.world > 1:
            dist.barrier()

    def _diverged(self, what: str) -> TrainingError:
        c = self.config.optim
        return diverged(what, self.run_dir / LATEST, self.last_good, c.lr, c.grad_clip)

    def _load_latest(self) -> None:
        path = self.run_dir / LATEST
        if not path.is_file():
            raise TrainingError(f"{self.run_dir}: no latest.pt to resume from")
        try:
            state = load_training_state(path)
        except CheckpointError as exc:
            raise TrainingError(str(exc)) from None
        self.model.load_state_dict(state["model"])
        if self.ema and state["ema"] is not None:
            self.ema.model.load_state_dict(state["ema"])
        if not finite_weights(self.model, self.ema.model if self.ema else None):
            raise TrainingError(f"{path}: holds non-finite weights (a run that diverged); "
                                f"start a new run with a lower optim.lr")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.iteration = self.last_good = state["iteration"]
        self._apply_optim_config()
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.best_psnr = state["best_psnr"]
        self.best_iteration = state["best_iteration"]
        self._elapsed_before = state.get("elapsed_seconds", 0.0)
        earlier = list(state.get("devices", []))  # absent in checkpoints made before it was kept
        self.devices = earlier + [d for d in self.devices if earlier[-1:] != [d]]
        if self.is_main:
            rewind_run(self.run_dir, self.iteration, dump_config(self.config))

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
            raise self._diverged(f"non-finite loss at iteration {self.iteration + 1}")
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
        try:
            with StopRequest() as stop:
                return self._train(stop)
        finally:
            self.close()

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
                fault("iteration", self.iteration + 1)
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
    def validate(self) -> dict:
        """Mean Y PSNR/SSIM (the evaluation protocol) of the EMA or raw weights."""
        name = self.validation.name
        model = self.ema.model if self.ema else self.model
        mean_psnr, mean_ssim, images = self.validation.scores(model, self.device, self.rank,
                                                              self.world)
        epoch = (self.iteration - 1) // self.iters_per_epoch
        self._log(VAL_LOG, val_row(self.iteration, epoch, name, mean_psnr, mean_ssim, images))
        if self.tensorboard:
            self.tensorboard.add_scalar(f"val/{name}_psnr", mean_psnr, self.iteration)
            self.tensorboard.add_scalar(f"val/{name}_ssim", mean_ssim, self.iteration)
        if mean_psnr > self.best_psnr and finite_weights(model):  # never a diverged best.pt
            self.best_psnr, self.best_iteration = mean_psnr, self.iteration
            if self.is_main:
                write_checkpoint({"model": model.state_dict(), "iteration": self.iteration,
                                  "psnr": mean_psnr, "ssim": mean_ssim, "dataset": name,
                                  "config": config_to_dict(self.config)},
                                 self.run_dir / BEST)
        return {"dataset": name, "psnr": mean_psnr, "ssim": mean_ssim,
                "iteration": self.iteration}


__all__ = ["Trainer", "TrainingError", "config_from_dict", "resume_config"]
