"""``cclnn upscale`` hardening (issue 22): bounded memory and bit-identical tiles, checks before
work, no clobbering, idempotent re-runs, progress, metadata, the device."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

import cclnn
from cclnn.cli import main
from cclnn.inference import (_fade, image_to_tensor, super_resolve, tensor_to_image,
                             tile_spans)
from cclnn.upscaling import check_output_size, peak_bytes
from conftest import cli_env, tiny_weights


@pytest.fixture
def weights(tmp_path):
    return tiny_weights(tmp_path / "srcnn_x2.safetensors", "srcnn", 2)


def run(args, weights, capsys):
    code = main(["upscale", *map(str, args), "--model", "srcnn", "--weights", str(weights),
                 "--device", "cpu"])
    return code, *capsys.readouterr()


def picture(path, h=6, w=5, seed=0, **save):
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)
    Image.fromarray(img).save(path, **save)
    return path


# ------------------------------------------------------------- 1. memory, bit-identical tiles


def whole_image_accumulator(net, x, scale, tile, overlap, same_shape=False):
    """One float accumulator and weight map of the whole output, each tile's whole input
    window added (its zero weights too) in raster order of the tiles."""
    _, _, h, w = x.shape
    fade, out = overlap // 2, None
    weight_sum = torch.zeros(1, 1, h * scale, w * scale)
    for y0, y1, iy0, iy1 in tile_spans(h, tile, overlap, same_shape):
        wy = _fade((iy1 - iy0) * scale, y0 - iy0, y1 - iy0, scale, fade)
        for x0, x1, ix0, ix1 in tile_spans(w, tile, overlap, same_shape):
            wx = _fade((ix1 - ix0) * scale, x0 - ix0, x1 - ix0, scale, fade)
            sr = net(x[..., iy0:iy1, ix0:ix1]).float()
            if out is None:
                out = torch.zeros(1, sr.shape[1], h * scale, w * scale)
            weights = (wy[:, None] * wx[None, :]).float()
            region = (..., slice(iy0 * scale, iy1 * scale), slice(ix0 * scale, ix1 * scale))
            out[region] += sr * weights
            weight_sum[region] += weights
    return out.div_(weight_sum)


@pytest.mark.parametrize("size, tile, overlap", [(1000, 512, 16), (17, 5, 0), (8, 3, 3),
                                                 (11, 6, 12), (45, 16, 16)])
def test_tile_spans_cover_with_full_context_and_one_shape(size, tile, overlap):
    old = tile_spans(size, tile, overlap)
    assert [a[:2] for a in old] == [(a0, min(a0 + tile, size)) for a0 in range(0, size, tile)]
    spans = tile_spans(size, tile, overlap, same_shape=True)
    assert spans[0][0] == 0 and spans[-1][1] == size and len(spans) == -(-size // tile)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # cores tile the side
    assert len({i1 - i0 for _, _, i0, i1 in spans}) == 1  # one input length
    for a0, a1, i0, i1 in spans:
        assert a1 - a0 <= tile and 0 <= i0 <= a0 and a1 <= i1 <= size
        assert i0 <= max(0, a0 - overlap) and i1 >= min(size, a1 + overlap)


@pytest.mark.parametrize("scale, tile, overlap, size", [
    (2, 16, 16, (45, 61)), (3, 7, 4, (30, 41)), (4, 6, 12, (11, 13)), (2, 5, 0, (17, 9)),
    (2, 8, 3, (8, 33))])
def test_banded_tiles_are_bit_identical_to_the_whole_accumulator(scale, tile, overlap, size):
    model = cclnn.build_model("edsr-baseline", scale, n_resblocks=1, channels=8).eval()
    lr = np.random.default_rng(scale).integers(0, 256, (*size, 3)).astype(np.uint8)
    with torch.inference_mode():
        expected = tensor_to_image(whole_image_accumulator(model, image_to_tensor(lr), scale,
                                                           tile, overlap))
    assert np.array_equal(super_resolve(model, lr, scale, tile=tile, overlap=overlap), expected)
    # the layout of upscale's fast CPU path: even cores, one input shape, several workers
    from cclnn.inference import tiled_bands
    with torch.inference_mode():
        x = image_to_tensor(lr)
        expected = whole_image_accumulator(model, x, scale, tile, overlap, same_shape=True)
        crop = lambda y0, y1, x0, x1: x[..., y0:y1, x0:x1]  # noqa: E731
        bands = tiled_bands(model, crop, *size, scale, tile, overlap, workers=2,
                            same_shape=True)
        assert torch.equal(torch.cat(list(bands), 2), expected)


def test_ensemble_is_per_tile_and_untiled_ensemble_unchanged():
    model = cclnn.build_model("edsr-baseline", 2, n_resblocks=1, channels=8).eval()
    lr = np.random.default_rng(0).integers(0, 256, (20, 23, 3)).astype(np.uint8)
    whole = super_resolve(model, lr, 2, tile=0, ensemble=True)
    with torch.inference_mode():
        x = image_to_tensor(lr)
        expected = tensor_to_image(cclnn.inference.self_ensemble(model, x))
    assert np.array_equal(whole, expected)
    tiled = super_resolve(model, lr, 2, tile=8, overlap=16, ensemble=True)  # overlap > 2 x RF
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1


MEMORY_CHILD = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import torch
    from cclnn.inference import super_resolve
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    net = torch.nn.Upsample(scale_factor=4)  # a network that costs nothing to run
    out = super_resolve(net, np.zeros((1200, 1100, 3), np.uint8), 4, tile=128, overlap=8)
    print(out.shape)
""")


