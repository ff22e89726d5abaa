"""segad.production.explain: SHAP contributions per segment and per detector."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segad.columns import feature_columns
from segad.meta.brf import BRFConfig, brf_scores, fit_brf
from segad.production.explain import (
    ContributionGroups,
    contribution_groups,
    detector_contributions,
    group_contributions,
    top_segment,
)


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
    assert list(grouped.columns) == ["contrib_seg0", "contrib_seg1", "contrib_seg2", "contrib_global", "contrib_bias"]
    np.testing.assert_allclose(grouped.sum(axis=1), brf_scores(model, features), atol=1e-4)
    # the informative segment explains the bad parts
    assert (top_segment(grouped)[labels == 1] == 2).mean() > 0.8
    with pytest.raises(ValueError, match="do not match"):
        group_contributions(contribs[:, :-1], columns)


def test_top_segment_is_minus_one_without_positive_contribution():
    grouped = pd.DataFrame(
        {
            "contrib_seg0": [-1.0, 0.5],
            "contrib_seg1": [-0.5, 2.0],
            "contrib_global": [3.0, 0.0],
            "contrib_bias": [0.0, 0.0],
        }
    )
    assert top_segment(grouped).tolist() == [-1, 1]


def test_groups_and_owners_follow_the_column_grammar():
    """The classifier score (first column, as in the paper's equation) is global and its own owner."""
    columns = feature_columns(["padim", "patchcore"], n_segments=2, classifier=True)
    assert columns[0] == "classifier__score"
    groups = contribution_groups(columns)
    assert groups[0] == "global" and groups[-2:] == ["global", "global"]
    assert sorted(set(groups)) == ["global", "seg0", "seg1"]
    contribs = np.arange(2 * (len(columns) + 1), dtype=np.float64).reshape(2, -1)
    owners = detector_contributions(contribs, columns)
    assert list(owners.columns) == ["contrib_det_classifier", "contrib_det_padim", "contrib_det_patchcore"]
    np.testing.assert_allclose(owners.sum(axis=1) + contribs[:, -1], contribs.sum(axis=1))
    np.testing.assert_array_equal(owners["contrib_det_classifier"], contribs[:, 0])
    with pytest.raises(ValueError, match="'seg0__padim' is not a feature column"):
        contribution_groups(["seg0__padim"])


def test_contribution_groups_sum_every_segment_and_owner_in_one_product():
    """A bundle's groups cover all L segments (one the model does not read sums to 0) and put its
    owners in the bundle's order; the sums equal the per-frame functions and the bias is its own."""
    columns = feature_columns(["padim", "patchcore"], n_segments=3, classifier=True)
    columns = [c for c in columns if not c.startswith("seg1__")]  # segment 1 dropped by the BRF
    groups = ContributionGroups.of(columns, n_segments=3, owners=["padim", "patchcore", "classifier"])
    assert groups.segment_columns == ["contrib_seg0", "contrib_seg1", "contrib_seg2", "contrib_global", "contrib_bias"]
    assert groups.detector_columns == ["contrib_det_padim", "contrib_det_patchcore", "contrib_det_classifier"]
    contribs = np.random.default_rng(1).normal(size=(4, len(columns) + 1))
    segment_part, detector_part = groups.sum(contribs)
    np.testing.assert_allclose(segment_part.sum(axis=1), contribs.sum(axis=1))
    np.testing.assert_array_equal(segment_part[:, 1], 0.0)
    np.testing.assert_allclose(segment_part[:, -1], contribs[:, -1])
    frame = group_contributions(contribs, columns)
    np.testing.assert_allclose(segment_part[:, [0, 2, 3, 4]], frame.to_numpy())
    owners = detector_contributions(contribs, columns)
    np.testing.assert_allclose(detector_part, owners[groups.detector_columns].to_numpy())
    with pytest.raises(ValueError, match="do not match"):
        groups.sum(contribs[:, :-1])
    with pytest.raises(ValueError, match="'seg2__padim__q995' is outside 2 segments"):
        ContributionGroups.of(columns, n_segments=2)
    with pytest.raises(ValueError, match="'classifier__score' is outside 3 segments and owners"):
        ContributionGroups.of(columns, n_segments=3, owners=["padim", "patchcore"])


def test_contribution_groups_top_segment_skips_rows_not_explained():
    groups = ContributionGroups.of(feature_columns(["padim"], n_segments=2), n_segments=2)
    segment_part = np.array([[0.2, 0.7, 5.0, 0.0], [-0.1, -0.3, 2.0, 1.0], [np.nan] * 4])
    assert groups.top_segment(segment_part).tolist() == [1, -1, -1]
