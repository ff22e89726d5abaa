"""Parity with reference-style code: AP definition, SegAD features and BRF scores on a small fixture."""

import numpy as np
import pytest
from scipy.stats import kurtosis, skew
from sklearn.metrics import auc, average_precision_score, precision_recall_curve

from segad.evaluation.metrics import average_precision
from segad.meta.brf import BRFConfig, brf_scores, fit_brf
from segad.segments.statistics import SegmentMap, feature_matrix, segment_statistics

N_IMAGES, N_DETECTORS, N_SEGMENTS, SIZE = 40, 2, 4, 32


def test_ap_is_step_wise_not_trapezoid():
    labels = np.array([0, 0, 1, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.5, 0.9])
    precision, recall, _ = precision_recall_curve(labels, scores)
    step, trapezoid = average_precision_score(labels, scores), auc(recall, precision)
    assert average_precision(labels, scores) == pytest.approx(step, abs=1e-12)
    assert abs(step - trapezoid) > 1e-3


def _fixture() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maps float32 (K, N, H, W), a static label map (H, W) with 4 segments, image labels (N,)."""
    rng = np.random.default_rng(7)
    labels = np.r_[np.zeros(28, np.int64), np.ones(12, np.int64)]
    maps = rng.gamma(2.0, 1.0, size=(N_DETECTORS, N_IMAGES, SIZE, SIZE)).astype(np.float32)
    maps[:, labels == 1, 4:10, 4:10] += rng.uniform(1, 4, size=(N_DETECTORS, 12, 1, 1)).astype(np.float32)
    segments = np.zeros((SIZE, SIZE), np.int64)
    segments[:, SIZE // 2 :] = 1
    segments[SIZE // 2 :, :] += 2
    return maps, segments, labels


def _reference_features(maps: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Per image: for segment, for detector, [q995, skew, kurtosis, mean]; then per-detector max."""
    rows = []
    for i in range(maps.shape[1]):
        row = []
        for s in range(N_SEGMENTS):
            for k in range(maps.shape[0]):
                sel = maps[k, i][segments == s].astype(np.float64)
                row += [
                    np.quantile(sel, 0.995),
                    skew(sel, bias=True),
                    kurtosis(sel, fisher=True, bias=True),
                    sel.mean(),
                ]
        row += [float(maps[k, i].max()) for k in range(maps.shape[0])]
        rows.append(row)
    return np.asarray(rows, dtype=np.float64)


def test_features_and_brf_scores_match_reference_loop():
    maps, segments, labels = _fixture()
    segment_map = SegmentMap.from_labels(segments, N_SEGMENTS)
    stats = [segment_statistics(maps[k], segment_map) for k in range(N_DETECTORS)]
    ours = feature_matrix(stats, [maps[k].reshape(N_IMAGES, -1).max(axis=1) for k in range(N_DETECTORS)])
    reference = _reference_features(maps, segments)
    assert ours.shape == reference.shape == (N_IMAGES, 4 * N_DETECTORS * N_SEGMENTS + N_DETECTORS)
    np.testing.assert_allclose(ours, reference, rtol=1e-6)
    config = BRFConfig()  # the paper's parameters
    ours_scores = brf_scores(fit_brf(ours, labels, config, seed=0), ours)
    reference_scores = brf_scores(fit_brf(reference, labels, config, seed=0), reference)
    np.testing.assert_array_equal(ours_scores, reference_scores)
