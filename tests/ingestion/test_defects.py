"""Synthetic defects: inside the chosen region, seeded, the synthetic_index schema."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segad.ingestion.defects import (
    SYNTHETIC_COLUMNS,
    DefectConfig,
    blur_region,
    choose_region,
    empty_synthetic_index,
    plan_synthetic,
    rectangle_in_region,
    synthesize,
    synthetic_image_id,
)


def _image(size=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3)).astype(np.uint8)


def _labels(size=48):
    labels = np.zeros((size, size), np.int64)
    labels[:, size // 2 :] = 1
    return labels


def test_region_is_inside_one_segment_and_parts_are_smaller():
    labels = _labels()
    whole = DefectConfig(whole_segment_prob=1.0)
    region, segment = choose_region(labels, np.random.default_rng(0), whole)
    np.testing.assert_array_equal(region, labels == segment)
    part = DefectConfig(whole_segment_prob=0.0, part_size=(0.2, 0.2))
    region, segment = choose_region(labels, np.random.default_rng(1), part)
    assert region.any() and (labels[region] == segment).all() and region.sum() < (labels == segment).sum()


def test_blur_and_rectangle_change_only_the_region():
    image, labels = _image(), _labels()
    region = labels == 1
    blurred = blur_region(image, region, 3.0)
    assert (blurred[~region] == image[~region]).all() and (blurred[region] != image[region]).any()
    rect = rectangle_in_region(image, region, np.random.default_rng(2), DefectConfig(rect_length=(0.3, 0.3)))
    changed = (rect != image).any(axis=2)
    assert changed.any() and not changed[~region].any()
    values = rect[changed]
    assert (values == values[0, 0]).all()  # one gray level


def test_synthesize_is_seeded():
    image, labels = _image(), _labels()
    a = synthesize(image, labels, np.random.default_rng(5), DefectConfig())
    b = synthesize(image, labels, np.random.default_rng(5), DefectConfig())
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:] == b[1:] and a[1] in ("synthetic_blur", "synthetic_rectangle")
    assert not np.array_equal(a[0], image)
    # labels at another resolution are resized to the image
    out, _, _ = synthesize(image, _labels(24), np.random.default_rng(5), DefectConfig())
    assert out.shape == image.shape


def test_plan_writes_schema_and_renders_deterministically(tmp_path):
    paths = []
    for i in range(3):
        path = tmp_path / "train" / "good" / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_image(seed=i)).save(path)
        paths.append(str(path))
    index = pd.DataFrame(
        {
            "image_id": [f"train/good/{i:03d}.png" for i in range(3)] + ["train/bad/0.png"],
            "category": "c",
            "label": [0, 0, 0, 1],
            "path": paths + ["/nope.png"],
        }
    )
    splits = pd.DataFrame(
        {
            "image_id": index.image_id.tolist() * 2,
            "split_seed": [0] * 4 + [1] * 4,
            "role": ["detector_train", "brf_train", "brf_train", "brf_train"] * 2,
        }
    )
    config = DefectConfig(per_image=2, output_dir=str(tmp_path / "synthetic"))
    table, renders = plan_synthetic(index, splits, lambda c, i: _labels(), config)
    assert list(table.columns) == list(SYNTHETIC_COLUMNS)
    assert len(table) == 2 * 2 * 2  # seeds x good brf_train sources x per_image; the bad image is no source
    assert set(table.role) == {"brf_train"} and set(table.label) == {1}
    assert (
        table.image_id.iloc[0] == synthetic_image_id(0, "train/good/001.png", 0) == "synthetic/0/train_good_001__0.png"
    )
    assert table.path.iloc[0] == str((tmp_path / "synthetic" / "0" / "train_good_001__0.png").resolve())
    key = "0/train_good_001__0"
    first, second = np.asarray(renders[key]()), np.asarray(renders[key]())
    np.testing.assert_array_equal(first, second)
    assert first.shape == (48, 48, 3) and not np.array_equal(first, _image(seed=1))
    again, _ = plan_synthetic(index, splits, lambda c, i: _labels(), config)
    pd.testing.assert_frame_equal(table, again)


def test_empty_index_has_schema_and_bad_params_fail():
    empty = empty_synthetic_index()
    assert list(empty.columns) == list(SYNTHETIC_COLUMNS) and len(empty) == 0
    with pytest.raises(ValueError, match="kinds"):
        DefectConfig(**{"kinds": ["scratch"]})
    with pytest.raises(ValueError, match="sigma\n  Unexpected keyword argument"):
        DefectConfig(**{"sigma": 1})
    with pytest.raises(ValueError, match=r"defects.blur_sigma must be \(min, max\)"):
        DefectConfig(blur_sigma=(6.0, 2.0))


def test_top_up_share_takes_a_seeded_prefix_of_the_one_class_sources(tmp_path):
    n = 8
    for i in range(n):
        path = tmp_path / f"{i:03d}.png"
        Image.fromarray(_image(seed=i)).save(path)
    index = pd.DataFrame(
        {
            "image_id": [f"{i:03d}.png" for i in range(n)],
            "category": "c",
            "label": 0,
            "path": [str(tmp_path / f"{i:03d}.png") for i in range(n)],
        }
    )
    splits = pd.DataFrame({"image_id": index.image_id, "split_seed": 0, "role": "brf_train"})
    config = DefectConfig(output_dir=str(tmp_path / "synthetic"))
    everything, _ = plan_synthetic(index, splits, lambda c, i: _labels(), config)
    quarter, renders = plan_synthetic(index, splits, lambda c, i: _labels(), config, share=0.25)
    assert len(everything) == n and len(quarter) == 2 and len(renders) == 2
    # the same images as in one_class (same ids, same drawn defect), so their maps are shared
    same = everything.set_index("image_id").loc[quarter.image_id]
    pd.testing.assert_frame_equal(same.reset_index()[quarter.columns], quarter)
    tiny, _ = plan_synthetic(index, splits, lambda c, i: _labels(), config, share=0.01)
    assert len(tiny) == 1  # at least one source per seed and category
    with pytest.raises(ValueError, match="top_up_share"):
        DefectConfig(top_up_share=1.5)


def test_top_up_below_skips_seeds_and_categories_with_enough_real_bad_images(tmp_path):
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(_image(seed=i)).save(paths[-1])
    index = pd.DataFrame(
        {
            "image_id": ["g0.png", "g1.png", "b0.png", "b1.png"],
            "category": "c",
            "label": [0, 0, 1, 1],
            "path": [str(p) for p in paths],
        }
    )
    # seed 0 trains the BRF on two real bad images, seed 1 on one
    splits = pd.DataFrame(
        {
            "image_id": index.image_id.tolist() * 2,
            "split_seed": [0] * 4 + [1] * 4,
            "role": ["brf_train"] * 4 + ["brf_train", "brf_train", "brf_train", "test"],
        }
    )
    config = DefectConfig(output_dir=str(tmp_path / "synthetic"))
    table, _ = plan_synthetic(index, splits, lambda c, i: _labels(), config, share=0.5, below_real_bad=2)
    assert table.split_seed.tolist() == [1]
    table, _ = plan_synthetic(index, splits, lambda c, i: _labels(), config, share=0.5, below_real_bad=None)
    assert table.split_seed.tolist() == [0, 1]
