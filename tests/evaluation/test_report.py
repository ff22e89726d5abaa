"""Report: paper-style table from the metrics table, plots, configuration, versions."""

from __future__ import annotations

import importlib.metadata
import platform

import pandas as pd
import pytest
import yaml

from segad.evaluation.metrics import aggregate_over_seeds
from segad.evaluation.report import (
    method_order,
    package_versions,
    render_report,
    results_table,
    segad_gain,
    selected_verdict,
)

KEYS = ["dataset", "category", "benchmark", "method", "subset"]


def metrics_table(categories=("demo",), subsets=("all", "seen", "unseen")):
    rows = []
    for category in categories:
        for method, base in (("patchcore+segad", 0.9), ("patchcore", 0.8), ("padim+patchcore+segad", 0.95)):
            for subset in subsets:
                for seed, delta in ((0, 0.0), (1, 0.02), (2, 0.04)):
                    rows.append(
                        {
                            "dataset": "demo",
                            "category": category,
                            "benchmark": "high_shot",
                            "method": method,
                            "split_seed": seed,
                            "subset": subset,
                            "auroc": base + delta,
                            "fpr95tpr": 1 - base,
                            "pg2": base - 0.3,
                            "pb2": 0.5,
                            "f1max": 0.7,
                            "ap": 0.75,
                            "n_good": 100,
                            "n_bad": 80,
                        }
                    )
    return aggregate_over_seeds(pd.DataFrame(rows), KEYS)


def test_method_order_puts_detectors_first():
    assert method_order(["padim+patchcore+segad", "patchcore+segad", "patchcore", "padim"]) == [
        "padim",
        "patchcore",
        "patchcore+segad",
        "padim+patchcore+segad",
    ]


def test_results_table_mean_std_in_percent():
    table = results_table(metrics_table(), "demo", "all")
    lines = table.splitlines()
    assert lines[0] == "| method | AUROC | FPR@95TPR | PG2 | PB2 | F1-max | AP | seeds | test good / bad |"
    assert [line.split(" | ")[0] for line in lines[2:]] == [
        "| patchcore",
        "| patchcore+segad",
        "| padim+patchcore+segad",
    ]
    # patchcore AUROC: 0.80, 0.82, 0.84 -> 82.0 ± 2.0 (sample std)
    assert lines[2].startswith("| patchcore | 82.0 ± 2.0 | 20.0 ± 0.0 | 50.0 ± 0.0 |")
    assert lines[2].endswith("| 3 | 100 / 80 |")
    with pytest.raises(ValueError, match="no mean rows for category 'x'"):
        results_table(metrics_table(), "x")


def test_render_report_sections(tmp_path):
    params = {"benchmark": "high_shot", "seeds": [0, 1, 2], "detectors": ["patchcore", "padim"]}
    text = render_report(metrics_table(), params, {"ROC curves": ["plots/roc/roc.png"]}, {"kedro": "1.7.0"})
    assert "## Results (category demo, all test images)" in text
    assert "### Seen defects" in text and "### Unseen defects" in text
    assert "![ROC curves: plots/roc/roc.png](plots/roc/roc.png)" in text
    config = text.split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(config) == params
    assert "| kedro | 1.7.0 |" in text


def test_segad_gain_names_the_best_of_each_side():
    table = metrics_table(subsets=("all",))
    # AUROC means: padim+patchcore+segad 97.0, patchcore 82.0; PG2 65.0 and 50.0
    line = segad_gain(table, "demo")
    assert line == (
        "Best SegAD method against the best single detector: AUROC 97.0 (padim+patchcore+segad) against "
        "82.0 (patchcore): **+15.0**; PG2 65.0 (padim+patchcore+segad) against 50.0 (patchcore): **+15.0**."
    )
    assert line in render_report(table, {}, {}, {})
    # a SegAD method below the detector shows a negative gain; the classifier is not a detector
    worse = table.copy()
    worse.loc[worse["method"].str.endswith("segad"), "auroc"] -= 0.2  # 77.0 and 72.0
    classifier = table[table["method"] == "patchcore"].assign(method="classifier", auroc=0.99)
    line = segad_gain(pd.concat([worse, classifier]), "demo")
    assert "AUROC 77.0 (padim+patchcore+segad) against 82.0 (patchcore): **-5.0**" in line
    only_segad = table[table["method"].str.endswith("segad")]
    assert segad_gain(only_segad, "demo") is None
    no_pg2 = table.assign(pg2=float("nan"))
    assert "PG2" not in segad_gain(no_pg2, "demo")


def test_the_verdict_is_the_selected_method_against_the_best_detector():
    table = metrics_table(subsets=("all",))
    assert selected_verdict(table, "demo") is None  # no selection in this run
    selected = table[table["method"] == "patchcore+segad"].assign(method="selected")
    both = pd.concat([table, selected])
    line = selected_verdict(both, "demo")
    assert line == (
        "Selected method (what the bundle ships) against the best single detector: AUROC 92.0 (selected) "
        "against 82.0 (patchcore): **+10.0**; PG2 60.0 (selected) against 50.0 (patchcore): **+10.0**."
    )
    report = render_report(both, {}, {}, {})
    assert report.index(line) < report.index("Best SegAD method against")
    assert segad_gain(both, "demo") == segad_gain(table, "demo")  # `selected` is no detector
    assert method_order(["selected", "patchcore+segad", "padim"])[-1] == "selected"
    # with bootstrap intervals on the mean rows: overlapping ones are called not distinguishable
    means = both["split_seed"] == "mean"
    both.loc[means, ["auroc_lo", "auroc_hi", "pg2_lo", "pg2_hi"]] = [0.5, 0.99, 0.1, 0.2]
    both.loc[means & (both["method"] == "selected"), ["pg2_lo", "pg2_hi"]] = [0.55, 0.65]
    line = selected_verdict(both, "demo")
    assert "**+10.0** (not distinguishable: the 95 % bootstrap intervals overlap); PG2" in line
    assert line.endswith("**+10.0**.")  # PG2: [55, 65] against [10, 20]
    assert "92.0 ± 2.0 [50.0, 99.0]" in results_table(both, "demo")


def test_several_categories_use_the_mean_and_per_category_tables():
    table = metrics_table(categories=("candle", "pcb1", "mean"), subsets=("all",))
    text = render_report(table, {}, {}, {})
    assert "## Results (mean over categories, all test images)" in text
    assert "### AUROC per category" in text and "| candle |" in text
    assert "Seen defects" not in text


def test_package_versions_match_metadata():
    versions = package_versions()
    assert versions["kedro"] == importlib.metadata.version("kedro")
    assert versions["numpy"] == importlib.metadata.version("numpy")
    assert package_versions(["surely-not-a-package-xyz"])["surely-not-a-package-xyz"] == "missing"
    assert package_versions(["scipy"]) == {
        "python": platform.python_version(),
        "scipy": importlib.metadata.version("scipy"),
    }
