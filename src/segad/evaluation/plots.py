"""Figures of the evaluation: ROC curves, score histograms, feature importance, map overlays.

Every function returns a `matplotlib.figure.Figure` built without pyplot (no global state, no
GUI backend), ready for kedro-datasets' ``matplotlib.MatplotlibDataset`` or ``fig.savefig``.

Inputs are plain tables and arrays:
- a *test score table*: one row per (method, split_seed, image) of the test set with columns
  ``method``, ``split_seed``, ``image_id``, ``label`` (0 good / 1 bad), ``unseen`` (bool),
  ``score`` (higher = more anomalous);
- feature importances keyed by the feature column names of docs/schemas.md
  (``seg<l>__<detector>__<stat>``, ``<detector>__max``, ``classifier__score``);
- images as float (3, H, W) in [0, 1], anomaly maps as float (H, W), segment maps as int (H, W).

Example:
    >>> import numpy as np, pandas as pd
    >>> from segad.evaluation.plots import roc_figure
    >>> rng = np.random.default_rng(0)
    >>> table = pd.DataFrame({"method": "patchcore", "split_seed": 0, "image_id": [str(i) for i in range(20)],
    ...                       "label": [0] * 10 + [1] * 10, "unseen": False,
    ...                       "score": np.r_[rng.normal(0, 1, 10), rng.normal(2, 1, 10)]})
    >>> fig = roc_figure(table, title="demo")
    >>> fig.savefig("/tmp/roc.png")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from segad.columns import MAX_STAT, STATS, is_feature_column, parse_column
from segad.evaluation.metrics import auroc, roc_curve

_TEST_COLUMNS = ("method", "split_seed", "image_id", "label", "unseen", "score")


def _check_table(table: pd.DataFrame, what: str) -> None:
    missing = [c for c in _TEST_COLUMNS if c not in table.columns]
    if missing:
        raise KeyError(f"{what}: test score table lacks columns {missing}")
    if table.empty:
        raise ValueError(f"{what}: test score table is empty")


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


#: False-positive rates of the ROC plot's common grid (log axis from 0.1 % to 100 %).
ROC_FPR_GRID = np.logspace(-3, 0, 200)


def roc_figure(table: pd.DataFrame, title: str = "") -> Figure:
    """ROC curves on a log false-positive-rate axis: per method, the mean over split seeds of the
    true-positive rate on a common grid (`ROC_FPR_GRID`), with a ± one sample std band.

    The legend gives each method's AUROC as mean ± sample std over the seeds. The log axis
    spreads the low false-positive rates where a production threshold sits.
    """
    _check_table(table, "roc_figure")
    fig = Figure(figsize=(6.0, 5.0), constrained_layout=True)
    ax = fig.add_subplot()
    methods = list(dict.fromkeys(table["method"]))
    for method, colour in zip(methods, _colours(len(methods)), strict=True):
        rows = table[table["method"] == method]
        aurocs, curves = [], []
        for seed, seed_rows in rows.groupby("split_seed", sort=True):
            name = f"{title} {method} seed {seed}".strip()
            fpr, tpr, _ = roc_curve(seed_rows["label"], seed_rows["score"], name=name)
            aurocs.append(auroc(seed_rows["label"], seed_rows["score"], name=name))
            curves.append(np.interp(ROC_FPR_GRID, fpr, tpr))
        if not curves:
            continue
        mean = np.mean(curves, axis=0)
        spread = f" ± {np.std(aurocs, ddof=1):.3f}" if len(aurocs) > 1 else ""
        ax.plot(ROC_FPR_GRID, mean, color=colour, lw=1.4, label=f"{method} (AUROC {np.mean(aurocs):.3f}{spread})")
        if len(curves) > 1:
            band = np.std(curves, axis=0, ddof=1)
            ax.fill_between(
                ROC_FPR_GRID, np.clip(mean - band, 0, 1), np.clip(mean + band, 0, 1), color=colour, alpha=0.15
            )
    ax.plot(ROC_FPR_GRID, ROC_FPR_GRID, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set(
        xlim=(ROC_FPR_GRID[0], 1),
        ylim=(0, 1.01),
        xlabel="false positive rate (good flagged), log scale",
        ylabel="true positive rate (bad caught)",
        title=f"ROC {title}: mean ± std over split seeds".strip(),
    )
    ax.legend(loc="lower right", fontsize=8)
    return fig


def score_histogram_figure(
    table: pd.DataFrame,
    split_seed: int | str | None = None,
    bins: int = 30,
    title: str = "",
    max_miss_rate: float = 0.02,
) -> Figure:
    """Score histograms of good, seen-bad and unseen-bad test images, one panel per method.

    Like Fig. 6 of the SegAD paper. ``split_seed`` picks the seed (default: the smallest).
    Densities are normalised per group so that small groups stay visible. A vertical line marks
    the threshold the bundle's rule gives on these scores: the `max_miss_rate` quantile of the bad
    scores (parts at or above it are rejected).
    """
    _check_table(table, "score_histogram_figure")
    seeds = sorted(table["split_seed"].unique())
    seed = seeds[0] if split_seed is None else split_seed
    rows = table[table["split_seed"] == seed]
    if rows.empty:
        raise ValueError(f"score_histogram_figure: no rows for split_seed {seed!r}; seeds present: {seeds}")
    methods = list(dict.fromkeys(rows["method"]))
    ncols = min(3, len(methods))
    nrows = int(np.ceil(len(methods) / ncols))
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows), constrained_layout=True)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    any_unseen = bool(((rows["label"] == 1) & rows["unseen"].fillna(False).astype(bool)).any())
    seen_name = "bad (seen)" if any_unseen else "bad"
    groups = (("good", "tab:green"), (seen_name, "tab:red"), ("bad (unseen)", "tab:purple"))
    for ax, method in zip(axes, methods, strict=False):
        m = rows[rows["method"] == method]
        unseen = m["unseen"].fillna(False).astype(bool)
        parts = {
            "good": m.loc[m["label"] == 0, "score"],
            seen_name: m.loc[(m["label"] == 1) & ~unseen, "score"],
            "bad (unseen)": m.loc[(m["label"] == 1) & unseen, "score"],
        }
        edges = np.histogram_bin_edges(m["score"].to_numpy(float), bins=bins)
        for group, colour in groups:
            values = parts[group].to_numpy(float)
            if values.size:
                ax.hist(values, bins=edges, density=True, alpha=0.5, color=colour, label=f"{group} (n={values.size})")
        bad = m.loc[m["label"] == 1, "score"].to_numpy(float)
        if bad.size:
            threshold = float(np.quantile(bad, max_miss_rate))
            ax.axvline(
                threshold, color="black", lw=1.0, ls="--", label=f"threshold {threshold:.3g} ({max_miss_rate:.0%} miss)"
            )
        ax.set(title=method, xlabel="score", ylabel="density")
        ax.legend(fontsize=7)
    for ax in axes[len(methods) :]:
        ax.set_visible(False)
    fig.suptitle(f"Test scores, split_seed {seed} {title}".strip())
    return fig


def importance_table(importances: Mapping[str, float]) -> pd.DataFrame:
    """Parse feature importances into a long table.

    Returns columns ``feature``, ``segment`` (int, or -1 for non-segment features),
    ``detector``, ``stat`` (``q995`` ... or ``max`` / ``score``), ``importance``.
    Unknown names are kept with segment -1, detector = the name, stat ``other``.
    """
    rows = []
    for feature, value in importances.items():
        if not is_feature_column(feature):
            rows.append((feature, -1, feature, "other", float(value)))
            continue
        column = parse_column(feature)
        stat = column.stat or ("score" if column.kind in ("classifier", "score") else MAX_STAT)
        segment = -1 if column.segment is None else column.segment
        rows.append((feature, segment, column.owner, stat, float(value)))
    return pd.DataFrame(rows, columns=["feature", "segment", "detector", "stat", "importance"])


def model_importances(models: Sequence, importance_type: str = "total_gain") -> dict[str, float]:
    """Mean over models of each feature's share of the model's total importance.

    ``models``: fitted XGBoost models (``XGBClassifier`` or ``Booster``) trained on named
    feature columns. Each model's importances (``Booster.get_score(importance_type=...)``;
    features never split on count 0) are divided by their sum, so every model weighs the same,
    then averaged. Returns {feature: share in [0, 1]}, shares summing to 1.
    """
    if not models:
        raise ValueError("model_importances: no models given")
    shares: list[dict[str, float]] = []
    for model in models:
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        scores = booster.get_score(importance_type=importance_type)
        names = booster.feature_names or list(scores)
        total = float(sum(scores.values()))
        shares.append({name: (scores.get(name, 0.0) / total if total > 0 else 0.0) for name in names})
    features = list(dict.fromkeys(name for share in shares for name in share))
    return {name: float(np.mean([share.get(name, 0.0) for share in shares])) for name in features}


def segment_label(segment: int, names: Mapping[int, str] | None = None) -> str:
    """``<part name> (seg<l>)`` where `names` has the segment, else ``seg<l>``."""
    name = (names or {}).get(int(segment))
    return f"{name} (seg{segment})" if name else f"seg{segment}"


def feature_importance_figure(
    importances: Mapping[str, float],
    title: str = "",
    importance_type: str = "gain",
    segment_names: Mapping[int, str] | None = None,
) -> Figure:
    """Importance summed by segment (bars) and a segment x (detector, statistic) heat map.

    ``importances`` maps feature names to non-negative importances (e.g. XGBoost total gain,
    averaged over seeds); features the model never split on may be absent (= 0). Segments are
    named by part where `segment_names` ({label: name}, as in the bundle and inspection.parquet)
    has them.
    """
    table = importance_table(importances)
    if table.empty:
        raise ValueError(f"feature_importance_figure: no importances given {title}".strip())
    seg = table[table["segment"] >= 0]
    other = table[table["segment"] < 0]
    fig = Figure(figsize=(11, 4.2), constrained_layout=True)
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.6])
    by_segment = seg.groupby("segment")["importance"].sum()
    labels = [segment_label(s, segment_names) for s in by_segment.index] + list(other["feature"])
    values = list(by_segment.to_numpy()) + list(other["importance"])
    left.barh(labels[::-1], values[::-1], color="tab:blue")
    left.set(xlabel=f"summed {importance_type}", title="by segment (and global features)")
    if not seg.empty:
        heat = seg.pivot_table(
            index="segment", columns=["detector", "stat"], values="importance", aggfunc="sum", fill_value=0.0
        )
        order = sorted(heat.columns, key=lambda c: (c[0], STATS.index(c[1]) if c[1] in STATS else 99))
        heat = heat[order]
        image = right.imshow(heat.to_numpy(), aspect="auto", cmap="viridis")
        right.set_yticks(range(len(heat.index)), [segment_label(s, segment_names) for s in heat.index])
        right.set_xticks(range(len(order)), [f"{d}\n{s}" for d, s in order], rotation=90, fontsize=7)
        right.set_title(f"{importance_type} by segment and statistic")
        fig.colorbar(image, ax=right)
    else:
        right.set_visible(False)
    fig.suptitle(f"Feature importance {title}".strip())
    return fig


def overlay_figure(cases: Sequence[Mapping], title: str = "", segment_names: Mapping[int, str] | None = None) -> Figure:
    """One row per case: the image with its segments, then one raw anomaly map per detector.

    A legend below names each segment colour (by part where `segment_names` has the label).

    Each case is a mapping with ``image`` (3, H, W) float in [0, 1], ``maps`` {detector: (H, W)},
    ``segments`` (H, W) int labels or None, and ``caption`` (str). The image panel is
    `segad.segments.overlay.overlay` (segment colours, white borders); segment borders are also drawn
    on the maps. Each map has its own colour scale, since raw ranges differ between detectors.
    """
    from segad.segments.overlay import overlay
    from segad.storage.images import resize_labels

    if not cases:
        raise ValueError(f"overlay_figure: no cases to draw {title}".strip())
    n_maps = max(len(c["maps"]) for c in cases)
    fig = Figure(figsize=(2.6 * (1 + n_maps), 2.6 * len(cases) + 0.4), constrained_layout=True)
    axes = fig.subplots(len(cases), 1 + n_maps, squeeze=False)
    for row, case in zip(axes, cases, strict=True):
        image = np.asarray(case["image"], dtype=float)
        segments = case.get("segments")
        if segments is not None:
            row[0].imshow(overlay(image, segments))
        else:
            row[0].imshow(np.clip(image.transpose(1, 2, 0), 0, 1))
        row[0].set_title(case["caption"], fontsize=7)
        for ax, (detector, amap) in zip(row[1:], case["maps"].items(), strict=False):
            amap = np.asarray(amap, dtype=float)
            shown = ax.imshow(amap, cmap="jet")
            if segments is not None:
                labels = resize_labels(np.asarray(segments), amap.shape)
                levels = np.unique(labels)[:-1] + 0.5
                if levels.size:
                    ax.contour(labels, levels=levels, colors="white", linewidths=0.5)
            ax.set_title(detector, fontsize=8)
            fig.colorbar(shown, ax=ax, fraction=0.046)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    shown_labels = sorted({int(v) for c in cases if c.get("segments") is not None for v in np.unique(c["segments"])})
    if shown_labels:
        from matplotlib import colormaps
        from matplotlib.patches import Patch

        handles = [
            Patch(color=colormaps["tab10"](label % 10), label=segment_label(label, segment_names))
            for label in shown_labels
        ]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def worst_cases(table: pd.DataFrame, method: str, split_seed, n: int = 3) -> pd.DataFrame:
    """The ``n`` worst false negatives (bad, lowest scores) and false positives (good, highest).

    Returns rows of ``table`` with an added ``case`` column (``false_negative`` /
    ``false_positive``) and ``rank`` (1 = worst).
    """
    _check_table(table, "worst_cases")
    rows = table[(table["method"] == method) & (table["split_seed"] == split_seed)]
    if rows.empty:
        raise ValueError(f"worst_cases: no test scores for method {method!r}, split_seed {split_seed!r}")
    fn = rows[rows["label"] == 1].nsmallest(n, "score").assign(case="false_negative")
    fp = rows[rows["label"] == 0].nlargest(n, "score").assign(case="false_positive")
    out = pd.concat([fn, fp], ignore_index=True)
    out["rank"] = out.groupby("case").cumcount() + 1
    return out