@pytest.mark.slow
def test_tiled_memory_is_one_band_plus_the_uint8_output():
    """A 4400 x 4800 x4 output: 63 MB as uint8, 250 MB per float copy (the whole-image
    accumulator, its weights and its rounding copy needed about 650 MB); under an
    address-space limit that leaves 450 MB above what importing torch takes, it completes."""
    base = subprocess.run([sys.executable, "-c", "import cclnn.inference\nprint(open("
                           "'/proc/self/status').read().split('VmPeak:')[1].split()[0])"],
                          env=cli_env(), capture_output=True, text=True, check=True)
    limit = int(base.stdout) * 1024 + 450 * 2**20
    child = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(limit)], env=cli_env(),
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-500:]
    assert child.stdout.strip() == "(4800, 4400, 3)"


def test_too_large_output_refused_from_the_header_before_the_network(tmp_path, capsys):
    from test_hardening_images import bomb
    bomb(tmp_path / "big.png", 9500)  # a 9500 x 9500 header, at x4: 38000 x 38000
    code = main(["upscale", str(tmp_path / "big.png"), "--scale", "4", "--weights",
                 str(tmp_path / "no-such-weights.safetensors")])  # never loaded
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err == (f"cclnn upscale: error: {tmp_path / 'big.png'}: 9500x9500 at x4 makes "
                   f"38000x38000 (1444 Mpx), over the limit of 268 Mpx (--max-output-pixels)\n")
    assert list(tmp_path.iterdir()) == [tmp_path / "big.png"]


def test_memory_refusal_and_limit_option(monkeypatch):
    check_output_size("a.png", 100, 100, 4, None)
    monkeypatch.setattr("cclnn.upscaling.available_memory", lambda: 10**6)
    with pytest.raises(cclnn.errors.CclnnError, match=r"a.png: 100x100 at x4 makes 400x400 "
                       r"\(0 Mpx\), needing about 0.0 GB of memory; 0.0 GB are available"):
        check_output_size("a.png", 100, 100, 4, None)
    assert peak_bytes(100, 100, 4) > 10**6
    with pytest.raises(cclnn.errors.CclnnError, match="over the limit of 0 Mpx"):
        cclnn.upscale(np.zeros((30, 30, 3), np.uint8), 2, model=cclnn.build_model("srcnn", 2),
                      max_output_pixels=3000)


# ------------------------------------------------------------- 3. outputs checked before work


def test_unwritable_output_found_before_the_network(tmp_path, capsys):
    picture(tmp_path / "a.png")
    (tmp_path / "file").write_text("a file, not a folder")
    code = main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "file" / "out.png"),
                 "--scale", "2", "--weights", str(tmp_path / "missing.safetensors")])  # not reached
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith(f"cclnn upscale: error: {tmp_path / 'file'}: cannot create the output "
                          f"folder (") and err.count("\n") == 1


def test_missing_output_folder_is_made(tmp_path, weights, capsys):
    picture(tmp_path / "a.png")
    code, out, _ = run([tmp_path / "a.png", "-o", tmp_path / "new" / "deep" / "b.png"], weights,
                       capsys)
    assert code == 0 and (tmp_path / "new" / "deep" / "b.png").is_file()


