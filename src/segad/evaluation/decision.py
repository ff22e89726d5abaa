"""The decision a quality engineer needs, from the metrics table and the bundle's operating point.

`decision_block` is the first screen of report.md (and the end-of-run summary reuses
`compare_best`): the bundle, its threshold, the miss and false-reject rates it is expected to
make on held-out images with 95 % intervals, the best method against the best single detector on
one consistent method (both metrics from the same method row), and a one-line verdict.

- Method side: the ``selected`` method when the metrics table has one (the do-no-harm selection),
  else the best SegAD combination by AUROC (mean over seeds).
- Detector side: the best single detector by AUROC (methods without ``+``, not ``classifier``).
- Verdict: "pays" when the method's mean AUROC is above the detector's by more than the seeds'
  spread (the larger of the two sample stds), "does not pay" when below by more than that,
  otherwise "not distinguishable"; also "not distinguishable" when the metrics carry the two
  AUROCs' 95 % bootstrap intervals (``auroc_lo`` / ``auroc_hi``) and they overlap, as the
  report's result lines say.
- Rates on the test images: the bundled method and split seed's test scores against the bundle's
  threshold (reject when ``score >= threshold``): miss rate = bad images accepted / bad images,
  false-reject rate = good images rejected / good images, each with a Wilson 95 % interval.

Example:
    >>> import pandas as pd
    >>> rows = [{"dataset": "d", "category": "c", "benchmark": "high_shot", "method": m, "split_seed": s,
    ...          "subset": "all", "auroc": a, "pg2": a - 0.3} for m, a in (("padim", 0.8), ("padim+segad", 0.9))
    ...         for s in ("mean", "std")]
    >>> metrics = pd.DataFrame(rows)
    >>> metrics.loc[metrics.split_seed == "std", ["auroc", "pg2"]] = 0.01
    >>> best = compare_best(metrics, "c")
    >>> best.method, best.detector, best.verdict_word
    ('padim+segad', 'padim', 'pays')
    >>> [round(x, 3) for x in wilson_interval(2, 100)]
    [0.02, 0.006, 0.07]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from segad.columns import CLASSIFIER
from segad.evaluation.bootstrap import rows_overlap
from segad.meta.brf import SEGAD_SUFFIX

#: The method name of the do-no-harm selection in the metrics table.
SELECTED = "selected"
#: Metrics shown for both sides of the comparison.
COMPARED = ("auroc", "pg2")
_TITLES = {"auroc": "AUROC", "pg2": "PG2"}


@dataclass(frozen=True)
class Comparison:
    """The best method against the best single detector, both read from their own rows."""

    method: str
    detector: str
    mean: dict[str, dict[str, float]]  # {method or detector: {metric: mean}}
    std: dict[str, dict[str, float]]  # same, sample std over seeds (NaN with one seed)
    verdict_word: str  # pays | does not pay | not distinguishable
    intervals_overlap: bool = False  # the two AUROCs' 95 % bootstrap intervals overlap

    def cell(self, name: str, metric: str) -> str:
        m, s = self.mean[name].get(metric, math.nan), self.std[name].get(metric, math.nan)
        if pd.isna(m):
            return "–"
        return f"{100 * m:.1f}" + (f" ± {100 * s:.1f}" if not pd.isna(s) else "")

    def verdict(self) -> str:
        """One line: whether SegAD pays on this data."""
        gain = 100 * (self.mean[self.method]["auroc"] - self.mean[self.detector]["auroc"])
        lead = {
            "pays": "SegAD pays on this data",
            "does not pay": "SegAD does not pay on this data",
            "not distinguishable": "SegAD and the best single detector are not distinguishable on this data",
        }[self.verdict_word]
        spreads = [s for s in (self.std[self.method]["auroc"], self.std[self.detector]["auroc"]) if not pd.isna(s)]
        spread = f"seed spread ± {100 * max(spreads):.1f}" if spreads else "one split seed: no spread to compare"
        if self.intervals_overlap:
            spread += "; the 95 % bootstrap intervals overlap"
        return f"{lead}: {self.method} against {self.detector}, AUROC {gain:+.1f} points ({spread})."


def _rows(metrics: pd.DataFrame, category: str, subset: str, seed: str) -> pd.DataFrame:
    table = metrics[
        (metrics["split_seed"].astype(str) == seed) & (metrics["category"] == category) & (metrics["subset"] == subset)
    ]
    return table.drop_duplicates("method").set_index("method")


def compare_best(metrics: pd.DataFrame, category: str, subset: str = "all", by: str = "auroc") -> Comparison | None:
    """The `Comparison` for `category` and `subset` (None when either side has no row or no `by`)."""
    mean, std = _rows(metrics, category, subset, "mean"), _rows(metrics, category, subset, "std")
    if mean.empty or by not in mean:
        return None
    names = mean.index.astype(str)
    if SELECTED in names:
        method = SELECTED
    else:
        combined = mean[names.str.endswith(SEGAD_SUFFIX)][by].dropna()
        if combined.empty:
            return None
        method = str(combined.idxmax())
    single = mean[~names.str.contains("+", regex=False) & (names != CLASSIFIER) & (names != SELECTED)][by].dropna()
    if single.empty or pd.isna(mean.at[method, by]):
        return None
    detector = str(single.idxmax())
    metrics_shown = [m for m in COMPARED if m in mean]

    def values(table: pd.DataFrame, name: str) -> dict[str, float]:
        return {m: float(table.at[name, m]) if name in table.index else math.nan for m in metrics_shown}

    means = {name: values(mean, name) for name in (method, detector)}
    stds = {name: values(std, name) for name in (method, detector)}
    gain = means[method][by] - means[detector][by]
    spread = max((s for s in (stds[method][by], stds[detector][by]) if not pd.isna(s)), default=0.0)
    word = "pays" if gain > spread else "does not pay" if gain < -spread else "not distinguishable"
    overlapping = rows_overlap(mean, method, detector, by)
    if overlapping:
        word = "not distinguishable"
    return Comparison(method, detector, means, stds, word, overlapping)


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float, float]:
    """(k / n, lower, upper) with the Wilson score interval; (nan, nan, nan) when n is 0."""
    if n <= 0:
        return math.nan, math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def rates_at_threshold(
    test_scores: pd.DataFrame, method: str, split_seed: object, threshold: float
) -> dict[str, tuple]:
    """Miss and false-reject rates of `threshold` on the test scores of `method` and `split_seed`:
    {"miss": (k, n, rate, low, high), "false_reject": (...)}; empty when there are no such rows."""
    rows = test_scores[(test_scores["method"] == method) & (test_scores["split_seed"].astype(str) == str(split_seed))]
    rows = rows.drop_duplicates("image_id")
    if rows.empty:
        return {}
    bad = rows.loc[rows["label"] == 1, "score"].to_numpy(float)
    good = rows.loc[rows["label"] == 0, "score"].to_numpy(float)
    missed, rejected = int((bad < threshold).sum()), int((good >= threshold).sum())
    return {
        "miss": (missed, bad.size, *wilson_interval(missed, bad.size)),
        "false_reject": (rejected, good.size, *wilson_interval(rejected, good.size)),
    }


def _rate(values: tuple) -> str:
    k, n, p, low, high = values
    if not n:
        return "– (no images)"
    return f"**{100 * p:.1f} %** (95 % interval {100 * low:.1f}–{100 * high:.1f} %; {k} of {n})"


def decision_block(
    metrics: pd.DataFrame,
    category: str,
    operating_point: Mapping | None = None,
    test_scores: pd.DataFrame | None = None,
) -> list[str]:
    """Markdown lines of the report's first screen (see the module docstring).

    `operating_point`: the bundle stage's report (``operating_point`` dataset: ``bundle_id``,
    ``threshold``, ``method``, ``split_seed``, ``target_miss_rate``, ``expected_pass_rate``,
    ``expected_miss_rate``, ``n_good``, ``n_bad``; ``built: false`` when no bundle was written).
    """
    lines = ["## Decision", "", "| | |", "|---|---|"]
    op = dict(operating_point or {})
    if op and op.get("built", True) and "threshold" in op:
        threshold = float(op["threshold"])
        lines.append(
            f"| bundle | `{op.get('bundle_id', 'unknown')}`: {op.get('method', '?')}, split seed "
            f"{op.get('split_seed', '?')}, category {op.get('category', category)} |"
        )
        lines.append(
            f"| threshold | reject when score ≥ **{threshold:.4g}** (chosen for at most "
            f"{100 * float(op.get('target_miss_rate', math.nan)):.1f} % of bad parts accepted) |"
        )
        rates = (
            rates_at_threshold(
                test_scores, str(op.get("scores_method", op.get("method"))), op.get("split_seed"), threshold
            )
            if (test_scores is not None)
            else {}
        )
        if rates:
            lines.append(f"| expected miss rate (bad parts accepted), test images | {_rate(rates['miss'])} |")
            lines.append(
                f"| expected false-reject rate (good parts rejected), test images | {_rate(rates['false_reject'])} |"
            )
        if op.get("segmentation"):
            lines.append(f"| segments | {op['segmentation']} |")
        n_good, n_bad = int(op.get("n_good", 0)), int(op.get("n_bad", 0))
        miss = round(float(op.get("expected_miss_rate", math.nan)) * n_bad)
        reject = round((1 - float(op.get("expected_pass_rate", math.nan))) * n_good)
        lines.append(
            f"| the same, out-of-fold on the BRF's training rows | miss {_rate((miss, n_bad, *wilson_interval(miss, n_bad)))}, "
            f"false reject {_rate((reject, n_good, *wilson_interval(reject, n_good)))} |"
        )
    else:
        reason = op.get("reason", "the bundle stage did not run") if op else "the bundle stage did not run"
        lines.append(f"| bundle | none written ({reason}) |")
    best = compare_best(metrics, category)
    if best is not None:
        for name, role in ((best.method, "best method"), (best.detector, "best single detector")):
            cells = ", ".join(f"{_TITLES[m]} {best.cell(name, m)}" for m in best.mean[name])
            lines.append(f"| {role} | {name}: {cells} |")
        lines += ["", f"**Verdict:** {best.verdict()}"]
    else:
        lines += ["", "**Verdict:** no SegAD method and single detector to compare in this run."]
    return [*lines, ""]
