"""Vectorised segment statistics equal the reference per-segment numpy/scipy loop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kurtosis, skew

from segad.columns import feature_columns
from segad.segments.features import stream_statistics
from segad.segments.statistics import SegmentMap, feature_matrix, segment_statistics

RTOL = 1e-6
pytestmark = pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")


def _scipy_stats(sel: np.ndarray) -> np.ndarray:
    """The definition, computed on float64 values (docs/features.md, section "Features")."""
    sel = sel.astype(np.float64)
    if sel.size == 0:
        return np.zeros(4)
    return np.array([np.quantile(sel, 0.995), skew(sel), kurtosis(sel), sel.mean()])


def _maps_and_labels(n=6, size=40, n_segments=6, seed=0):
    """Random maps with an empty segment (5), a constant segment (3) and a 1-pixel segment (4)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, (size, size))
    labels[:5, :8] = 3  # constant segment
    labels[10, 10] = 4  # single-pixel segment; label 5 never appears (empty)
    maps = rng.gamma(2.0, 1.5, (n, size, size)) * 4.0 + 12.0
    maps[:, :5, :8] = 7.25  # same constant in every map
    return maps.astype(np.float32), labels, n_segments


def _expected(maps, labels, n_segments):
    return np.stack(
        [
            np.stack([_scipy_stats(m[lab == s]) for s in range(n_segments)])
            for m, lab in zip(maps, np.broadcast_to(labels, maps.shape))
        ]
    )


def _assert_equal_stats(actual, expected):
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=0, equal_nan=True)


def test_static_labels_match_scipy_including_edge_segments():
    maps, labels, n = _maps_and_labels()
    stats = segment_statistics(maps, labels, n)
    expected = _expected(maps, labels, n)
    _assert_equal_stats(stats, expected)
    # the edge cases are really exercised
    assert np.all(stats[:, 5] == 0.0)  # empty -> all zeros
    assert np.isnan(stats[:, 3, 1:3]).all() and np.allclose(stats[:, 3, [0, 3]], 7.25)
    assert np.isnan(stats[:, 4, 1:3]).all()  # single pixel
    np.testing.assert_allclose(stats[:, 4, 0], maps[:, 10, 10])


def test_large_segments_use_candidate_quantile_and_stay_exact():
    # segments of > 512 pixels go through the thresholded candidate search
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 64 * 16).reshape(64, 64)
    maps = rng.standard_cauchy((5, 64, 64)).astype(np.float32)  # heavy tails
    maps[1] = np.round(maps[1])  # many ties
    maps[2] = np.sqrt(np.linspace(0, 1, 64 * 64))[::-1].astype(np.float32).reshape(64, 64)  # sorted, descending
    stats = segment_statistics(maps, labels, 4)
    _assert_equal_stats(stats, _expected(maps, labels, 4))


def test_threshold_that_misses_the_tail_falls_back_to_the_whole_segment():
    # the candidate threshold comes from every 8th value of a 4096-pixel segment; put the only
    # large values there, so fewer than the needed 22 values lie above it and the exact
    # whole-segment selection must take over
    rng = np.random.default_rng(2)
    labels = np.zeros((64, 64), dtype=np.int64)
    maps = rng.uniform(0.0, 1.0, (2, 64 * 64))
    maps[:, ::8] = rng.uniform(10.0, 20.0, (2, 512))
    maps = maps.reshape(2, 64, 64)
    _assert_equal_stats(segment_statistics(maps, labels, 1), _expected(maps, labels, 1))


def test_float16_maps_use_their_values_and_eps():
    maps, labels, n = _maps_and_labels(seed=8)
    half = maps.astype(np.float16)
    _assert_equal_stats(segment_statistics(half, labels, n), _expected(half, labels, n))


