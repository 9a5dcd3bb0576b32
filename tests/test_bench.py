import json

import pytest
import torch

import cclnn
from cclnn.speed import bench_nlsa, bench_rnan_nonlocal, count_gflop


def test_gflop_count_of_srcnn_by_hand():
    model = cclnn.build_model("srcnn", 2)
    x = torch.rand(1, 3, 10, 12) * 255
    pixels = 20 * 24
    expected = 2 * pixels * (81 * 1 * 64 + 25 * 64 * 32 + 25 * 32 * 1) / 1e9
    assert count_gflop(model, x) == pytest.approx(expected)


def test_gflop_count_includes_attention():
    plain = cclnn.build_model("edsr", 2, channels=16, n_resblocks=8)
    attention = cclnn.build_model("nlsn", 2, channels=16, n_resblocks=8)  # 2 NLSA blocks
    x = torch.rand(1, 3, 20, 20)
    extra = count_gflop(attention, x) - count_gflop(plain, x)
    length, rounds, match, channels = 400, 4, 4, 16
    keys = 3 * 144  # own chunk and its two neighbours
    half_buckets = 1  # 400 // 144 = 2 buckets
    per_block = (2 * rounds * length * keys * (match + channels)  # scores and output
                 + 2 * length * match * rounds * half_buckets  # hashing
                 + 2 * length * (9 * channels * match + channels * channels))  # its two convs
    assert extra * 1e9 == pytest.approx(2 * per_block, rel=1e-9)


@pytest.mark.slow  # each path measured in a child process: ~15 s here
def test_bench_nlsa_small():
    r = bench_nlsa(channels=8, height=13, width=17, batch=2, backward=True, repeat=1)
    assert r["max_abs_diff"] <= 1e-5
    assert r["fast"]["seconds"] > 0 and r["reference"]["peak_mb"] > 0


@pytest.mark.slow  # each path measured in a child process: ~15 s here
def test_bench_rnan_nonlocal_small():
    r = bench_rnan_nonlocal(channels=8, height=12, width=10, batch=2, backward=True, repeat=1)
    assert r["paths"] == ["chunked", "dense"]
    assert 0 < r["max_abs_diff"] <= 1e-4  # a real, non-identity block: outputs are compared
    assert r["chunked"]["seconds"] > 0 and r["dense"]["peak_mb"] > 0


@pytest.mark.slow  # the upscale runs in a child process
def test_bench_upscale_counts_every_tile(tmp_path, capsys):
    """A 300x200 image at x4 is 2 x 1 tiles of at most 256: upscale's layout cuts it into two
    cores of 150 whose inputs are both 150 + 2 x 16 wide; the FLOPs are the network's on
    those two tiles, and the JSON has exactly the documented keys."""
    from cclnn.cli import main
    from conftest import tiny_weights
    weights = tiny_weights(tmp_path / "srcnn_x4.safetensors", "srcnn", 4)
    assert main(["bench", "upscale", "--size", "300", "200", "--scale", "4", "--weights",
                 str(weights), "--threads", "1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert sorted(r) == sorted(["seconds_per_mp", "gflops", "matmul_fraction", "user_seconds",
                                "system_seconds", "peak_mb", "network_seconds", "threads"])
    assert r["threads"] == 1 and r["peak_mb"] > 0 and r["network_seconds"] > 0
    net = cclnn.build_model("srcnn", 4)
    tiles = [torch.zeros(1, 3, 200, 182)] * 2  # 16 + 150 + 16, moved inwards at the borders
    gflop = sum(count_gflop(net, t) for t in tiles)
    wall = r["seconds_per_mp"] * 300 * 200 * 16 / 1e6
    assert r["gflops"] == pytest.approx(gflop / wall, rel=1e-6)


@pytest.mark.slow  # the upscale runs in a child process
def test_bench_upscale_tile_option_and_parallel_tiles(tmp_path, capsys):
    """--tile 100 on 300x200 at x4 makes 3 x 2 tiles; with two threads two run at once and
    the network's time is the span covered, never more than the wall time."""
    from cclnn.cli import main
    from cclnn.speed import bench_upscale
    from conftest import tiny_weights
    weights = tiny_weights(tmp_path / "srcnn_x4.safetensors", "srcnn", 4)
    r = bench_upscale(300, 200, 4, weights=str(weights), threads=2, tile=100)
    assert r["tiles"] == 6 and r["tile"] == 100 and r["threads"] == 2
    assert 0 < r["network_seconds"] <= r["wall_seconds"]
    with pytest.raises(SystemExit):
        main(["bench", "upscale", "--tile", "-3"])
    assert "--tile" in capsys.readouterr().err
