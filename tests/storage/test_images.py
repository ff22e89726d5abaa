import numpy as np
import pytest

from segad.storage.images import ImageReadError, image_size, read_image, read_mask, resize_labels
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


# ------------------------------------------------------------------------------ image_size


def test_image_size_parses_an_int_a_pair_and_keeps_square_keys():
    from segad.storage.images import ImageSize

    assert ImageSize.parse(256) == ImageSize(256, 256) and ImageSize.parse([48, 96]) == ImageSize(48, 96)
    assert ImageSize.parse({"height": 48, "width": 96}).hw == (48, 96) and ImageSize(48, 96).wh == (96, 48)
    assert ImageSize(256, 256).to_json() == 256 and ImageSize(48, 96).to_json() == [48, 96]  # square: as before
    assert ImageSize(256, 256).tag() == "256" and ImageSize(48, 96).tag() == "48x96"
    assert str(ImageSize(416, 160)) == "416 x 160"


@pytest.mark.parametrize("value", [0, -3, [1, 2, 3], [64], "big", True, [48.5, 32], None])
def test_a_bad_image_size_names_the_key(value):
    from segad.storage.images import ImageSize, ImageSizeError

    with pytest.raises(ImageSizeError, match=r"^image_size: "):
        ImageSize.parse(value)


def test_read_image_and_mask_resize_to_height_by_width(tmp_path):
    from segad.storage.images import ImageSize

    path = write_png(tmp_path / "wide.png", (60, 20))
    assert read_image(path, size=ImageSize(16, 48)).shape == (3, 16, 48)
    assert read_image(path, size=(16, 48)).shape == (3, 16, 48)
    assert read_mask(path, size=ImageSize(10, 30)).shape == (10, 30)


@pytest.mark.parametrize(
    ("sizes", "expected", "aspect"),
    [
        ([(300, 300)] * 3, (256, 256), "1.00"),  # ELPV cells: unchanged 256 x 256
        ([(512, 512), (256, 256)], (256, 256), "1.00"),
        ([(500, 1250)] * 5, (416, 160), "2.50"),  # tall (width x height on disk) -> 416 x 160
        ([(1250, 500)] * 5, (160, 416), "0.40"),  # wide
        ([(192, 320)], (320, 192), "1.67"),  # SensumSODF capsule, 320 x 192 (h x w)
        ([(10, 1000)], (2560, 64), "100.00"),  # the smallest side is 64
        ([(100, 100), (100, 300), (100, 300)], (448, 160), "3.00"),  # the median, not the mean
    ],
)
def test_auto_keeps_the_median_aspect_at_about_256_squared(sizes, expected, aspect):
    from segad.storage.images import auto_image_size

    size, why = auto_image_size(sizes)
    assert size.hw == expected and size.height % 32 == 0 and size.width % 32 == 0
    assert why == f"image_size auto: median aspect {aspect} (h/w) over {len(sizes)} good train images -> {size}"


def test_auto_reads_only_the_good_train_images_of_the_index(caplog):
    import pandas as pd

    from segad.storage.images import ImageSize, ImageSizeError, resolve_image_size

    index = pd.DataFrame(
        {
            "split": ["train", "train", "train", "test"],
            "label": [0, 0, 1, 0],
            "width": [500, 500, 100, 100],
            "height": [1250, 1250, 100, 100],
        }
    )
    with caplog.at_level("INFO", logger="segad.storage.images"):
        assert resolve_image_size("auto", index) == ImageSize(416, 160)
        assert resolve_image_size("auto", index) == ImageSize(416, 160)  # same index: said once
    said = [r.getMessage() for r in caplog.records if r.name == "segad.storage.images"]
    assert said == ["image_size auto: median aspect 2.50 (h/w) over 2 good train images -> 416 x 160"]
    assert resolve_image_size([64, 32], index) == ImageSize(64, 32) and resolve_image_size(64) == ImageSize(64, 64)
    with pytest.raises(ImageSizeError, match=r"good \(label 0\) train images, and there are none"):
        resolve_image_size("auto", index[index["label"] == 1])
    with pytest.raises(ImageSizeError, match="needs the image index"):
        resolve_image_size("auto")


def test_resize_labels_keeps_the_labels_at_height_by_width():
    labels = np.zeros((16, 16), np.uint8)
    labels[:8] = 1
    labels[:, :4] = 2
    resized = resize_labels(labels, (8, 4))
    assert resized.shape == (8, 4) and resized.dtype == np.int64
    assert set(np.unique(resized)) == {0, 1, 2}  # nearest neighbour: no new labels
    assert (resize_labels(labels, 16) == labels).all()
