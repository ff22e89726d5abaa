"""segad.production.operating_point: the PG threshold on held-out scores, and the decision."""

from __future__ import annotations

import numpy as np
import pytest

from segad.evaluation.metrics import pg
from segad.meta.brf import BRFConfig, brf_scores, fit_brf
from segad.production.operating_point import choose_operating_point, decide, out_of_fold_scores


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
        "accept",
        "reject",
        "reject",
        "error",
        "error",
    ]


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
