"""segad.production.inputs: the input spec of the training images and the checks of new images."""

from __future__ import annotations

import numpy as np
import pytest

from segad.production.inputs import (
    InputMismatchError,
    InputSpec,
    colour_of,
    input_spec_from_paths,
    list_images,
    load_checked,
)
from segad.storage.images import ImageReadError
from tests.conftest import write_png


def test_colour_modes():
    assert [colour_of(m) for m in ("L", "I;16", "1", "RGB", "RGBA", "P")] == [
        "gray",
        "gray",
        "gray",
        "rgb",
        "rgb",
        "rgb",
    ]


def test_input_spec_and_checks(tmp_path):
    train = [write_png(tmp_path / "train" / f"{i}.png", (40, 30)) for i in range(3)]
    spec = input_spec_from_paths(train, image_size=16)
    assert spec == InputSpec(image_size=16, colour="rgb", sizes=((40, 30),))
    assert InputSpec.from_dict(spec.as_dict()) == spec

    ok = load_checked(write_png(tmp_path / "new" / "ok.png", (40, 30)), spec)
    assert ok.shape == (3, 16, 16) and ok.dtype == np.float32
    with pytest.raises(InputMismatchError, match=r"wrong size 32x32.*40x30"):
        load_checked(write_png(tmp_path / "new" / "small.png", (32, 32)), spec)
    with pytest.raises(InputMismatchError, match="gray image but the bundle was trained on rgb"):
        load_checked(write_png(tmp_path / "new" / "gray.png", (40, 30), mode="L"), spec)
    broken = tmp_path / "new" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ImageReadError, match="broken.png"):
        load_checked(broken, spec)
    truncated = tmp_path / "new" / "truncated.png"
    truncated.write_bytes((tmp_path / "new" / "ok.png").read_bytes()[:200])
    with pytest.raises(ImageReadError, match="truncated.png"):
        load_checked(truncated, spec)

    any_size = InputSpec(image_size=16, colour="rgb")
    assert load_checked(tmp_path / "new" / "small.png", any_size).shape == (3, 16, 16)


def test_training_images_must_not_mix_gray_and_colour(tmp_path):
    paths = [write_png(tmp_path / "a.png"), write_png(tmp_path / "b.png", mode="L")]
    with pytest.raises(InputMismatchError, match="mix grayscale and colour"):
        input_spec_from_paths(paths, 16)


def test_list_images_is_recursive_sorted_and_suffix_based(tmp_path):
    write_png(tmp_path / "b" / "2.png")
    write_png(tmp_path / "a.PNG")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "fake.jpg").write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.PNG", "b/2.png", "fake.jpg"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "missing")


def test_the_spec_records_a_square_size_as_before_and_a_non_square_one_as_height_width():
    from segad.storage.images import ImageSize

    square = InputSpec(image_size=16, colour="rgb")
    assert square.image_size == ImageSize(16, 16) and square.as_dict()["image_size"] == 16
    tall = InputSpec(image_size=ImageSize(64, 32), colour="rgb", sizes=((48, 96),))
    assert tall.as_dict()["image_size"] == [64, 32] and InputSpec.from_dict(tall.as_dict()) == tall
    with pytest.raises(ValueError, match=r"input_spec.image_size: expected an int > 0"):
        InputSpec.from_dict({"image_size": [1, 2, 3], "colour": "rgb"})