def test_non_finite_maps_are_named():
    maps, labels, n = _maps_and_labels(n=3)
    maps[1, 20, 20] = np.nan
    with pytest.raises(ValueError, match="number 1 of the batch contains NaN"):
        segment_statistics(maps, labels, n)
    maps[1, 20, 20] = np.inf
    with pytest.raises(ValueError, match="'b/1' contains NaN or infinite"):
        segment_statistics(maps, labels, n, names=["b/0", "b/1", "b/2"])
    with pytest.raises(ValueError, match="'k1' contains NaN"):
        stream_statistics(["k0", "k1", "k2"], lambda key: maps[int(key[1])], labels, n, batch_size=2)


@pytest.mark.parametrize("per_image", [False, True])
def test_threads_give_identical_statistics_and_name_the_bad_map(per_image):
    maps, labels, n = _maps_and_labels(n=7, seed=9)
    lab = np.stack([np.roll(labels, i, axis=0) for i in range(len(maps))]) if per_image else labels
    one = segment_statistics(maps, lab, n)
    for threads in (2, 3, 16):  # 16 > maps: one map per chunk
        np.testing.assert_array_equal(segment_statistics(maps, lab, n, threads=threads), one)
    _assert_equal_stats(one, _expected(maps, lab, n))
    maps[5, 0, 0] = np.inf  # in the last chunk of three
    names = [f"m{i}" for i in range(len(maps))]
    with pytest.raises(ValueError, match="'m5' contains NaN or infinite"):
        segment_statistics(maps, lab, n, names=names, threads=3)
    if per_image:
        lab = lab.copy()
        lab[4, 0, 0] = n  # a label out of range in the second chunk
        with pytest.raises(ValueError, match=f"must lie in \\[0, {n}\\).*'m4'"):
            segment_statistics(maps, lab, n, names=names, threads=3)


def test_float64_maps_and_prepared_layout_agree():
    maps, labels, n = _maps_and_labels(seed=3)
    segment_map = SegmentMap.from_labels(labels, n)
    a = segment_statistics(maps.astype(np.float64), segment_map)
    _assert_equal_stats(a, _expected(maps, labels, n))


def test_per_image_labels_match_scipy():
    maps, labels, n = _maps_and_labels(seed=4)
    rng = np.random.default_rng(5)
    per_image = np.stack([np.roll(labels, int(rng.integers(0, 9)), axis=1) for _ in maps])
    stats = segment_statistics(maps, per_image, n)
    _assert_equal_stats(stats, _expected(maps, per_image, n))


def test_bad_labels_and_shapes_raise():
    maps, labels, n = _maps_and_labels()
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        segment_statistics(maps, labels, 3)
    with pytest.raises(ValueError, match="does not match"):
        segment_statistics(maps[:, :10], labels, n)
    with pytest.raises(ValueError, match="integers"):
        segment_statistics(maps, labels.astype(float), n)
    per_image = np.broadcast_to(labels, maps.shape).copy()
    per_image[2, 0, 0] = -1
    with pytest.raises(ValueError, match=r"\[0, 6\), got \[-1, 4\] for map 'm2'"):
        segment_statistics(maps, per_image, n, names=[f"m{i}" for i in range(len(maps))])


def test_matrix_order_matches_the_column_names():
    cols = feature_columns(["patchcore", "padim"], 2, classifier=True)
    assert cols[:6] == [
        "classifier__score",
        "seg0__patchcore__q995",
        "seg0__patchcore__skew",
        "seg0__patchcore__kurtosis",
        "seg0__patchcore__mean",
        "seg0__padim__q995",
    ]
    assert cols[-2:] == ["patchcore__max", "padim__max"]
    assert len(cols) == 4 * 2 * 2 + 2 + 1
    a = np.arange(1, 2 * 4 + 1).reshape(1, 2, 4).repeat(3, 0).astype(float)  # detector A (N, L, 4)
    b = -a
    m = feature_matrix([a, b], [np.ones(3), 2 * np.ones(3)], np.full(3, 9.0))
    row = dict(zip(cols, m[0]))
    assert row["seg1__padim__kurtosis"] == -a[0, 1, 2] and row["seg1__patchcore__mean"] == a[0, 1, 3]
    assert row["padim__max"] == 2.0 and row["classifier__score"] == 9.0
