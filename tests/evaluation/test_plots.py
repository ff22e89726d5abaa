"""Plots: figures build from tiny tables/arrays, carry the right content, and save as PNG."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from segad.evaluation.metrics import MetricInputError
from segad.evaluation.plots import (
    ROC_FPR_GRID,
    feature_importance_figure,
    importance_table,
    overlay_figure,
    roc_figure,
    score_histogram_figure,
    worst_cases,
)


@pytest.fixture
def table():
    rng = np.random.default_rng(1)
    rows = []
    for method, gap in (("patchcore", 1.0), ("patchcore+segad", 3.0)):
        for seed in (0, 1):
            for i in range(30):
                label = int(i >= 18)
                rows.append(
                    {
                        "method": method,
                        "split_seed": seed,
                        "image_id": f"img{i}",
                        "label": label,
                        "unseen": label == 1 and i % 3 == 0,
                        "score": rng.normal(gap * label, 1.0),
                    }
                )
    return pd.DataFrame(rows)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def test_roc_figure_mean_curve_and_band_per_method_on_a_log_fpr_axis(table):
    fig = roc_figure(table, title="demo")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlim()[0] == pytest.approx(ROC_FPR_GRID[0])
    curves = [line for line in ax.get_lines() if line.get_linestyle() != "--"]
    assert len(curves) == 2  # one mean curve per method (2 seeds each)
    assert len(ax.collections) == 2  # one ± std band per method
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(labels) == 2 and labels[0].startswith("patchcore (AUROC") and "±" in labels[0]
    for line in curves:  # mean TPR on the common grid: monotone, ending at 1
        x, y = line.get_xdata(), line.get_ydata()
        np.testing.assert_array_equal(x, ROC_FPR_GRID)
        assert y[-1] == 1 and np.all(np.diff(y) >= 0)
    one_seed = roc_figure(table[table.split_seed == 0], title="demo")
    assert len(one_seed.axes[0].collections) == 0  # no band from one seed
    assert _png(fig)[:4] == b"\x89PNG"


def test_roc_figure_names_the_set_without_bad_images(table):
    with pytest.raises(MetricInputError, match="demo patchcore seed 0: no bad image"):
        roc_figure(table[table.label == 0], title="demo")


def test_histogram_groups_good_seen_unseen(table):
    fig = score_histogram_figure(table, bins=8)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["patchcore", "patchcore+segad"]
    legend = [t.get_text() for t in visible[0].get_legend().get_texts()]
    assert legend[:3] == ["good (n=18)", "bad (seen) (n=8)", "bad (unseen) (n=4)"]
    assert legend[3].startswith("threshold ") and len(legend) == 4
    no_unseen = score_histogram_figure(table.assign(unseen=False), bins=8)
    assert [t.get_text() for t in no_unseen.axes[0].get_legend().get_texts()][:2] == ["good (n=18)", "bad (n=12)"]
    with pytest.raises(ValueError, match="no rows for split_seed 7"):
        score_histogram_figure(table, split_seed=7)


def test_histograms_mark_the_threshold_of_the_bundle_rule(table):
    fig = score_histogram_figure(table, bins=8, max_miss_rate=0.1)
    ax = fig.axes[0]
    rows = table[(table.split_seed == 0) & (table.method == "patchcore")]
    expected = np.quantile(rows.loc[rows.label == 1, "score"], 0.1)
    (line,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert line.get_xdata()[0] == pytest.approx(expected)
    assert any(
        t.get_text().startswith("threshold ") and "(10% miss)" in t.get_text() for t in ax.get_legend().get_texts()
    )


def test_importance_table_and_figure():
    importances = {
        "seg0__patchcore__q995": 3.0,
        "seg0__patchcore__mean": 1.0,
        "seg2__padim__skew": 2.0,
        "patchcore__max": 5.0,
        "classifier__score": 0.5,
    }
    parsed = importance_table(importances)
    assert parsed.set_index("feature").loc["seg2__padim__skew", ["segment", "detector", "stat"]].tolist() == [
        2,
        "padim",
        "skew",
    ]
    assert parsed.set_index("feature").loc["patchcore__max", ["segment", "stat"]].tolist() == [-1, "max"]
    fig = feature_importance_figure(importances, title="padim+patchcore+segad")
    bars = fig.axes[0]
    widths = {t.get_text(): p.get_width() for t, p in zip(bars.get_yticklabels(), bars.patches, strict=True)}
    assert widths["seg0"] == 4.0 and widths["seg2"] == 2.0 and widths["patchcore__max"] == 5.0
    assert _png(fig)[:4] == b"\x89PNG"
    named = feature_importance_figure(importances, segment_names={0: "background", 2: "solder dot"})
    labels = [t.get_text() for t in named.axes[0].get_yticklabels()]
    assert "background (seg0)" in labels and "solder dot (seg2)" in labels
    assert [t.get_text() for t in named.axes[1].get_yticklabels()] == ["background (seg0)", "solder dot (seg2)"]
    with pytest.raises(ValueError, match="no importances"):
        feature_importance_figure({})


def test_worst_cases_and_overlay(table):
    worst = worst_cases(table, "patchcore", 0, n=2)
    rows = table[(table.method == "patchcore") & (table.split_seed == 0)]
    fn = worst[worst.case == "false_negative"]
    assert fn.score.tolist() == sorted(rows[rows.label == 1].score)[:2]
    fp = worst[worst.case == "false_positive"]
    assert fp.score.tolist() == sorted(rows[rows.label == 0].score, reverse=True)[:2]
    assert worst["rank"].tolist() == [1, 2, 1, 2]
    segments = np.zeros((16, 16), int)
    segments[:, 8:] = 1
    cases = [
        {
            "image": np.full((3, 16, 16), 0.5),
            "maps": {"patchcore": np.random.rand(16, 16), "padim": np.random.rand(16, 16)},
            "segments": segments,
            "caption": f"case {i}",
        }
        for i in range(2)
    ]
    fig = overlay_figure(cases, title="worst", segment_names={1: "wire area"})
    assert len([ax for ax in fig.axes if ax.get_title() in ("patchcore", "padim")]) == 4
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["seg0", "wire area (seg1)"]
    assert _png(fig)[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no test scores for method 'x'"):
        worst_cases(table, "x", 0)
