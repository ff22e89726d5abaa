"""segad.production.render: overlays of rejected parts and their file names."""

from __future__ import annotations

import numpy as np
from PIL import Image

from segad.production.render import TITLE_HEIGHT, overlay_name, render_overlay


def test_overlay_marks_the_segment_and_keeps_the_size(tmp_path):
    image = np.full((3, 32, 32), 0.5, np.float32)
    segments = np.zeros((32, 32), np.int64)
    segments[8:24, 8:24] = 1
    amap = np.zeros((32, 32), np.float32)
    amap[10:14, 10:14] = 5.0
    titled = render_overlay(image, amap, segments, highlight=1, title="reject 3.2")
    assert titled.shape == (32 + TITLE_HEIGHT, 64, 3) and titled.dtype == np.uint8
    picture = render_overlay(image, amap, segments, highlight=1)
    np.testing.assert_array_equal(titled[TITLE_HEIGHT:], picture)
    assert picture.shape == (32, 64, 3)
    assert picture[16, 16, 0] > picture[16, 16, 1]  # tinted red inside segment 1
    assert tuple(picture[30, 2]) == (128, 128, 128)  # untouched outside
    assert picture[12, 32 + 12, 0] > picture[30, 32 + 30, 0]  # heat map hot where the map is high
    Image.fromarray(picture).save(tmp_path / "o.png")


def test_overlay_names_are_unique():
    # names that sanitise alike still get their own overlay
    assert overlay_name("a/b.png") != overlay_name("a__b.png") != overlay_name("a?b.png")
    names = ["a/b.png", "a__b.png", "a?b.png", "a_b.png", "x.jpg", "x.jpg.png", "x.png", "X.PNG", "x", "d/x.png"]
    assert len({overlay_name(n) for n in names}) == len(names)


def test_overlay_names_are_the_images_own_where_they_can_be():
    assert overlay_name("line3/part_07.png") == "line3__part_07.png"
    assert overlay_name("part-07.bmp") == "part-07.bmp.png"
    assert overlay_name("test/bad/012.JPG") == "test__bad__012.JPG.png"
    assert (
        overlay_name("part 07.png").startswith("part_07-") and len(overlay_name("part 07.png")) == len("part_07-") + 12
    )


def test_overlay_is_the_documented_arithmetic_within_one_level():
    """Tint 45 % red inside the segment, red outline, jet heat map half and half with the image:
    the 8-bit drawing equals that arithmetic in floats, rounded, within one level per channel."""
    from matplotlib import colormaps

    rng = np.random.default_rng(3)
    image = rng.random((3, 48, 48), dtype=np.float32)
    amap = rng.normal(size=(48, 48)).astype(np.float32)
    amap[0, 0] = np.nan  # left out of the scaling, drawn as the map's minimum
    segments = np.zeros((48, 48), np.int64)
    segments[10:30, 5:40] = 2
    rgb = image.transpose(1, 2, 0)
    left = rgb.copy()
    inside = segments == 2
    left[inside] = 0.55 * left[inside] + 0.45 * np.array([1.0, 0.0, 0.0], np.float32)
    outline = inside.copy()
    outline[11:29, 6:39] = False
    left[outline] = (1.0, 0.0, 0.0)
    finite = np.isfinite(amap)
    scaled = np.where(finite, (amap - amap[finite].min()) / np.ptp(amap[finite]), 0.0)
    right = 0.5 * rgb + 0.5 * colormaps["jet"](scaled)[..., :3]
    want = np.floor(np.concatenate([left, right], axis=1) * 255.0 + 0.5)  # drawn at 8 bits
    got = render_overlay(image, amap, segments, highlight=2).astype(np.float64)
    assert np.abs(got - want).max() <= 1.0
