import os

import numpy as np
import torch

import cclnn
from cclnn.inference import (flush_denormals, flushing_denormals, self_ensemble, super_resolve,
                             tiled)


def test_tiled_equals_untiled_for_conv_net():
    model = cclnn.build_model("edsr-baseline", 2, n_resblocks=2, channels=16).eval()
    # receptive-field radius: 1 (head) + 2 x 2 (blocks) + 1 (body) + 1 (upsampler) + 1 (tail,
    # at HR) -> at most 8 LR pixels; an overlap of 16 keeps blended pixels 8 from tile borders
    x = torch.rand(1, 3, 45, 61) * 255
    with torch.no_grad():
        full = model(x)
        pieces = tiled(model, x, 2, tile=16, overlap=16)
    assert (full - pieces).abs().max().item() <= 1e-4
    with torch.no_grad():  # too little overlap is visibly different (the test can fail)
        rough = tiled(model, x, 2, tile=16, overlap=2)
    assert (full - rough).abs().max().item() > 1e-3


def test_tiled_blends_nonlocal_network_without_gaps():
    model = cclnn.build_model("nlsn", 3, channels=16, n_resblocks=0, chunk_size=16).eval()
    x = torch.rand(1, 3, 30, 41) * 255
    with torch.no_grad():
        out = tiled(model, x, 3, tile=12, overlap=6)
    assert out.shape == (1, 3, 90, 123) and torch.isfinite(out).all()


def test_self_ensemble_of_equivariant_op_is_identity():
    x = torch.rand(1, 3, 9, 7)
    out = self_ensemble(lambda t: torch.nn.functional.interpolate(t, scale_factor=2,
                                                                  mode="nearest"), x)
    assert torch.allclose(out, torch.nn.functional.interpolate(x, scale_factor=2))


def test_super_resolve_uint8():
    model = cclnn.build_model("edsr-baseline", 4, n_resblocks=1, channels=8)
    lr = np.random.default_rng(0).integers(0, 256, (11, 13, 3)).astype(np.uint8)
    a = super_resolve(model, lr, 4)
    b = super_resolve(model, lr, 4, tile=6, overlap=12)
    assert a.dtype == np.uint8 and a.shape == (44, 52, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    c = super_resolve(model, lr, 4, ensemble=True)
    assert c.shape == a.shape


def _threaded_tiles(threads: int, **options) -> np.ndarray:
    from cclnn.models.registry import build_model
    torch.manual_seed(0)
    model = build_model("cclnn-t", 2, channels=16, n_resblocks=2).eval()
    lr = np.random.default_rng(0).integers(0, 256, (70, 50, 3), np.uint8)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = super_resolve(model, lr, 2, tile=24, overlap=8, **options)
        assert torch.get_num_threads() == threads  # restored after the tile workers
        return out
    finally:
        torch.set_num_threads(previous)


def test_fast_cpu_output_does_not_depend_on_threads():
    one, two, three = (_threaded_tiles(t, fast_cpu=True) for t in (1, 2, 3))
    assert np.array_equal(one, two) and np.array_equal(one, three)



def test_fast_cpu_changes_rounding_only_for_a_convolutional_network():
    """Channels-last and the one-shape tiles change a convolutional network's output by float
    rounding only (its receptive field is within the overlap): at most one grey level."""
    from cclnn.models.registry import build_model
    torch.manual_seed(0)
    model = build_model("edsr-baseline", 2, channels=16, n_resblocks=1).eval()
    lr = np.random.default_rng(0).integers(0, 256, (70, 50, 3), np.uint8)
    whole = super_resolve(model, lr, 2, tile=0)
    fast = super_resolve(model, lr, 2, tile=24, overlap=16, fast_cpu=True)
    diff = np.abs(whole.astype(int) - fast)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_tile_workers_yield_in_order_with_bounded_lookahead():
    from cclnn.inference import _tile_outputs
    running, peak = [0], [0]
    import threading
    lock = threading.Lock()

    def net(x):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        y = x * 2
        with lock:
            running[0] -= 1
        return y
    boxes = [(i, i + 1, 0, 1) for i in range(7)]
    crop = lambda y0, y1, x0, x1: torch.full((1,), float(y0))  # noqa: E731
    outputs = [t.item() for t in _tile_outputs(net, crop, boxes, workers=3)]
    assert outputs == [2.0 * i for i in range(7)]
    assert peak[0] <= 3


def test_covered_seconds_of_overlapping_spans():
    from cclnn.speed import _covered
    assert _covered([]) == 0
    assert _covered([(0, 2), (1, 3), (5, 6)]) == 4
    assert _covered([(0, 10), (2, 3)]) == 10


def test_freed_memory_is_reused_without_page_faults():
    """After keep_freed_memory, repeated forward passes reuse the heap (glibc): at most a
    region or two is mapped afresh, against every activation mapped and faulted in anew
    (36 MB each here) without it."""
    import subprocess
    import sys
    code = """
import resource, sys, torch
torch.set_num_threads(1)
from cclnn.cpu import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(),
                          torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.Conv2d(64, 3, 3))
x = torch.rand(1, 3, 384, 384)
with torch.inference_mode():
    net(x), net(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        net(x)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    counts = {}
    for mode in ("keep", "default"):
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True,
                             check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        counts[mode] = int(out.stdout.split()[-1])
    assert counts["default"] > 5 * 2 * 9216  # two 36 MB activations of 9216 pages a pass
    assert counts["keep"] < counts["default"] / 10


def test_idle_cores_and_usable_threads():
    from cclnn import cpu as inference
    ncpu = os.cpu_count()
    cores = len(os.sched_getaffinity(0))
    samples = iter([(1000, 4000, 0), (1100, 4200, 0)])  # half of every CPU idle
    assert inference.idle_cores(0, lambda: next(samples)) == min(cores, ncpu / 2)
    samples = iter([(1000, 4000, 0), (1000, 4200, 50)])  # none idle, a quarter was ours
    assert inference.idle_cores(0, lambda: next(samples)) == min(cores, ncpu / 4)
    # the default reader: the first call samples, later ones measure since the last call
    assert 0 <= inference.idle_cores(0.05) <= cores
    assert 0 <= inference.idle_cores() <= cores
    assert inference.idle_cores(0, lambda: None) == cores  # unreadable: all of them
    assert inference.usable_threads(1) == 1
    assert 1 <= inference.usable_threads(64) <= cores


class _RecordsFlushMode(torch.nn.Module):
    """An x2 nearest upscaler that records whether subnormals were flushed in its forward."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))
        self.modes = []

    def forward(self, x):
        self.modes.append(flushing_denormals())
        return torch.nn.functional.interpolate(x, scale_factor=2) * self.weight


def test_inference_flushes_subnormals_and_leaves_the_threads_mode_as_it_was():
    model = _RecordsFlushMode()
    lr = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    assert not flushing_denormals()
    sr = super_resolve(model, lr, 2)
    assert model.modes[-1] and not flushing_denormals()  # (before it: the memory probe)
    assert np.array_equal(sr, lr.repeat(2, 0).repeat(2, 1))
    torch.set_flush_denormal(True)  # a caller's own setting is kept
    try:
        with flush_denormals():
            assert flushing_denormals()
        assert flushing_denormals()
    finally:
        torch.set_flush_denormal(False)
    assert torch.tensor([1e-39]).mul(2.0).item() > 0  # IEEE subnormals outside inference