# ------------------------------------------------------------- 4. clobbering and races


def test_output_made_meanwhile_by_another_writer_is_kept(tmp_path, weights, capsys,
                                                         monkeypatch):
    picture(tmp_path / "a.png")
    import cclnn.upscaling as upscaling
    compute = upscaling.upscale_pixels

    def racing(*args, **options):
        (tmp_path / "a_x2.png").write_bytes(b"the other writer's")
        return compute(*args, **options)
    monkeypatch.setattr(upscaling, "upscale_pixels", racing)
    code, out, err = run([tmp_path / "a.png"], weights, capsys)
    assert code == 0 and out == "x2: upscaled 0, skipped 1, failed 0 (of 1 image(s))\n"
    assert err == (f"cclnn upscale: skipped: {tmp_path / 'a_x2.png'}: appeared while computing "
                   f"(another writer); left as it is\n")
    assert (tmp_path / "a_x2.png").read_bytes() == b"the other writer's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_x2.png", weights.name]


def test_an_input_is_never_an_output(tmp_path, weights, capsys):
    picture(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    code, out, err = run([tmp_path / "a.png", "-o", tmp_path / "a.png", "--overwrite"], weights,
                         capsys)
    assert (code, out) == (2, "")
    assert err == (f"cclnn upscale: error: {tmp_path / 'a.png'}: is an input of this command, "
                   f"and would be the output of {tmp_path / 'a.png'}\n")
    assert (tmp_path / "a.png").read_bytes() == before


def test_overwrite_in_a_folder_with_earlier_outputs(tmp_path, weights, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    picture(folder / "a.png")
    picture(folder / "a_x2.png", 12, 10, seed=5)
    code, out, err = run([folder, "--overwrite"], weights, capsys)
    assert (code, err) == (0, "")
    assert out == f"{folder / 'a.png'} -> {folder / 'a_x2.png'}\n"
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x2.png"]
    with Image.open(folder / "a_x2.png") as im:  # the output of a.png, not a_x2.png's input
        assert im.size == (10, 12)


# ------------------------------------------------------------- 5. re-runs


def test_folder_run_twice_skips_and_never_upscales_its_outputs(tmp_path, weights, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    picture(folder / "a.png")
    picture(folder / "b.png", seed=1)
    assert run([folder], weights, capsys)[0] == 0
    made = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, out, err = run([folder], weights, capsys)
    assert code == 0 and out == "x2: upscaled 0, skipped 2, failed 0 (of 2 image(s))\n"
    assert err.splitlines() == [f"cclnn upscale: skipped: {folder / n}: exists (use "
                                f"--overwrite to replace it)" for n in ("a_x2.png", "b_x2.png")]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == made  # no a_x2_x2.png


def test_interrupted_run_resumes_with_out_folder(tmp_path, weights, capsys):
    for i in range(3):
        picture(tmp_path / f"p{i}.png", seed=i)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert run([tmp_path / "p0.png", "-o", out_dir / "p0_x2.png"], weights, capsys)[0] == 0
    (out_dir / ".p1_x2.999999999.tmp.png").write_bytes(b"half")  # a SIGKILLed writer's
    code, out, err = run([tmp_path / "p*.png", "-o", out_dir], weights, capsys)
    assert code == 0 and out.splitlines()[-1] == "x2: upscaled 2, skipped 1, failed 0 (of 3 " \
                                                 "image(s))"
    assert err.splitlines() == [f"cclnn upscale: skipped: {out_dir / 'p0_x2.png'}: exists "
                                f"(use --overwrite to replace it)"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["p0_x2.png", "p1_x2.png", "p2_x2.png"]


def test_one_output_file_for_several_inputs_is_refused(tmp_path, weights, capsys):
    picture(tmp_path / "a.png")
    picture(tmp_path / "b.png")
    code, out, err = run([tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "x.png"],
                         weights, capsys)
    assert (code, out) == (2, "")
    assert err == (f"cclnn upscale: error: -o {tmp_path / 'x.png'}: several inputs need an "
                   f"output folder, not a file\n")
    assert not (tmp_path / "x.png").exists()


def test_an_output_name_of_another_format_is_refused_and_a_slash_makes_it_a_folder(
        tmp_path, weights, capsys):
    picture(tmp_path / "a.png")
    code, out, err = run([tmp_path / "a.png", "-o", tmp_path / "a.txt"], weights, capsys)
    assert (code, out) == (2, "") and len(err.splitlines()) == 1
    assert err.startswith(f"cclnn upscale: error: -o {tmp_path / 'a.txt'}: .txt is not an "
                          f"image format cclnn writes (.bmp .jpeg .jpg ")
    assert err.endswith(f"for a folder of that name, write {tmp_path / 'a.txt'}/\n")
    assert not (tmp_path / "a.txt").exists()
    picture(tmp_path / "b.png")  # several inputs alike
    code, out, err = run([tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "a.txt"],
                         weights, capsys)
    assert (code, out) == (2, "") and ".txt is not an image format" in err
    assert run([tmp_path / "a.png", "-o", f"{tmp_path / 'v1.5'}/"], weights, capsys)[0] == 0
    assert [p.name for p in (tmp_path / "v1.5").iterdir()] == ["a_x2.png"]
    (tmp_path / "run.d").mkdir()  # an existing folder needs no slash
    assert run([tmp_path / "a.png", "-o", tmp_path / "run.d"], weights, capsys)[0] == 0
    assert [p.name for p in (tmp_path / "run.d").iterdir()] == ["a_x2.png"]


def test_two_inputs_with_one_output_name_are_refused(tmp_path, weights, capsys):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        picture(tmp_path / name / "x.png")
    code, out, err = run([tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", "-o",
                          tmp_path / "out"], weights, capsys)
    assert (code, out) == (2, "")
    assert err == (f"cclnn upscale: error: {tmp_path / 'a' / 'x.png'} and "
                   f"{tmp_path / 'b' / 'x.png'} would both be written to "
                   f"{tmp_path / 'out' / 'x_x2.png'}\n")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# ------------------------------------------------------------- 6. progress


def test_per_tile_progress_on_request(tmp_path, weights, capsys):
    picture(tmp_path / "a.png", 12, 10)
    code, out, err = run([tmp_path / "a.png", "--tile", "4", "--progress"], weights, capsys)
    assert code == 0 and "0/9 [" in err and "tile" in err and "Traceback" not in err


# ------------------------------------------------------------- 7. metadata


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_icc_exif_and_dpi_are_carried(tmp_path, weights, capsys, suffix):
    from PIL import ImageCms
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated: the output is upright, the tag 1
    exif[0x013B] = "A. Photographer"  # Artist
    picture(tmp_path / f"a{suffix}", 6, 5, icc_profile=icc, exif=exif.tobytes(), dpi=(150, 150))
    assert run([tmp_path / f"a{suffix}"], weights, capsys)[0] == 0
    with Image.open(tmp_path / f"a_x2{suffix}") as im:
        assert im.info.get("icc_profile") == icc
        if suffix != ".webp":
            assert tuple(round(v) for v in im.info["dpi"]) == (150, 150)
        if suffix != ".tif":  # a TIFF's tags are its own, not an EXIF block
            assert im.size == (12, 10)  # upright
            assert im.getexif()[0x013B] == "A. Photographer" and im.getexif()[0x0112] == 1


# ------------------------------------------------------------- 8. device


def test_a_callers_module_stays_where_it_was():
    net = cclnn.build_model("srcnn", 2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cclnn.upscale(np.zeros((4, 4, 3), np.uint8), 2, model=net, device="cpu")
    assert next(net.parameters()).device.type == "cpu"
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_scale_follows_the_weights_file_unless_given(tmp_path, capsys):
    x4 = tiny_weights(tmp_path / "x4.safetensors", "srcnn", 4)
    source = picture(tmp_path / "a.png")
    assert main(["upscale", str(source), "--weights", str(x4), "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "a_x4.png").size == (5 * 4, 6 * 4)
    assert main(["upscale", str(source), "--weights", str(x4), "--scale", "2",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--scale 2" in err[0] and "x4" in err[0]
    assert not (tmp_path / "a_x2.png").exists()


def test_control_characters_in_file_names_are_escaped(tmp_path, weights, capsys):
    source = tmp_path / "red\x1b[31m.png"
    source.write_bytes(b"not an image")
    code, out, err = run([str(source)], weights, capsys)
    assert code == 1
    assert "\x1b" not in err and err.count("\n") == 1 and "\\x1b[31m" in err
