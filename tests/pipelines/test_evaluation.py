"""Evaluation pipeline on tiny tables built here: joins, subsets, categories, aggregation, outputs."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pandas import CSVDataset
from kedro_datasets.text import TextDataset
from PIL import Image

from segad.columns import feature_columns
from segad.config import DatasetConfig, PlotOptions, ReportOptions
from segad.evaluation.metrics import image_metrics
from segad.meta.brf import BRFConfig, fit_brf
from segad.pipelines.evaluation import create_pipeline
from segad.pipelines.evaluation.nodes import compute_metrics, label_test_scores, plot_feature_importance
from segad.pipelines.report import create_pipeline as report_pipeline
from segad.production.assemble import BundleOptions
from segad.segments.segment_maps import SegmentMapConfig, SegmentMaps
from segad.storage.map_store import MapStore

ROOT = Path(__file__).resolve().parents[2]
SEEDS = (0, 1, 2)


def make_tables(categories=("demo",), unseen=True, n_good=12, n_bad=8, n_train=6):
    """image_index, splits and scores of two methods; SegAD separates better than the detector."""
    rng = np.random.default_rng(0)
    index, splits, scores = [], [], []
    for category in categories:
        ids = []
        for i in range(n_train):
            ids.append((f"{category}/train/good/{i}.png", "train", 0, "good", False))
        for i in range(n_good):
            ids.append((f"{category}/test/good/{i}.png", "test", 0, "good", False))
        for i in range(n_bad):
            is_unseen = unseen and i % 2 == 1
            ids.append((f"{category}/test/bad/{i}.png", "test", 1, "burn" if is_unseen else "crack", is_unseen))
        for image_id, split, label, defect, uns in ids:
            index.append(
                {
                    "image_id": image_id,
                    "dataset": "demo",
                    "category": category,
                    "split": split,
                    "label": label,
                    "defect_type": defect,
                    "unseen": uns,
                }
            )
            for seed in SEEDS:
                role = (
                    "test"
                    if split == "test"
                    else ("detector_train" if zlib.crc32(f"{image_id}/{seed}".encode()) % 2 else "brf_train")
                )
                splits.append({"image_id": image_id, "split_seed": seed, "role": role, "in_benchmark": True})
                for method, gap in (("patchcore", 0.8), ("patchcore+segad", 2.5)):
                    scores.append(
                        {
                            "image_id": image_id,
                            "split_seed": seed,
                            "method": method,
                            "score": rng.normal(gap * label, 1.0),
                        }
                    )
    return pd.DataFrame(index), pd.DataFrame(splits), pd.DataFrame(scores)


def test_label_test_scores_keeps_only_test_rows_and_checks_completeness():
    index, splits, scores = make_tables()
    labelled = label_test_scores(scores, index, splits)
    assert set(labelled["split_seed"]) == set(SEEDS)
    assert len(labelled) == 2 * len(SEEDS) * 20  # two methods x seeds x 20 test images
    assert not labelled["image_id"].str.contains("train").any()
    incomplete = scores.drop(
        index=scores[
            (scores.method == "patchcore") & (scores.split_seed == 1) & scores.image_id.str.contains("test/bad/3")
        ].index
    )
    with pytest.raises(ValueError, match="method 'patchcore' split_seed 1 lacks 1 of 20 test images"):
        label_test_scores(incomplete, index, splits)
    with pytest.raises(ValueError, match="method 'patchcore' has no test scores for split_seed\\(s\\) \\[2\\]"):
        label_test_scores(scores[~((scores.method == "patchcore") & (scores.split_seed == 2))], index, splits)
    with pytest.raises(ValueError, match="scores lacks columns"):
        label_test_scores(scores.drop(columns="score"), index, splits)


def test_metrics_subsets_match_direct_computation():
    index, splits, scores = make_tables()
    table = compute_metrics(label_test_scores(scores, index, splits), "high_shot")
    assert list(table.columns) == [
        "dataset",
        "category",
        "benchmark",
        "method",
        "split_seed",
        "subset",
        "auroc",
        "fpr95tpr",
        "pg2",
        "pb2",
        "f1max",
        "ap",
        "n_good",
        "n_bad",
        "auroc_lo",
        "auroc_hi",
        "pg2_lo",
        "pg2_hi",
        "pb2_lo",
        "pb2_hi",
    ]
    # bootstrap intervals on the mean rows only, around the mean
    means = table[table.split_seed == "mean"]
    assert means.auroc_lo.notna().all() and table[table.split_seed != "mean"].auroc_lo.isna().all()
    assert ((means.auroc_lo <= means.auroc) & (means.auroc <= means.auroc_hi)).all()
    assert set(table["subset"]) == {"all", "seen", "unseen"}
    assert set(table["split_seed"]) == {"0", "1", "2", "mean", "std"}
    # unseen subset of seed 1 = all good test images + unseen bad, recomputed by hand
    labelled = label_test_scores(scores, index, splits)
    rows = labelled[
        (labelled.method == "patchcore") & (labelled.split_seed == 1) & ((labelled.label == 0) | labelled.unseen)
    ]
    expected = image_metrics(rows.label, rows.score)
    got = table[(table.method == "patchcore") & (table.split_seed == "1") & (table.subset == "unseen")].iloc[0]
    assert got.auroc == pytest.approx(expected.auroc) and got.pg2 == pytest.approx(expected.pg2)
    assert (got.n_good, got.n_bad) == (12, 4)
    mean = table[(table.method == "patchcore") & (table.split_seed == "mean") & (table.subset == "all")].iloc[0]
    per_seed = table[(table.method == "patchcore") & table.split_seed.isin(["0", "1", "2"]) & (table.subset == "all")]
    assert mean.auroc == pytest.approx(per_seed.auroc.mean())
    # detectors alone come before SegAD combinations
    assert list(dict.fromkeys(table["method"])) == ["patchcore", "patchcore+segad"]


def test_no_unseen_means_only_all_and_several_categories_get_a_mean():
    index, splits, scores = make_tables(categories=("candle", "pcb1"), unseen=False)
    table = compute_metrics(label_test_scores(scores, index, splits), "visa_supervised")
    assert set(table["subset"]) == {"all"}
    assert set(table["category"]) == {"candle", "pcb1", "mean"}
    per_cat = table[(table.split_seed == "0") & (table.method == "patchcore") & (table.category != "mean")]
    mean_row = table[(table.split_seed == "0") & (table.method == "patchcore") & (table.category == "mean")].iloc[0]
    assert mean_row.auroc == pytest.approx(per_cat.auroc.mean())
    assert mean_row.n_good == per_cat.n_good.sum()


def test_missing_class_is_a_clear_error():
    index, splits, scores = make_tables(unseen=False)
    labelled = label_test_scores(scores, index, splits)
    with pytest.raises(ValueError, match="category demo, method patchcore, split_seed 0, subset all: no bad image"):
        compute_metrics(labelled[labelled.label == 0], "high_shot")


def _run_inputs(tmp_path, index, splits, scores):
    """Images, anomaly maps, segment maps and BRF models for the test images of `index`."""
    size = 32
    image_dir = tmp_path / "images"
    index = index.copy()
    index["path"] = [str(image_dir / image_id) for image_id in index["image_id"]]
    rng = np.random.default_rng(3)
    for path in index["path"]:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    store = MapStore(tmp_path / "maps")
    map_rows = []
    for row in splits[splits.role == "test"].itertuples():
        key = f"m{row.split_seed}/{row.image_id.replace('/', '_').removesuffix('.png')}"
        store.write(key, rng.gamma(2.0, 1.0, (size, size)).astype(np.float32))
        map_rows.append(
            {"image_id": row.image_id, "detector": "patchcore", "split_seed": row.split_seed, "map_key": key}
        )
    segments = np.zeros((size, size), np.int64)
    segments[size // 2 :] = 1
    segmentation = SegmentMaps(
        method="static", size=(size, size), n_segments={"demo": 2}, static_maps={"demo": segments}
    )
    columns = feature_columns(["patchcore"], 2)
    models = {}
    for seed in SEEDS:
        x = pd.DataFrame(rng.normal(size=(40, len(columns))), columns=columns)
        y = np.r_[np.zeros(30), np.ones(10)]
        x.loc[y == 1, "seg1__patchcore__q995"] += 3.0  # one informative feature
        model = fit_brf(x, y, BRFConfig(n_estimators=2, num_parallel_tree=3, n_jobs=1), seed=seed)
        models[f"demo/high_shot/demo/patchcore+segad/split_seed_{seed}"] = lambda m=model: m
    models["demo/high_shot/other_category/patchcore+segad/split_seed_0"] = lambda: pytest.fail(
        "stale model must not be read"
    )
    models["demo/one_class/demo/patchcore+segad/split_seed_0"] = lambda: pytest.fail("other regime must not be read")
    return index, store, pd.DataFrame(map_rows), segmentation, models


@pytest.mark.slow
def test_pipeline_writes_metrics_plots_and_report(tmp_path):
    index, splits, scores = make_tables()
    index, store, map_index, segmentation, models = _run_inputs(tmp_path, index, splits, scores)
    out = tmp_path / "08_reporting"
    plot_dirs = {
        "segments": "plots/segments",
        "roc_curves": "plots/roc",
        "score_histograms": "plots/histograms",
        "feature_importance": "plots/importance",
        "overlays": "plots/overlays",
    }
    catalog = DataCatalog(
        {
            "scores": MemoryDataset(scores.assign(dataset="demo", benchmark="high_shot")),
            "image_index": MemoryDataset(index),
            "splits": MemoryDataset(splits),
            "brf_models": MemoryDataset(models, copy_mode="assign"),
            "segment_maps": MemoryDataset(segmentation, copy_mode="assign"),
            "segmentation_selection": MemoryDataset(pd.DataFrame()),  # no automatic segments to choose
            "params:segmentation": MemoryDataset(SegmentMapConfig(method="static", path="given.png")),
            "patchcore.map_index": MemoryDataset(map_index),
            "patchcore.map_store": MemoryDataset(store, copy_mode="assign"),
            "metrics": CSVDataset(filepath=str(out / "metrics.csv"), save_args={"index": False}),
            **{f"evaluation.{key}": MatplotlibDataset(filepath=str(out / folder)) for key, folder in plot_dirs.items()},
            "report": TextDataset(filepath=str(out / "report.md")),
            "params:benchmark": MemoryDataset("high_shot"),
            "params:dataset": MemoryDataset(DatasetConfig(layout="demo", name="demo")),
            "params:evaluation.plots": MemoryDataset(
                PlotOptions(
                    split_seed=None, histogram_bins=10, n_worst=2, overlay_method=None, importance_type="total_gain"
                )
            ),
            "params:evaluation.report": MemoryDataset(ReportOptions(plot_dirs=plot_dirs)),
            "parameters": MemoryDataset({"benchmark": "high_shot", "seeds": list(SEEDS)}),
            "operating_point": MemoryDataset({"built": False, "reason": "bundle.build is false"}),
            "params:bundle": MemoryDataset(BundleOptions(max_miss_rate=0.1)),
        }
    )
    SequentialRunner().run(create_pipeline(["patchcore"]) + report_pipeline(), catalog)
    metrics = pd.read_csv(out / "metrics.csv")
    assert {"mean", "std"} <= set(metrics["split_seed"].astype(str))
    pngs = [
        "plots/roc/roc.png",
        "plots/histograms/histogram.png",
        "plots/importance/importance_patchcore_segad.png",
        "plots/overlays/overlays.png",
    ]
    for png in pngs:
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
    report = (out / "report.md").read_text()
    for png in pngs:
        assert f"({png})" in report
    segments = sorted((out / "plots/segments").glob("*.png"))  # the segments the features used, per category
    assert segments and all(f"(plots/segments/{png.name})" in report for png in segments)
    assert "## Segments of each category" in report
    assert "| patchcore+segad |" in report and "### Unseen defects" in report
    assert "| kedro |" in report and "benchmark: high_shot" in report
    assert report.splitlines()[4] == "## Decision" and "none written (bundle.build is false)" in report


def test_importance_reads_only_this_runs_models(tmp_path):
    index, splits, scores = make_tables()
    _, _, _, _, models = _run_inputs(tmp_path, index, splits, scores)
    labelled = label_test_scores(scores, index, splits)
    figures, files = plot_feature_importance(
        models,
        labelled,
        PlotOptions(importance_type="total_gain"),
        DatasetConfig(layout="demo", name="demo"),
        "high_shot",
    )
    assert files == ["importance_patchcore_segad.png"]
    bars = figures[files[0]].axes[0]
    widths = {t.get_text(): p.get_width() for t, p in zip(bars.get_yticklabels(), bars.patches, strict=True)}
    assert widths["seg1"] > widths["seg0"]  # the informative feature lives in segment 1
    assert sum(widths.values()) == pytest.approx(1.0)
    models["padim+segad/demo/split_seed_0"] = lambda: pytest.fail("a regime-less file is skipped")
    assert (
        plot_feature_importance(
            models, labelled, PlotOptions(), DatasetConfig(layout="demo", name="demo"), "high_shot"
        )[1]
        == files
    )
    with pytest.raises(ValueError, match="no model of dataset=demo, benchmark=high_shot for method"):
        plot_feature_importance({}, labelled, PlotOptions(), DatasetConfig(layout="demo", name="demo"), "high_shot")


def test_label_test_scores_selects_this_runs_regime():
    index, splits, scores = make_tables()
    both = pd.concat(
        [
            scores.assign(dataset="demo", benchmark="high_shot"),
            scores.assign(dataset="demo", benchmark="one_class", score=0.0),
        ],
        ignore_index=True,
    )
    labelled = label_test_scores(both, index, splits, DatasetConfig(layout="demo", name="demo"), "high_shot")
    expected = label_test_scores(scores, index, splits)
    pd.testing.assert_frame_equal(labelled, expected)
    with pytest.raises(ValueError, match="no rows for dataset=demo, benchmark=low_shot"):
        label_test_scores(both, index, splits, DatasetConfig(layout="demo", name="demo"), "low_shot")


def test_catalog_plot_folders_match_report_links():
    loader = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="local", env="local")
    catalog, params = loader["catalog"], loader["parameters"]
    for key, folder in params["evaluation"]["report"]["plot_dirs"].items():
        entry = catalog.get(f"evaluation.{key}")
        assert entry is not None, f"no catalog entry evaluation.{key}"
        assert entry["filepath"] == f"data/08_reporting/{folder}"
        assert Path(catalog["report"]["filepath"]).parent == Path("data/08_reporting")


def test_metrics_and_reports_of_two_regimes_and_of_every_run_are_all_kept(tmp_path):
    from kedro.io import DataCatalog

    from segad.pipelines.evaluation.nodes import keep_metrics_by_regime
    from segad.pipelines.report.nodes import keep_report_by_regime
    from segad.runs import RUN_ID

    loader = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="local", env="local")
    config = {k: dict(loader["catalog"][k]) for k in ("metrics_by_regime", "report_by_regime")}
    for entry in config.values():
        entry["path"] = str(tmp_path / "by_regime")
    catalog = DataCatalog.from_config(config)
    for benchmark, auroc in (("high_shot", 0.9), ("one_class", 0.7), ("high_shot", 0.8)):  # high_shot twice
        metrics = pd.DataFrame({"method": ["padim+segad"], "benchmark": [benchmark], "auroc": [auroc]})
        catalog.save(
            "metrics_by_regime", keep_metrics_by_regime(metrics, DatasetConfig(layout="demo", name="demo"), benchmark)
        )
        kept = catalog.load("metrics_by_regime")  # the report stage reads it to find this run's folder
        by_report = keep_report_by_regime(
            f"# {benchmark} {auroc}\n", metrics, kept, DatasetConfig(layout="demo", name="demo"), benchmark
        )
        catalog.save("report_by_regime", by_report)
    high = sorted((tmp_path / "by_regime/demo/high_shot/runs").iterdir())
    one = sorted((tmp_path / "by_regime/demo/one_class/runs").iterdir())
    assert len(high) == 2 and len(one) == 1 and all(RUN_ID.match(p.name) for p in high + one)
    aurocs = sorted(pd.read_csv(run / "metrics.csv")["auroc"].item() for run in high)
    assert aurocs == [0.8, 0.9]  # the second high_shot run replaced nothing
    assert pd.read_csv(one[0] / "metrics.csv")["auroc"].tolist() == [0.7]
    assert sorted((run / "report.md").read_text() for run in high) == ["# high_shot 0.8\n", "# high_shot 0.9\n"]
    # the regime's latest copy, beside its history
    assert pd.read_csv(tmp_path / "by_regime/demo/high_shot/metrics.csv")["auroc"].tolist() == [0.8]
    assert (tmp_path / "by_regime/demo/one_class/report.md").read_text() == "# one_class 0.7\n"
    assert len(catalog.load("metrics_by_regime")) == 2 + 3
