"""Catalogue of bad inputs (docs/bad_inputs.md): each case asserts the type and message the user sees."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segad.detectors import DetectorConfig, DetectorConfigError
from segad.images import ImageReadError, image_size, read_image, read_mask
from segad.params import known_params
from tests.conftest import write_png


def test_missing_image(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.png: no such image file"):
        read_image(tmp_path / "nope.png")


def test_zero_byte_png(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png: unreadable or truncated image"):
        read_image(tmp_path / "empty.png")


def test_truncated_png(tmp_path):
    path = write_png(tmp_path / "cut.png", (64, 64))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageReadError, match=r"cut\.png: unreadable or truncated image"):
        read_image(path)


def test_text_file_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ImageReadError, match=r"notes\.png: unreadable or truncated image"):
        image_size(tmp_path / "notes.png")


def test_directory_named_png(tmp_path):
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageReadError, match=r"dir\.png: no such image file"):
        read_image(tmp_path / "dir.png")


def test_truncated_mask(tmp_path):
    path = write_png(tmp_path / "m.png", (64, 64), mode="L")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ImageReadError, match=r"m\.png: unreadable or truncated image"):
        read_mask(path)


def test_jpeg_named_png_accepted(tmp_path):
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "x.png", format="JPEG")
    assert read_image(tmp_path / "x.png").shape == (3, 8, 8)


def test_16bit_png_accepted(tmp_path):
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(tmp_path / "d.png")
    assert read_image(tmp_path / "d.png").shape == (3, 8, 8)


def test_rgba_accepted_alpha_dropped(tmp_path):
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (3, 8, 8) and np.isclose(out[0, 0, 0], 10 / 255)


def test_cmyk_jpeg_accepted(tmp_path):
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").shape == (3, 8, 8)


def test_grayscale_accepted(tmp_path):
    write_png(tmp_path / "g.png", (8, 6), mode="L")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (3, 6, 8) and np.array_equal(out[0], out[2])


def test_one_pixel_accepted_resized(tmp_path):
    write_png(tmp_path / "p.png", (1, 1))
    assert read_image(tmp_path / "p.png", size=16).shape == (3, 16, 16)


def test_exif_rotation_not_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (8, 4)).save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (3, 4, 8)


def test_decompression_bomb(tmp_path, monkeypatch):
    write_png(tmp_path / "big.png", (64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises((ImageReadError, Image.DecompressionBombError), match=r"big\.png|exceeds limit"):
        read_image(tmp_path / "big.png")


@pytest.mark.parametrize("name", ["patchcore_x", "PatchCore", ""])
def test_unknown_detector(name):
    with pytest.raises(DetectorConfigError, match="unknown detector"):
        DetectorConfig.from_dict(name, {})


def test_unknown_detector_setting():
    with pytest.raises(DetectorConfigError, match="max_epoch"):
        DetectorConfig.from_dict("patchcore", {"max_epoch": 1})


class _Cfg:
    pass


def test_unknown_params_key():
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        max_depth: int = 3

    with pytest.raises(ValueError, match=r"unknown brf parameters \['max_depht'\]"):
        known_params(Cfg, {"max_depht": 5}, "brf")
