"""Metrics: hand-computed cases, cross-checks against scikit-learn and anomalib, aggregation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from anomalib.metrics.aupr import _AUPR
from anomalib.metrics.auroc import _AUROC
from anomalib.metrics.f1_score import _F1Max
from anomalib.metrics.pg_pb import _PBn, _PGn
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from segad.evaluation.metrics import (
    METRIC_COLUMNS,
    ImageMetrics,
    MetricInputError,
    aggregate_over_seeds,
    auroc,
    average_precision,
    f1_max,
    fpr_at_tpr,
    image_metrics,
    pb,
    pg,
    roc_curve,
)


def _cases():
    rng = np.random.default_rng(0)
    cases = []
    for i in range(6):  # continuous random scores, varying class balance
        n_good, n_bad = int(rng.integers(20, 120)), int(rng.integers(5, 60))
        labels = np.r_[np.zeros(n_good, int), np.ones(n_bad, int)]
        scores = np.r_[rng.normal(0, 1, n_good), rng.normal(1.0 + 0.3 * i, 1.5, n_bad)]
        perm = rng.permutation(labels.size)
        cases.append(pytest.param(labels[perm], scores[perm], id=f"random{i}"))
    for i in range(6):  # heavily tied scores (few distinct values, shared across classes)
        n_good, n_bad = int(rng.integers(20, 80)), int(rng.integers(5, 40))
        labels = np.r_[np.zeros(n_good, int), np.ones(n_bad, int)]
        scores = np.r_[rng.integers(0, 4, n_good), rng.integers(1, 5, n_bad)].astype(float)
        perm = rng.permutation(labels.size)
        cases.append(pytest.param(labels[perm], scores[perm], id=f"tied{i}"))
    return cases


CASES = _cases()


def _anomalib(metric, labels, scores):
    metric.update(torch.as_tensor(scores, dtype=torch.float32), torch.as_tensor(labels))
    return float(metric.compute())


@pytest.mark.parametrize(("labels", "scores"), CASES)
def test_auroc_and_ap_match_sklearn(labels, scores):
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize(("labels", "scores"), CASES)
def test_f1max_and_roc_curve_match_sklearn(labels, scores):
    precision, recall, _ = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    assert f1_max(labels, scores) == pytest.approx(f1.max(), abs=1e-12)
    fpr, tpr, thr = roc_curve(labels, scores)
    sk_fpr, sk_tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-12)
    assert np.isinf(thr[0]) and np.all(np.diff(thr[1:]) < 0)


@pytest.mark.parametrize(("labels", "scores"), CASES)
def test_matches_anomalib_metrics(labels, scores):
    # anomalib computes in float32; values are rates of whole images, so float32 is exact enough
    scores = scores.astype(np.float32).astype(np.float64)
    assert auroc(labels, scores) == pytest.approx(_anomalib(_AUROC(), labels, scores), abs=1e-5)
    assert average_precision(labels, scores) == pytest.approx(_anomalib(_AUPR(), labels, scores), abs=1e-5)
    assert f1_max(labels, scores) == pytest.approx(_anomalib(_F1Max(), labels, scores), abs=1e-5)
    for n in (2, 5, 10, 30):
        assert pg(labels, scores, n) == pytest.approx(_anomalib(_PGn(fnr=n / 100), labels, scores), abs=1e-6)
        assert pb(labels, scores, n) == pytest.approx(_anomalib(_PBn(fpr=n / 100), labels, scores), abs=1e-6)


@pytest.mark.parametrize(("labels", "scores"), CASES)
def test_fpr95_is_one_minus_pg5(labels, scores):
    assert fpr_at_tpr(labels, scores, 0.95) == pytest.approx(1.0 - pg(labels, scores, 5), abs=1e-12)
    m = image_metrics(labels, scores, name="case")
    assert m.fpr95tpr == pytest.approx(1.0 - pg(labels, scores, 5), abs=1e-12)
    assert m.pg2 == pg(labels, scores, 2) and m.pb2 == pb(labels, scores, 2)
    assert (m.n_good, m.n_bad) == (int((labels == 0).sum()), int((labels == 1).sum()))


def test_hand_computed_thresholds():
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    scores = np.array([1.0, 2.0, 3.0, 4.0, 10.0, 5.0, 6.0, 7.0])
    # 2% quantile of bad = 5 + 0.02*2*1 = 5.04; goods below: 1,2,3,4 -> 4/5
    assert pg(labels, scores, 2) == pytest.approx(0.8)
    # 98% quantile of good = 4 + 0.92*6 = 9.52; no bad above
    assert pb(labels, scores, 2) == 0.0
    # 50% quantile of good = 3; all bad above
    assert pb(labels, scores, 50) == 1.0
    # FPR@95TPR: 5% quantile of bad = 5.1; goods >= 5.1: only 10 -> 1/5
    assert fpr_at_tpr(labels, scores) == pytest.approx(0.2)
    assert auroc(labels, scores) == pytest.approx(12 / 15)
    # perfect separation
    assert image_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == ImageMetrics(1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2, 2)


@pytest.mark.parametrize(("labels", "missing"), [([0, 0, 0], "no bad image"), ([1, 1], "no good image")])
def test_missing_class_names_the_set(labels, missing):
    with pytest.raises(MetricInputError, match=f"patchcore seed 3 unseen: {missing}"):
        image_metrics(labels, np.arange(len(labels), dtype=float), name="patchcore seed 3 unseen")


def test_bad_inputs_are_rejected():
    with pytest.raises(MetricInputError, match="NaN or infinite"):
        auroc([0, 1], [0.1, np.nan], name="s")
    with pytest.raises(MetricInputError, match="labels must be 0"):
        auroc([0, 2], [0.1, 0.2], name="s")
    with pytest.raises(MetricInputError, match="same length"):
        auroc([0, 1, 1], [0.1, 0.2], name="s")
    with pytest.raises(ValueError, match="percentage"):
        pg([0, 1], [0.1, 0.2], n=200)


def test_aggregate_over_seeds():
    rows = []
    for method, base in (("patchcore", 0.8), ("patchcore+segad", 0.9)):
        for seed, delta in zip((0, 1, 2), (0.0, 0.02, 0.04), strict=True):
            rows.append(
                {
                    "method": method,
                    "subset": "all",
                    "split_seed": seed,
                    **{c: base + delta for c in METRIC_COLUMNS},
                    "n_good": 10,
                    "n_bad": 4 + seed,
                }
            )
    table = pd.DataFrame(rows)
    out = aggregate_over_seeds(table, keys=["method", "subset"])
    assert list(out.columns) == list(table.columns)
    assert list(out["split_seed"]) == ["0", "1", "2"] * 2 + ["mean", "std"] * 2
    mean = out[(out.method == "patchcore+segad") & (out.split_seed == "mean")].iloc[0]
    std = out[(out.method == "patchcore+segad") & (out.split_seed == "std")].iloc[0]
    assert mean.auroc == pytest.approx(0.92)
    assert std.auroc == pytest.approx(np.std([0.9, 0.92, 0.94], ddof=1))
    assert mean.n_bad == pytest.approx(5.0)
    with pytest.raises(ValueError, match="duplicated"):
        aggregate_over_seeds(pd.concat([table, table.iloc[:1]]), keys=["method", "subset"])


def test_average_precision_never_exceeds_one():
    """sklearn's sum of steps gives 1.0000000000000002 here (20 bad images ranked above 1 good one)."""
    labels, scores = np.r_[0, np.ones(20)], np.arange(21.0)
    assert average_precision_score(labels, scores) > 1.0
    assert average_precision(labels, scores) == 1.0
