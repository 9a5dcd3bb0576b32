"""Shared test helpers: the CLI as a subprocess, tiny images, tiny weights files; the markers.

Markers (registered in pyproject.toml, strict): ``slow`` (subprocess trainings, DDP/torchrun,
full-size networks, anything over ~3 s: ``pytest -m "not slow"`` leaves them out) and ``gpu``
(needs CUDA: skipped automatically where ``torch.cuda.is_available()`` is false).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]  # the repository root
SHARED = Path(os.environ.get("CCLNN_SHARED", ROOT.parent / "shared"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marker gpu): no CUDA device here")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep the LR cache of the tests out of the user's ~/.cache."""
    os.environ["CCLNN_CACHE"] = str(tmp_path_factory.mktemp("cache"))


# ----------------------------------------------------------------------------- the CLI


def cli_env(extra: dict | None = None) -> dict:
    """The environment of a CLI subprocess: this checkout first on the path, one thread."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.update(extra or {})
    return env


def run_cli(args, env_extra: dict | None = None, check: bool = True,
            module: str = "cclnn") -> subprocess.CompletedProcess:
    """``python -m cclnn ARGS`` in the repository root; ``check``: a non-zero exit fails the
    test with the end of stderr."""
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                          text=True, env=cli_env(env_extra), cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


@pytest.fixture
def cli():
    """``run_cli`` for test files that take it as a fixture."""
    return run_cli


# ----------------------------------------------------------------------------- networks

FULL_SIZE = ("cclnn", "edsr", "nlsn", "rcan", "rnan")  # the papers' sizes: 9 M to 48 M parameters


def slow_if_full_size(names):
    """Parametrize values: the full-size networks among ``names`` marked ``slow`` (a real
    build allocates and initialises up to 48 M parameters; ``torch.device("meta")`` does not)."""
    return [pytest.param(n, marks=pytest.mark.slow) if n in FULL_SIZE else n for n in names]


# ----------------------------------------------------------------------------- tiny data


def tiny_image(height: int, width: int, rng=0, block: int = 1) -> np.ndarray:
    """A random uint8 RGB image of ``height x width`` values from ``rng`` (a seed or a
    ``numpy.random.Generator``, drawn in order), each value repeated ``block x block`` times:
    blocky images are learnable in a few iterations."""
    rng = np.random.default_rng(rng) if isinstance(rng, int) else rng
    img = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
    return np.kron(img, np.ones((block, block, 1), np.uint8)) if block > 1 else img


def tiny_weights(path, name: str = "srcnn", scale: int = 2, **options) -> Path:
    """A freshly initialised network saved as a safetensors weights file at ``path``."""
    import cclnn
    cclnn.save_weights(cclnn.build_model(name, scale, **options), path)
    return Path(path)


def tiny_image_folder(folder, count: int, height: int, width: int, rng, block: int = 1,
                      prefix: str = "img") -> Path:
    """``folder`` (made) holding ``count`` PNGs ``PREFIX0.png ...`` of :func:`tiny_image`."""
    from cclnn.data.images import write_image
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        write_image(folder / f"{prefix}{i}.png", tiny_image(height, width, rng, block=block))
    return folder
