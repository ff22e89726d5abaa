"""segad.production.scoring: operating point, input checks, explanations, overlays."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segad.evaluation.metrics import pg
from segad.images import ImageReadError
from segad.meta.brf import BRFConfig, brf_scores, fit_brf
from segad.production.scoring import (
    TITLE_HEIGHT,
    InputMismatchError,
    InputSpec,
    choose_operating_point,
    colour_of,
    decide,
    group_contributions,
    input_spec_from_paths,
    list_images,
    load_checked,
    out_of_fold_scores,
    render_overlay,
    top_segment,
)
from segad.segments.columns import feature_columns
from tests.conftest import write_png

# ------------------------------------------------------------------ operating point


def test_operating_point_is_the_pg_threshold():
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(300, int), np.ones(200, int)]
    scores = np.r_[rng.normal(0, 1, 300), rng.normal(2.5, 1, 200)]
    op = choose_operating_point(labels, scores, max_miss_rate=0.02)
    bad = scores[labels == 1]
    assert op.threshold == pytest.approx(np.quantile(bad, 0.02))
    # at most 2 % of bad parts pass, and the pass rate of good parts is PG2 of segad.evaluation.metrics
    assert np.mean(bad < op.threshold) == op.expected_miss_rate <= 0.02
    assert op.expected_pass_rate == pytest.approx(pg(labels, scores, n=2))
    assert op.expected_pass_rate == pytest.approx(np.mean(scores[labels == 0] < op.threshold))
    assert (op.n_good, op.n_bad) == (300, 200)
    # a stricter miss rate can only lower the threshold and the pass rate
    strict = choose_operating_point(labels, scores, max_miss_rate=0.005)
    assert strict.threshold <= op.threshold and strict.expected_pass_rate <= op.expected_pass_rate


def test_operating_point_rejects_bad_inputs():
    with pytest.raises(ValueError, match="max_miss_rate"):
        choose_operating_point([0, 1], [0.0, 1.0], max_miss_rate=0.0)
    with pytest.raises(ValueError, match="no bad image"):
        choose_operating_point([0, 0], [0.0, 1.0])
    few = choose_operating_point([0, 0, 1, 1], [0.0, 0.1, 1.0, 2.0], max_miss_rate=0.02)
    assert "only 2 bad images" in few.source


def test_decide_never_passes_an_unscored_image():
    assert decide(np.array([0.9, 1.0, 1.1, np.nan, np.inf]), 1.0).tolist() == [
        "accept", "reject", "reject", "error", "error"]


def test_out_of_fold_scores_come_from_models_that_did_not_see_the_row():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(40, int), np.ones(20, int)]
    features = rng.normal(size=(60, 6)) + labels[:, None] * 1.5
    config = BRFConfig(n_estimators=2, num_parallel_tree=10, max_depth=3)
    oof = out_of_fold_scores(features, labels, config, seed=3, n_folds=4)
    assert oof.shape == (60,) and np.isfinite(oof).all()
    in_sample = brf_scores(fit_brf(features, labels, config, seed=3), features)
    assert not np.allclose(oof, in_sample)  # held-out scores differ from training-set scores
    np.testing.assert_array_equal(oof, out_of_fold_scores(features, labels, config, seed=3, n_folds=4))
    # separable classes: held-out scores still rank bad above good most of the time
    assert np.mean(oof[labels == 1][:, None] > oof[labels == 0][None, :]) > 0.8
    with pytest.raises(ValueError, match="at least 2 good and 2 bad"):
        out_of_fold_scores(features[:41], labels[:41], config)


# ------------------------------------------------------------------ input checks


def test_colour_modes():
    assert [colour_of(m) for m in ("L", "I;16", "1", "RGB", "RGBA", "P")] == [
        "gray", "gray", "gray", "rgb", "rgb", "rgb"]


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
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "a.PNG", "b/2.png", "fake.jpg"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "missing")


# ------------------------------------------------------------------ explanations


def test_segment_contributions_sum_to_the_score():
    import xgboost

    rng = np.random.default_rng(0)
    detectors, n_segments = ["padim", "patchcore"], 3
    columns = feature_columns(detectors, n_segments)
    labels = np.r_[np.zeros(60, int), np.ones(30, int)]
    features = rng.normal(size=(90, len(columns)))
    # make segment 2 of patchcore carry the signal
    hot = [i for i, c in enumerate(columns) if c.startswith("seg2__patchcore")]
    features[:, hot] += 3.0 * labels[:, None]
    model = fit_brf(features, labels, BRFConfig(n_estimators=3, num_parallel_tree=20), seed=0)
    contribs = model.get_booster().predict(xgboost.DMatrix(features), pred_contribs=True)
    grouped = group_contributions(contribs, columns)
    assert list(grouped.columns) == ["contrib_seg0", "contrib_seg1", "contrib_seg2",
                                     "contrib_global", "contrib_bias"]
    np.testing.assert_allclose(grouped.sum(axis=1), brf_scores(model, features), atol=1e-4)
    # the informative segment explains the bad parts
    assert (top_segment(grouped)[labels == 1] == 2).mean() > 0.8
    with pytest.raises(ValueError, match="do not match"):
        group_contributions(contribs[:, :-1], columns)


def test_top_segment_is_minus_one_without_positive_contribution():
    import pandas as pd

    grouped = pd.DataFrame({"contrib_seg0": [-1.0, 0.5], "contrib_seg1": [-0.5, 2.0],
                            "contrib_global": [3.0, 0.0], "contrib_bias": [0.0, 0.0]})
    assert top_segment(grouped).tolist() == [-1, 1]


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
