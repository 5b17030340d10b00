"""Image decoding: what a file shows becomes the (3, H, W) tensor in [0, 1] (zreward.images)."""

import numpy as np
import pytest
import torch
from PIL import Image

from zreward.errors import InputError
from zreward.images import load_image


def test_sixteen_bit_grey_keeps_its_range(tmp_path):
    """A 16-bit PNG is scaled to [0, 1] (PIL's own conversion clips everything above 255 to white)."""
    grey = np.random.default_rng(0).integers(0, 65536, (20, 30)).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    t = load_image(tmp_path / "g16.png")
    assert t.shape == (3, 20, 30) and torch.equal(t[0], t[2])
    torch.testing.assert_close(t[0], torch.from_numpy(grey.astype(np.float32) / 65535), atol=1e-6, rtol=0)
    eight = (grey // 257).astype(np.uint8)  # the same picture at 8 bits reads within one level
    assert (t[0] - torch.from_numpy(eight).float() / 255).abs().max() <= 1 / 255 + 1e-6


def test_exif_orientation_is_applied(tmp_path):
    """A JPEG whose orientation tag says 'rotate 90' reads as viewers show it: portrait, not landscape."""
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:, :30] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 clockwise to display
    img.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    t = load_image(tmp_path / "rot.jpg")
    assert t.shape == (3, 60, 40)
    assert t[:, :25].mean() > 0.9 and t[:, 35:].mean() < 0.1  # the white half is now on top


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "I", "F"])
def test_other_modes_read_as_rgb(tmp_path, mode):
    arr = (np.random.default_rng(1).random((24, 24, 3)) * 255).astype(np.uint8)
    img = Image.fromarray(arr).convert(mode)
    t = load_image(img)
    assert t.shape == (3, 24, 24) and t.dtype == torch.float32 and 0 <= t.min() <= t.max() <= 1


def test_unreadable_files_are_named(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "trunc.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    for name in ("empty.png", "trunc.png"):
        with pytest.raises(InputError, match=name):
            load_image(tmp_path / name)


def test_integer_and_float_containers_are_scaled_by_their_range():
    """Mode I holds 0..255 (PIL's convert) or 16-bit values; mode F 0..255 or a float TIFF's [0, 1]."""
    grey = np.random.default_rng(2).integers(0, 256, (16, 16))
    expected = torch.from_numpy(grey.astype(np.float32) / 255)
    for arr in (grey.astype(np.int32), (grey * 257).astype(np.int32), grey.astype(np.float32),
                grey.astype(np.float32) / 255):
        t = load_image(Image.fromarray(arr))
        torch.testing.assert_close(t[1], expected, atol=1e-6, rtol=0)
    with pytest.raises(InputError, match=r"image: mode I image values must lie in \[0, 65535\]"):
        load_image(Image.fromarray(np.full((16, 16), 70000, np.int32)))
    with pytest.raises(InputError, match=r"mode F image values must lie in \[0, 255\]"):
        load_image(Image.fromarray(np.full((16, 16), 300.0, np.float32)))


def test_alpha_in_an_array_is_composited_like_a_file(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0], rgba[4:12, 4:12, 3] = 200, 255
    Image.fromarray(rgba).save(tmp_path / "a.png")
    torch.testing.assert_close(load_image(rgba), load_image(tmp_path / "a.png"), atol=1e-6, rtol=0)
    assert load_image(rgba)[:, 0, 0].tolist() == [1.0, 1.0, 1.0]  # transparent: white, not the hidden red


def test_huge_files_are_refused_from_their_header(tmp_path):
    """Over MAX_PIXELS: refused before decoding, one InputError (PIL's own bomb error above 179M too)."""
    for side in (7200, 14000):  # 52M and 196M pixels; mode "1" keeps the fixtures small
        Image.new("1", (side, side)).save(tmp_path / f"{side}.png")
        with pytest.raises(InputError, match=rf"{side}.png: .*too large"):
            load_image(tmp_path / f"{side}.png")


@pytest.mark.parametrize("bad,message", [
    (torch.zeros(3, 0, 0), "0x0 is too small"),
    (torch.zeros(3, 4, 64), "64x4 is too small"),
    ("dir", "is a directory"),
])
def test_empty_tensors_and_directories_are_named(tmp_path, bad, message):
    if bad == "dir":
        bad = tmp_path
    with pytest.raises(InputError, match=message):
        load_image(bad)


def test_unconvertible_and_closed_pil_images():
    with pytest.raises(InputError, match="image: cannot read PIL mode 'La'"):
        load_image(Image.new("La", (16, 16)))
    img = Image.new("RGB", (16, 16))
    img.close()
    with pytest.raises(InputError, match="image: not a readable PIL image"):
        load_image(img)
