"""Training patches: random LR/HR patch pairs with the 8 dihedral augmentations.

Every random choice of a sample (which patch, which flip/rotation) comes from a generator
seeded with ``(seed, epoch, position in the epoch)``, and the order of an epoch from one seeded
with ``(seed, epoch)``. So a batch is a pure function of the run's seed and its place in the
schedule: resuming at step k of epoch e needs no saved data-loader state, worker processes do
not change the data, and DDP ranks each take their slice of the very same global batch.

Decoded images are kept in memory (``cache: memory``) or as ``.npy`` files opened with
``mmap`` (``cache: npy``, under ``$CCLNN_CACHE/train``; shared by DataLoader workers and
processes without copies), so the per-step cost is a crop and a flip. A damaged ``.npy``
file (unreadable, or not a uint8 pair of the scale) is remade from its image with a note.

Every image is decoded when the run starts, so an unreadable one is found then, not at
iteration 5000: it is skipped with a one-line note naming it, up to :func:`unreadable_limit`
(10 images, and a tenth of the selection); one more and the run refuses to start.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path, remove_stale_temps
from ..config import ConfigError
from ..data.benchmark import list_images
from ..data.images import ImageError, read_image
from ..data.layout import cache_root, lr_file_name
from ..resize import degrade, mod_crop
from .processes import TrainingError
from .train_config import DataConfig, ImageFolders, expand_path

MAX_UNREADABLE = 10  # training images a run may skip as unreadable


def _npy_paths(path: Path, scale: int) -> tuple[Path, Path]:
    """Cache files of one image, keyed by its path, size and modification time."""
    stat = path.stat()
    raw = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|x{scale}"
    key = hashlib.sha1(raw.encode()).hexdigest()[:24]
    folder = cache_root() / "train"
    return folder / f"{key}_hr.npy", folder / f"{key}_lr.npy"


def _save_npy(target: Path, array: np.ndarray) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            np.save(tmp, array)
    except OSError as exc:
        raise TrainingError(f"cannot write the cache file {target}: "
                            f"{(exc.strerror or str(exc)).lower()} (set CCLNN_CACHE to another "
                            f"folder, or data.cache: memory)") from None


def _cache_problem(hr: np.ndarray, lr: np.ndarray, scale: int) -> str | None:
    """Why a cached (HR, LR) pair cannot be what ``make_pair`` wrote, or None."""
    for name, array in (("HR", hr), ("LR", lr)):
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            return f"{name} array is {array.dtype} {array.shape}, not uint8 H x W x 3"
    if hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
        return f"HR {hr.shape[:2]} is not x{scale} LR {lr.shape[:2]}"
    return None


def _cached_pair(path: Path, scale: int, make_pair) -> tuple[np.ndarray, np.ndarray]:
    """The ``.npy`` cache of ``path``'s pair, made by ``make_pair`` when missing, and remade
    (with a one-line note) when a file of it cannot be read or does not hold such a pair;
    writes are atomic, so only a file damaged by hand or by the disk gets here."""
    hr_file, lr_file = _npy_paths(path, scale)
    if hr_file.is_file() and lr_file.is_file():
        try:
            pair = np.load(hr_file, mmap_mode="r"), np.load(lr_file, mmap_mode="r")
            problem = _cache_problem(*pair, scale)
        except (OSError, ValueError, EOFError) as exc:
            problem = " ".join(str(exc).split()) or type(exc).__name__
        if problem is None:
            return pair
        print(f"training data: remade the damaged cache of {path} in {hr_file.parent} "
              f"({problem})", file=sys.stderr)
    hr, lr = make_pair()
    _save_npy(hr_file, hr)
    _save_npy(lr_file, lr)
    return np.load(hr_file, mmap_mode="r"), np.load(lr_file, mmap_mode="r")


def unreadable_limit(images: int) -> int:
    """How many unreadable training images a run skips (with a note each) before it refuses
    to start: at most 10, and at most a tenth of the selected images (but always one)."""
    return min(MAX_UNREADABLE, max(1, images // 10))


def source_files(source: ImageFolders, key: str = "data.train") -> list[Path]:
    """The HR images a source selects (``key`` names the config option in errors)."""
    folder = expand_path(source.hr, f"{key}.hr")
    if not folder.is_dir():
        raise ConfigError(f"{key}: HR folder not found: {folder}")
    files, _ = list_images(folder)
    first = (source.first or 1) - 1
    last = source.last or len(files)
    files = files[first:last]
    if not files:
        raise ConfigError(f"{key}: no images selected in {folder}")
    return files


class TrainPatches(torch.utils.data.Dataset):
    """Samples of one epoch: ``len(images) * repeat``; items are keyed (epoch, position, i)."""

    def __init__(self, data: DataConfig, scale: int, seed: int):
        self.scale = scale
        self.patch = data.patch_size
        self.augment = data.augment
        self.repeat = data.repeat
        self.seed = seed
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self.names: list[str] = []
        selected = [(source, f"data.train[{i}]", path) for i, source in enumerate(data.train)
                    for path in source_files(source, f"data.train[{i}]")]
        limit = unreadable_limit(len(selected))
        if data.cache == "npy":
            remove_stale_temps(cache_root() / "train")  # of cache writers that were killed
        skipped, unreadable = [], []
        for source, key, path in selected:
            try:
                hr, lr = self._load(path, source, key, data.cache)
            except ImageError as exc:
                unreadable.append(exc)
                if len(unreadable) > limit:
                    raise ConfigError(f"data.train: more than {limit} of the {len(selected)} "
                                      f"images are unreadable, the last: {exc}") from None
                continue
            if min(lr.shape[:2]) < self.patch:
                skipped.append(path.name)
                continue
            self.pairs.append((hr, lr))
            self.names.append(str(path))
        for exc in unreadable:
            print(f"training data: skipped an unreadable image: {exc}", file=sys.stderr)
        if skipped:
            print(f"training data: skipped {len(skipped)} image(s) smaller than the "
                  f"{self.patch}x{self.patch} LR patch at x{scale}: {', '.join(skipped[:5])}"
                  + (" ..." if len(skipped) > 5 else ""), file=sys.stderr)
        if not self.pairs:
            raise ConfigError("data.train: no image is large enough for the patch size")

    def _load(self, path: Path, source: ImageFolders, key: str, cache: str):
        s = self.scale

        def make_pair() -> tuple[np.ndarray, np.ndarray]:
            hr = mod_crop(read_image(path), s)
            if not source.lr:
                return hr, degrade(hr, s)
            lr_path = (expand_path(source.lr.replace("{scale}", str(s)), f"{key}.lr")
                       / lr_file_name(path.stem, s, path.suffix))
            lr = read_image(lr_path)
            if (lr.shape[0] * s, lr.shape[1] * s) != hr.shape[:2]:
                raise ConfigError(f"{lr_path}: LR size does not match its HR image at x{s}")
            return hr, lr

        if cache == "memory":
            return make_pair()
        return _cached_pair(path, s, make_pair)

    def __len__(self) -> int:
        return len(self.pairs) * self.repeat

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, position, index = key
        rng = np.random.default_rng([self.seed, epoch, position])
        hr, lr = self.pairs[index % len(self.pairs)]
        p, s = self.patch, self.scale
        y = int(rng.integers(0, lr.shape[0] - p + 1))
        x = int(rng.integers(0, lr.shape[1] - p + 1))
        lr_patch = np.asarray(lr[y:y + p, x:x + p])
        hr_patch = np.asarray(hr[s * y:s * (y + p), s * x:s * (x + p)])
        if self.augment:
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            lr_patch, hr_patch = (dihedral(lr_patch, k, flip), dihedral(hr_patch, k, flip))
        return to_chw(lr_patch), to_chw(hr_patch)


def dihedral(img: np.ndarray, k: int, flip: bool) -> np.ndarray:
    img = img[:, ::-1] if flip else img
    return np.rot90(img, k, axes=(0, 1))


def to_chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()


class EpochBatches(torch.utils.data.Sampler):
    """Global batches of one epoch (a seeded permutation, last partial batch dropped), from
    ``start_step`` on; under DDP each rank yields its contiguous slice of every global batch."""

    def __init__(self, n_samples: int, batch_size: int, seed: int, epoch: int,
                 start_step: int = 0, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ConfigError(f"data.batch_size: {batch_size} is not divisible by the "
                              f"{world} processes")
        self.n_samples, self.batch_size = n_samples, batch_size
        self.seed, self.epoch, self.start_step = seed, epoch, start_step
        self.rank, self.world = rank, world

    def steps(self) -> int:
        return self.n_samples // self.batch_size

    def __len__(self) -> int:
        return max(0, self.steps() - self.start_step)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n_samples, generator=generator).tolist()
        local = self.batch_size // self.world
        for step in range(self.start_step, self.steps()):
            start = step * self.batch_size + self.rank * local
            yield [(self.epoch, pos, order[pos]) for pos in range(start, start + local)]
