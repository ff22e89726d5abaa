"""Report: paper-style table from the metrics table, plots, configuration, versions."""

from __future__ import annotations

import importlib.metadata
import platform

import pandas as pd
import pytest
import yaml

from segad.evaluation.decision import compare_best
from segad.evaluation.metrics import aggregate_over_seeds
from segad.evaluation.report import (
    method_order,
    package_versions,
    ran_parameters,
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


def test_report_opens_with_the_decision_on_one_consistent_method():
    table = metrics_table(subsets=("all",))
    # PG2 is best for patchcore+segad here, AUROC for padim+patchcore+segad: one method gives both
    table.loc[table["method"] == "patchcore+segad", "pg2"] = 0.99
    op = {
        "bundle_id": "20261206T023807Z-44e419db",
        "method": "padim+patchcore+segad",
        "split_seed": 0,
        "category": "demo",
        "threshold": 1.5,
        "target_miss_rate": 0.02,
        "expected_pass_rate": 0.9,
        "expected_miss_rate": 0.0,
        "n_good": 50,
        "n_bad": 20,
        "segmentation": "auto (chosen out of fold): auto:kmeans(4) on 64 good train images",
    }
    scores = pd.DataFrame(
        {
            "method": "padim+patchcore+segad",
            "split_seed": 0,
            "image_id": [f"i{k}" for k in range(10)],
            "label": [0] * 6 + [1] * 4,
            "score": [0.0, 0.1, 0.2, 0.3, 1.6, 2.0, 1.0, 1.5, 3.0, 4.0],  # 2 of 6 good rejected, 1 of 4 bad missed
        }
    )
    text = render_report(table, {}, {}, {}, operating_point=op, test_scores=scores)
    first = "\n".join(text.splitlines()[:25])
    assert "`20261206T023807Z-44e419db`" in first
    assert "reject when score ≥ **1.5**" in first
    assert "| segments | auto (chosen out of fold): auto:kmeans(4) on 64 good train images |" in first
    assert "test images | **25.0 %** (95 % interval 4.6–69.9 %; 1 of 4)" in first
    assert (
        "false-reject rate (good parts rejected), test images | **33.3 %** (95 % interval 9.7–70.0 %; 2 of 6)" in first
    )
    assert "| best method | padim+patchcore+segad: AUROC 97.0 ± 2.0, PG2 65.0 ± 0.0 |" in first
    assert "| best single detector | patchcore: AUROC 82.0 ± 2.0, PG2 50.0 ± 0.0 |" in first
    assert "**Verdict:** SegAD pays on this data: padim+patchcore+segad against patchcore, AUROC +15.0" in first
    # no bundle: said so, the comparison stays
    bare = render_report(table, {}, {}, {}, operating_point={"built": False, "reason": "bundle.build is false"})
    assert "| bundle | none written (bundle.build is false) |" in bare


def test_verdict_follows_the_spread_over_seeds_and_prefers_the_selected_method():
    table = metrics_table(subsets=("all",))
    close = table.copy()
    close.loc[close["method"].str.endswith("segad"), "auroc"] = (
        close.loc[close["method"] == "patchcore", "auroc"].iloc[0] + 0.01
    )
    assert compare_best(close, "demo").verdict_word == "not distinguishable"  # +1.0 within ± 2.0
    worse = table.copy()
    worse.loc[worse["method"].str.endswith("segad"), "auroc"] -= 0.2
    assert compare_best(worse, "demo").verdict_word == "does not pay"
    classifier = table[table["method"] == "patchcore"].assign(method="classifier", auroc=0.99)
    assert compare_best(pd.concat([table, classifier]), "demo").detector == "patchcore"  # not a detector
    selected = table[table["method"] == "patchcore+segad"].assign(method="selected")
    assert compare_best(pd.concat([table, selected]), "demo").method == "selected"
    assert compare_best(table[table["method"].str.endswith("segad")], "demo") is None


def test_overlapping_bootstrap_intervals_make_the_verdict_not_distinguishable():
    table = metrics_table(subsets=("all",))
    assert compare_best(table, "demo").verdict_word == "pays"  # +15 points against a spread of 2
    apart = table.assign(auroc_lo=table["auroc"] - 0.01, auroc_hi=table["auroc"] + 0.01)
    assert compare_best(apart, "demo").verdict_word == "pays"  # intervals apart: the gain stands
    wide = table.assign(auroc_lo=0.5, auroc_hi=1.0)
    best = compare_best(wide, "demo")
    assert best.verdict_word == "not distinguishable" and best.intervals_overlap
    assert "the 95 % bootstrap intervals overlap" in best.verdict()
    unknown = wide.assign(auroc_lo=float("nan"))  # no interval (one test image of a class): the spread decides
    assert compare_best(unknown, "demo").verdict_word == "pays"


def test_the_appendix_holds_only_the_blocks_that_ran():
    params = {
        "dataset": {"layout": "vad"},
        "detectors": ["patchcore"],
        "anomaly_maps": {"patchcore": {"x": 1}, "padim": {"y": 2}, "cache": "on"},
        "classifier": {"enabled": False, "epochs": 3},
        "demo": {"n": 1},
        "score": {"input": "x"},
        "seeds": [0],
    }
    assert ran_parameters(params) == {
        "dataset": {"layout": "vad"},
        "detectors": ["patchcore"],
        "anomaly_maps": {"patchcore": {"x": 1}, "cache": "on"},
        "classifier": {"enabled": False},
        "seeds": [0],
    }


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
