import numpy as np
import pytest

from segad.images import ImageReadError, image_size, read_image, read_mask
from tests.conftest import write_png


def test_read_image_resizes_and_scales(tmp_path):
    path = write_png(tmp_path / "a.png", (40, 30), value=200)
    image = read_image(path, size=16)
    assert image.shape == (3, 16, 16) and image.dtype == np.float32
    assert 0.6 < image.mean() < 0.9
    assert image_size(path) == (40, 30)


def test_grayscale_becomes_three_channels(tmp_path):
    path = write_png(tmp_path / "g.png", (8, 8), value=50, mode="L")
    image = read_image(path)
    assert image.shape == (3, 8, 8)
    assert np.allclose(image[0], image[1])


def test_truncated_image_names_the_file(tmp_path):
    path = write_png(tmp_path / "t.png", (64, 64))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ImageReadError, match="t.png: unreadable or truncated"):
        read_image(path)


def test_missing_and_non_image_files(tmp_path):
    with pytest.raises(ImageReadError, match="no such image file"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "x.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="x.png"):
        image_size(tmp_path / "x.png")


def test_read_mask_is_binary_and_nearest(tmp_path):
    path = write_png(tmp_path / "m.png", (8, 8), value=0, mode="L")
    from PIL import Image

    pixels = np.zeros((8, 8), np.uint8)
    pixels[:4] = 255
    Image.fromarray(pixels).save(path)
    mask = read_mask(path, size=4)
    assert mask.dtype == bool and mask[:2].all() and not mask[2:].any()
