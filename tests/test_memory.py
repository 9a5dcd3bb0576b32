"""cclnn.memory: the counted working set of a forward pass, and how upscaling uses it to run
fewer tiles at once, or to refuse in one line, before memory runs out."""
import numpy as np
import pytest
import torch
from torch import nn

import cclnn
from cclnn.cli import main
from cclnn.errors import CclnnError
from cclnn.inference import super_resolve, tiles_in_memory
from cclnn.memory import (BOUND_FACTOR, MARGIN, forward_peak_bytes, largest_layer_bytes,
                          size_text, working_set)
from conftest import tiny_weights


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 3, 3, padding=1)).eval()


@pytest.mark.parametrize("side", [10, 31])
def test_the_count_is_the_peak_of_the_tensors_alive(side):
    # input 3 channels, conv 8, relu 8 (the conv's output is alive until relu returns),
    # then conv 3 while relu's output is alive: the peak is 3 + 8 + 8 floats per pixel
    assert forward_peak_bytes(small_net(), side) == 4 * (3 + 8 + 8) * side * side


def test_the_working_set_is_fitted_per_pixel_and_cached():
    net = small_net()
    assert largest_layer_bytes(net) == 4 * 8
    ws = working_set(net)
    assert (ws.fixed, ws.per_pixel) == (0.0, 4 * 19)
    assert ws.bytes(100, 50) == MARGIN * 4 * 19 * 100 * 50
    assert working_set(net) is ws  # measured once per module


def test_a_module_that_cannot_run_the_small_inputs_is_not_checked(monkeypatch):
    class Picky(nn.Module):
        def forward(self, x):
            if x.shape[-1] % 100:
                raise RuntimeError("sides must be multiples of 100")
            return x
    monkeypatch.setattr("cclnn.inference.available_memory", lambda: 10)
    assert working_set(Picky()) is None
    assert tiles_in_memory(Picky(), (100, 100), 3, 0, False, False, 2, "x", "y") == 3


def test_tiles_at_once_fit_the_memory_available(monkeypatch):
    net = small_net()
    one = working_set(net).bytes(40, 40)
    monkeypatch.setattr("cclnn.inference.available_memory", lambda: 10 * 2 ** 30)
    net = small_net()  # a fresh module: nothing measured yet
    assert tiles_in_memory(net, (40, 40), 4, 0, False, False, 2, "x", "y") == 4
    assert "working set" not in str(net.__dict__["_cclnn_memory"])  # the bound sufficed
    budget = 2 * one + one // 2
    assert BOUND_FACTOR * 4 * 8 * 40 * 40 * 4 > budget // 2  # so the working set is measured
    monkeypatch.setattr("cclnn.inference.available_memory", lambda: budget + 1000)
    assert tiles_in_memory(net, (40, 40), 4, 1000, False, False, 2, "x", "y") == 2
    monkeypatch.setattr("cclnn.inference.available_memory", lambda: one - 1)
    with pytest.raises(CclnnError) as refused:
        tiles_in_memory(net, (40, 40), 4, 0, False, False, 2, "one 40x40 tile",
                        "use a smaller --tile")
    assert str(refused.value) == (f"the network needs about {one / 1e6:.0f} MB for one 40x40 "
                                  f"tile; {(one - 1) / 1e6:.0f} MB are available (use a smaller "
                                  f"--tile)")
    assert size_text(2.345e9) == "2.3 GB" and size_text(-5) == "0 MB"


def test_fewer_tiles_at_once_give_the_same_output(monkeypatch):
    net = cclnn.build_model("srcnn", 2).eval()
    lr = np.random.default_rng(0).integers(0, 256, (40, 40, 3)).astype(np.uint8)
    monkeypatch.setattr("cclnn.inference.usable_threads", lambda n: 4)
    workers = []
    tiled_bands = cclnn.inference.tiled_bands
    monkeypatch.setattr("cclnn.inference.tiled_bands",
                        lambda *args, **kw: workers.append(args[8]) or tiled_bands(*args, **kw))
    free = super_resolve(net, lr, 2, tile=16, fast_cpu=True)
    window = min(40, 14 + 2 * 16)  # cores of 13-14 rows, 16 of context each side, clipped
    one = working_set(net, True).bytes(window, window)
    monkeypatch.setattr("cclnn.inference.available_memory", lambda: lr.nbytes * 4 + one + 1)
    short = super_resolve(net, lr, 2, tile=16, fast_cpu=True)
    assert workers == [4, 1] and np.array_equal(free, short)


def test_an_untiled_image_beyond_memory_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    from PIL import Image
    weights = tiny_weights(tmp_path / "srcnn_x2.safetensors", "srcnn", 2)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setattr("cclnn.inference.available_memory", lambda: 2 ** 20)
    code = main(["upscale", str(tmp_path / "a.png"), "--tile", "0", "--model", "srcnn",
                 "--weights", str(weights), "--device", "cpu"])
    _, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"cclnn upscale: error: {tmp_path / 'a.png'}: the network needs about ")
    assert "MB for the whole 64x64 image; 1 MB are available (give a --tile" in err
    assert not (tmp_path / "a_x2.png").exists()


@pytest.mark.parametrize("error, message", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
     "out of GPU memory (use a smaller --tile)"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't "
                  "allocate memory: you tried to allocate 4000000000 bytes."),
     "out of memory (use a smaller --tile, or fewer --threads)")])
def test_an_allocation_failure_is_one_line(error, message):
    class Exhausted(nn.Module):
        def forward(self, x):
            raise error
    with pytest.raises(CclnnError) as failed:
        super_resolve(Exhausted(), np.zeros((8, 8, 3), np.uint8), 2)
    assert str(failed.value) == message
    with pytest.raises(RuntimeError, match="other"):  # other errors are not renamed
        error = RuntimeError("other")
        super_resolve(Exhausted(), np.zeros((8, 8, 3), np.uint8), 2)


def test_measuring_leaves_the_global_random_state_alone():
    net = small_net()
    state = torch.get_rng_state()
    working_set(net), largest_layer_bytes(net)
    assert torch.equal(state, torch.get_rng_state())


def test_auto_tiles_shrink_until_one_fits(monkeypatch):
    from cclnn.upscaling import upscale_array
    net = cclnn.build_model("srcnn", 2).eval()
    rgb = np.random.default_rng(1).integers(0, 256, (100, 90, 3)).astype(np.uint8)
    whole = working_set(net, True).bytes(100, 90)
    quarter = working_set(net, True).bytes(25 + 32, 30 + 32)  # tiles of 32: 4 x 3 cores
    out_bytes = 200 * 180 * 3
    monkeypatch.setattr("cclnn.inference.available_memory", lambda: out_bytes + quarter + 1)
    assert whole > quarter + 1
    bars = []

    def tile_bar(total):
        bars.append([total, 0])
        return lambda: bars[-1].__setitem__(1, bars[-1][1] + 1)
    auto = upscale_array(rgb, net, 2, device="cpu", tile_bar=tile_bar)
    assert bars == [[12, 12]]  # whole -> 50 -> 32 (the least): one bar, every tile counted
    monkeypatch.setattr("cclnn.inference.available_memory", lambda: 10 ** 12)
    assert np.array_equal(auto, upscale_array(rgb, net, 2, device="cpu", tile=32))
    monkeypatch.setattr("cclnn.inference.available_memory", lambda: out_bytes + quarter + 1)
    with pytest.raises(CclnnError, match="use a smaller --tile"):  # a given tile is kept
        upscale_array(rgb, net, 2, device="cpu", tile=50)
