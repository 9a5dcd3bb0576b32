"""Image input edges (issue 22): bombs, animations, 16-bit RGB, wrong content, odd arrays and
PIL modes; the Python API treats images exactly as ``cclnn upscale`` treats files."""
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

import cclnn
from cclnn.cli import main
from cclnn.data.images import ImageError, decode_array, read_image, read_image_with_alpha
from cclnn.inference import super_resolve
from cclnn.upscaling import upscale_pixels


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16(path, arr):
    """A 16-bit RGB(A) PNG (PIL cannot write one), rows with the Sub filter (it reaches back a
    whole 6- or 8-byte pixel, so a wrong pixel width shows)."""
    h, w, c = arr.shape
    rows = []
    for y in range(h):
        raw = np.frombuffer(arr[y].astype(">u2").tobytes(), np.uint8).astype(int)
        bpp = 2 * c
        sub = (raw - np.concatenate([np.zeros(bpp, int), raw[:-bpp]])) % 256
        rows.append(b"\x01" + sub.astype(np.uint8).tobytes())
    header = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
                     + _chunk(b"IDAT", zlib.compress(b"".join(rows))) + _chunk(b"IEND", b""))


def bomb(path, side=20000):
    """A small PNG file that says ``side`` x ``side`` gray pixels (a decompression bomb; its
    data is one row's worth, as nothing may decode it)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
                     + _chunk(b"IDAT", zlib.compress(bytes(side + 1))) + _chunk(b"IEND", b""))


def run(args, weights, capsys):
    code = main(["upscale", *map(str, args), "--model", "srcnn", "--weights",
                           str(weights), "--device", "cpu"])
    return code, *capsys.readouterr()


@pytest.fixture
def weights(tmp_path):
    from conftest import tiny_weights
    return tiny_weights(tmp_path / "srcnn_x2.safetensors", "srcnn", 2)


def test_decompression_bomb_is_one_line_and_the_folder_goes_on(tmp_path, weights, capsys):
    bomb_file = tmp_path / "bomb.png"
    bomb(bomb_file)
    with pytest.raises(ImageError, match=r"bomb.png: 20000x20000 pixels \(400 Mpx\) is over"):
        read_image(bomb_file)  # cclnn test / cclnn train read through here
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(bomb_file.read_bytes())
    Image.fromarray(np.full((6, 5, 3), 90, np.uint8)).save(folder / "ok.png")
    code, out, err = run([folder, "-o", tmp_path / "out"], weights, capsys)
    assert code == 1
    assert err.splitlines() == [f"cclnn upscale: error: {folder / 'bomb.png'}: 20000x20000 at x2 "
                                f"makes 40000x40000 (1600 Mpx), over the limit of 268 Mpx "
                                f"(--max-output-pixels)"]
    assert out.splitlines() == [f"{folder / 'ok.png'} -> {tmp_path / 'out' / 'ok_x2.png'}",
                                "x2: upscaled 1, skipped 0, failed 1 (of 2 image(s))"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok_x2.png"]


def test_animated_images_are_refused_with_the_frame_count(tmp_path, weights, capsys):
    frames = [Image.fromarray(np.full((6, 5, 3), v, np.uint8)) for v in (0, 120, 240)]
    for suffix in (".gif", ".webp", ".png"):
        path = tmp_path / f"anim{suffix}"
        frames[0].save(path, save_all=True, append_images=frames[1:])
        with pytest.raises(ImageError, match=r"anim\..*: animated image \(3 frames\)"):
            read_image(path)
    code, out, err = run([tmp_path / "anim.png"], weights, capsys)
    assert (code, out) == (1, "")
    assert err == (f"cclnn upscale: error: {tmp_path / 'anim.png'}: animated image (3 frames); "
                   f"only still images are supported\n")
    assert not (tmp_path / "anim_x2.png").exists()


def test_sixteen_bit_rgb_png_is_read_whole_and_rounded(tmp_path):
    rng = np.random.default_rng(0)
    for channels in (3, 4):
        deep = rng.integers(0, 65536, (5, 7, channels)).astype(np.uint16)
        deep[0, 0, 0] = 200  # PIL's high byte says 0; round(200 / 257) is 1
        png16(tmp_path / "deep.png", deep)
        with pytest.warns(UserWarning, match="deep.png: 16-bit image converted to 8 bits"):
            pixels, alpha, gray, _ = read_image_with_alpha(tmp_path / "deep.png")
        eight = np.floor(deep / 257 + 0.5).astype(np.uint8)
        assert np.array_equal(pixels, eight[..., :3]) and not gray
        assert alpha is None if channels == 3 else np.array_equal(alpha, eight[..., 3])


def test_non_image_with_an_image_suffix_is_one_line(tmp_path, weights, capsys):
    (tmp_path / "notes.png").write_text("hello, not a picture")
    code, out, err = run([tmp_path / "notes.png"], weights, capsys)
    assert (code, out) == (1, "")
    assert err.startswith(f"cclnn upscale: error: {tmp_path / 'notes.png'}: not a readable image")
    assert err.count("\n") == 1 and "Traceback" not in err


def _net():
    return cclnn.build_model("srcnn", 2)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((0, 0, 3), np.uint8), r"empty image \(0x0 pixels\)"),
    (np.zeros((4, 0), np.uint8), r"empty image \(0x4 pixels\)"),
    (np.zeros((4, 4, 3), np.float32), "expected uint8 \\(or uint16\\) pixels, got float32"),
    (np.zeros((4, 4, 5), np.uint8), r"expected H x W or H x W x 1/2/3/4, got shape \(4, 4, 5\)"),
    (np.zeros((2, 4, 4, 3), np.uint8), "got shape"),
])
def test_api_refuses_odd_arrays_in_one_line(bad, message):
    with pytest.raises(cclnn.errors.CclnnError, match=message) as info:
        cclnn.upscale(bad, 2, model=_net(), device="cpu")
    assert "\n" not in str(info.value)


def test_api_gray_alpha_and_sixteen_bit_as_the_cli(tmp_path):
    net = _net()
    rng = np.random.default_rng(1)
    la = rng.integers(0, 256, (6, 5, 2)).astype(np.uint8)
    out = cclnn.upscale(la, 2, model=net, device="cpu")
    expected = upscale_pixels(la[..., 0], la[..., 1], True, net, 2, device="cpu")
    assert out.shape == (12, 10, 2) and np.array_equal(out, expected)
    pil = cclnn.upscale(Image.fromarray(la, "LA"), 2, model=net, device="cpu")
    assert pil.mode == "LA" and np.array_equal(np.asarray(pil), expected)
    deep = (rng.integers(0, 65536, (6, 5))).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_file = cclnn.upscale(Image.open(tmp_path / "deep.png"), 2, model=net, device="cpu")
        from_array = cclnn.upscale(deep, 2, model=net, device="cpu")
    eight = np.floor(deep / 257 + 0.5).astype(np.uint8)
    gray = np.asarray(Image.fromarray(super_resolve(net, np.dstack([eight] * 3), 2)).convert("L"))
    assert from_file.mode == "L" and np.array_equal(np.asarray(from_file), gray)
    assert np.array_equal(from_array, gray)


def test_decode_array_keeps_uint8_and_warns_once_for_sixteen_bit():
    with pytest.warns(UserWarning, match="image: 16-bit image converted to 8 bits"):
        pixels, alpha, gray = decode_array(np.full((2, 2, 3), 65535, np.uint16))
    assert pixels.dtype == np.uint8 and (pixels == 255).all() and alpha is None and not gray


def test_concurrent_header_reads_leave_pils_bomb_limit_as_it_was(tmp_path):
    """PIL's limit is one global that the reader switches off around ``Image.open``: from
    many threads at once it must come back to its value (a server reads headers in parallel)."""
    from concurrent.futures import ThreadPoolExecutor

    from cclnn.data.images import image_size
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(path)
    saved = Image.MAX_IMAGE_PIXELS
    with ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(lambda _: image_size(path, None), range(400)))
    assert sizes == [(9, 8)] * 400 and Image.MAX_IMAGE_PIXELS == saved
