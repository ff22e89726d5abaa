"""segad.schemas: each model accepts the table its producing code builds (before saving and after the
catalog's round trip) and rejects broken ones; the hook stops a run with a short error; docs/schemas.md
is the models' rendering."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.hooks import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import node, pipeline
from kedro.runner import SequentialRunner

from segad import schema_report, schemas
from segad.config import DatasetConfig
from segad.detection.config import DetectorConfig
from segad.detection.stage import compute_anomaly_maps
from segad.ingestion.defects import DefectConfig, empty_synthetic_index, plan_synthetic
from segad.ingestion.layouts import build_index
from segad.ingestion.splits import SplitConfig, make_splits
from segad.meta.brf_params import BRFParams
from segad.meta.classifier import ClassifierConfig
from segad.pipelines.brf.nodes import train_brf
from segad.pipelines.classifier.nodes import train_classifier
from segad.pipelines.evaluation.nodes import compute_metrics, label_test_scores
from segad.pipelines.features.nodes import compute_features
from segad.production.batch import _table
from segad.schema_hooks import DATASETS, DatasetSchemaError, SchemaHooks, model_for
from segad.schemas import SchemaError, validate
from segad.segments.features import FeatureConfig
from segad.segments.segment_maps import SegmentMaps
from segad.storage.map_store import MapStore
from tests.conftest import PROJECT_ROOT, copy_project, kedro_run
from tests.meta.conftest import tiny_config

SIZE = 32
DATASET = DatasetConfig(layout="demo", name="demo")
PADIM = {
    "model": {"backbone": "tf_efficientnet_lite0", "layers": ["blocks.1", "blocks.2"], "n_features": 16},
    "weights": "packaged:efficientnet_lite0",
}
BRF = BRFParams(**{"model": {"n_estimators": 2, "num_parallel_tree": 4, "max_depth": 2, "n_jobs": 1}})


def _catalog(root: Path) -> DataCatalog:
    """The project's catalog (conf/base) with every file under `root`."""
    conf = root / "conf"
    shutil.copytree(PROJECT_ROOT / "conf" / "base", conf / "base")
    (conf / "local").mkdir()
    globals_yml = conf / "base" / "globals.yml"
    globals_yml.write_text(globals_yml.read_text().replace("data_root: data", f"data_root: {root / 'data'}"))
    return DataCatalog.from_config(OmegaConfigLoader(str(conf), base_env="base", default_run_env="local")["catalog"])


@pytest.fixture(scope="module")
def tables(tiny_demo, tmp_path_factory) -> dict[str, tuple[str, pd.DataFrame, pd.DataFrame]]:
    """model name -> (catalog name, table as its producer returns it, table loaded back from the catalog)."""
    root = tmp_path_factory.mktemp("tables")
    catalog = _catalog(root)
    built: dict[str, tuple[str, pd.DataFrame]] = {}
    index, _ = build_index("demo", tiny_demo)
    splits = make_splits(index, SplitConfig(benchmark="high_shot", seeds=(0,)))
    one_class = make_splits(index, SplitConfig(benchmark="one_class", seeds=(0,)))
    synthetic, _ = plan_synthetic(
        index,
        one_class,
        lambda c, i: np.zeros((SIZE, SIZE), np.int64),
        DefectConfig(per_image=1, output_dir=str(root / "synthetic")),
    )
    store = MapStore(root / "maps")
    map_index, _ = compute_anomaly_maps(
        index,
        splits,
        None,
        DetectorConfig.from_dict("padim", PADIM),
        SIZE,
        "cpu",
        store,
        root / "models",
        progress=False,
    )
    classifier = tiny_config(str(root / "backbones"), max_steps=2)
    classifier_scores = train_classifier(
        index, splits, empty_synthetic_index(), classifier, SIZE, "cpu", MapStore(root / "classifier_store")
    )
    labels = np.zeros((SIZE, SIZE), np.int64)
    labels[:, SIZE // 2 :] = 1
    segmentation = SegmentMaps(method="static", size=(SIZE, SIZE), n_segments={"demo": 2}, static_maps={"demo": labels})
    features, segmentation_selection = compute_features(
        index,
        splits,
        empty_synthetic_index(),
        segmentation,
        None,
        FeatureConfig(),
        DATASET,
        "high_shot",
        BRF,
        padim__map_index=map_index,
        padim__map_store=store,
    )
    _, scores, brf_selection = train_brf(features, index, BRF, DATASET, [0], "high_shot", ["padim"])
    test_scores = label_test_scores(scores, index, splits, DATASET, "high_shot")
    metrics = compute_metrics(test_scores, "high_shot")
    built.update(
        image_index=("image_index", index),
        splits=("splits", splits),
        synthetic_index=("synthetic_index", synthetic),
        map_index=("padim.map_index", map_index),
        classifier_scores=("classifier_scores", classifier_scores),
        features=("features", features),
        segmentation_selection=("segmentation_selection", segmentation_selection),
        brf_selection=("brf_selection", brf_selection),
        scores=("scores", scores),
        test_scores=("evaluation.test_scores", test_scores),
        metrics=("metrics", metrics),
        inspection=("inspection", _inspection()),
        score_runs=("score_runs", _score_runs()),
    )
    out = {}
    for model, (name, table) in built.items():
        catalog.save(name, table)
        loaded = catalog.load(name)
        out[model] = (name, table, loaded.read() if hasattr(loaded, "read") else loaded)  # features: a lazy reader
    return out


def _inspection() -> pd.DataFrame:
    """The inspection table of one accepted and one unreadable image (production.scoring's own builder)."""
    bundle = SimpleNamespace(
        n_segments=2,
        detectors=["padim"],
        owners=["padim"],
        classifier_models=0,
        bundle_id="b1",
        operating_point=SimpleNamespace(threshold=0.5),
    )
    ok = {
        "image": "a.png",
        "path": "/in/a.png",
        "status": "ok",
        "decision": "accept",
        "score": 0.1,
        "top_segment": 1,
        "top_segment_name": "right",
        "contrib_seg0": 0.0,
        "contrib_seg1": 0.2,
        "contrib_global": 0.0,
        "contrib_bias": -0.1,
        "contrib_det_padim": 0.1,
        "padim__max": 1.5,
        "error": None,
    }
    failed = {"image": "b.png", "path": "/in/b.png", "status": "error", "decision": "error", "error": "unreadable"}
    return _table([ok, failed], bundle).assign(run=RUN)


RUN = "20261206T043000Z-1a2b3c4d"


def _score_runs() -> pd.DataFrame:
    """The index row of the score run of `_inspection` (production.history's own builder)."""
    import datetime as dt

    from segad.production.history import score_run_record

    start = dt.datetime(2026, 12, 6, 4, 30, tzinfo=dt.UTC)
    bundle = SimpleNamespace(bundle_id="b1", operating_point=SimpleNamespace(threshold=0.5))
    return score_run_record(RUN, start, start + dt.timedelta(seconds=3), bundle, "/in", _inspection())


def _problems(model, table: pd.DataFrame) -> str:
    with pytest.raises(SchemaError) as error:
        validate(model, table, "the table")
    return str(error.value)


@pytest.mark.parametrize("model", list(schemas.MODELS))
def test_each_schema_accepts_the_table_its_producer_builds_and_the_catalog_loads(tables, model):
    name, built, loaded = tables[model]
    assert model_for(name) is schemas.MODELS[model]
    assert len(built) > 0
    validate(schemas.MODELS[model], built, name)
    validate(schemas.MODELS[model], loaded, name)


def test_the_disabled_classifier_writes_an_empty_table_of_its_model():
    disabled = ClassifierConfig(enabled=False)
    empty = train_classifier(pd.DataFrame(), pd.DataFrame(), empty_synthetic_index(), disabled, SIZE, "cpu", None)
    assert len(empty) == 0 and tuple(empty.columns) == schemas.columns(schemas.ClassifierScores)
    validate(schemas.ClassifierScores, empty, "classifier_scores")


def test_the_marker_rows_of_a_run_without_selection_match_the_evidence_model(tables):
    _, features, _ = tables["features"]
    _, index, _ = tables["image_index"]
    off = BRFParams(**{"model": BRF.model, "selection": {"enabled": False}})
    _, _, evidence = train_brf(features, index, off, DATASET, [0], "high_shot", ["padim"])
    assert list(evidence["method"]) == [""] and not evidence["chosen"].any()
    validate(schemas.BRFSelection, evidence, "brf_selection")


def test_a_wrong_dtype_a_null_id_and_an_extra_column_are_named(tables):
    splits = tables["splits"][1].copy()
    splits["split_seed"] = splits["split_seed"].astype("float64")
    splits.loc[0, "image_id"] = None
    splits["note"] = "x"
    message = _problems(schemas.Splits, splits)
    assert message.splitlines()[0] == "the table does not match segad.schemas.Splits (docs/schemas.md):"
    assert "unexpected column(s) 'note'" in message
    assert "column 'split_seed': dtype float64, expected int64" in message
    assert "column 'image_id': 1 null value(s)" in message


def test_bad_roles_labels_and_duplicate_keys_are_rejected(tables):
    splits = tables["splits"][1].copy()
    splits.loc[0, "role"] = "train"
    assert "column 'role': isin(" in _problems(schemas.Splits, splits)
    index = tables["image_index"][1].copy()
    index.loc[0, "label"] = 2
    assert "column 'label': isin([0, 1]) fails for 1 row(s), e.g. 2" in _problems(schemas.ImageIndex, index)
    doubled = pd.concat([tables["map_index"][1]] * 2, ignore_index=True)
    assert "key (image_id, split_seed)" in _problems(schemas.MapIndex, doubled)
    scores = pd.concat([tables["scores"][1].head(1)] * 2, ignore_index=True)
    assert "share a key" in _problems(schemas.Scores, scores)


def test_feature_columns_follow_the_grammar(tables):
    features = tables["features"][1]
    assert "seg1__padim__q995" in features and "padim__max" in features
    renamed = features.rename(columns={"seg1__padim__q995": "seg1__padim__p99"})
    assert "unexpected column(s) 'seg1__padim__p99'" in _problems(schemas.Features, renamed)
    no_max = features.drop(columns="padim__max")
    assert "missing column(s): none matches <detector>__max" in _problems(schemas.Features, no_max)
    as_text = features.astype({"seg0__padim__mean": str})
    assert "column 'seg0__padim__mean': dtype object, expected float64" in _problems(schemas.Features, as_text)
    bad_role = features.assign(role="detector_train")  # detectors' own training rows never get features
    assert "column 'role': isin(['brf_train', 'test'])" in _problems(schemas.Features, bad_role)


def test_aggregate_rows_and_inspection_values_are_checked(tables):
    metrics = tables["metrics"][2].copy()
    assert {"mean", "std"} <= set(metrics["split_seed"])
    metrics.loc[0, "split_seed"] = "median"
    metrics.loc[1, "auroc"] = 1.5
    message = _problems(schemas.Metrics, metrics)
    assert "column 'split_seed': a seed, mean or std fails for 1 row(s), e.g. 'median'" in message
    assert "column 'auroc': in_range(0, 1)" in message
    inspection = tables["inspection"][1].copy()
    inspection.loc[0, "decision"] = "maybe"
    assert "column 'decision'" in _problems(schemas.Inspection, inspection)


def test_the_hook_stops_a_bad_save_with_a_short_error_naming_dataset_node_and_column():
    def make_splits_node() -> pd.DataFrame:
        return pd.DataFrame(
            {
                "image_id": ["a.png", "b.png"],
                "split_seed": [0, 0],
                "role": ["test", "bogus"],
                "in_benchmark": [True, True],
            }
        )

    hooks = _create_hook_manager()
    hooks.register(SchemaHooks())
    catalog = DataCatalog({"splits": MemoryDataset()})
    with pytest.raises(DatasetSchemaError) as error:
        SequentialRunner().run(
            pipeline([node(make_splits_node, None, "splits", name="split_images")]), catalog, hook_manager=hooks
        )
    message = str(error.value)
    assert message.startswith("dataset 'splits' (saved by node 'split_images') does not match segad.schemas.Splits")
    assert "column 'role': isin(" in message and "'bogus'" in message
    assert len(message.splitlines()) <= 4
    assert isinstance(error.value, ValueError)


def test_the_hook_knows_every_catalog_table_and_is_registered():
    from segad.settings import HOOKS

    catalog = _catalog_names()
    assert set(DATASETS) <= catalog, "a schema names a dataset the catalog does not have"
    assert "{detector}.map_index" in catalog and model_for("patchcore.map_index") is schemas.MapIndex
    assert model_for("segment_maps") is None and model_for("a.b.map_index") is None
    assert any(isinstance(h, SchemaHooks) for h in HOOKS)


def _catalog_names() -> set[str]:
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="local")
    return set(loader["catalog"])


def test_docs_schemas_md_is_the_rendering_of_the_models():
    text = schema_report.DOC.read_text(encoding="utf-8")
    assert schema_report.documented(text) == set(schemas.MODELS)
    assert schema_report.render_doc(text) == text, "docs/schemas.md is stale: run `python -m segad.schema_report`"
    stale = text.replace("| label | int8, one of `0`, `1` | 0 good, 1 bad |", "| label | int64 | 0 good, 1 bad |")
    assert stale != text and schema_report.render_doc(stale) == text


@pytest.mark.e2e
def test_kedro_run_stops_on_a_bad_table_with_the_short_error(tmp_path):
    """`kedro run` prints the summary as its `Error:` block, without a traceback."""
    tmp_path = copy_project(tmp_path / "project")
    index = pd.DataFrame(
        {
            "image_id": ["a.png"],
            "dataset": ["demo"],
            "category": ["demo"],
            "split": ["test"],
            "label": [1],
            "defect_type": ["bad"],
            "unseen": [False],
            "path": ["/a.png"],
            "mask_path": [None],
            "width": [8],
            "height": [8],
        }
    )  # label int64, sizes int64
    # the run's dataset: conf/base's demo root under this project (its id keys the index's folder)
    ident = DatasetConfig(layout="demo", root=str(tmp_path / "data" / "01_raw" / "demo")).id
    (tmp_path / "data" / "02_intermediate" / f"dataset={ident}").mkdir(parents=True)
    index.to_parquet(tmp_path / "data" / "02_intermediate" / f"dataset={ident}" / "image_index.parquet")
    result = kedro_run(tmp_path, "--pipelines", "split", timeout=300)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "Error: dataset 'image_index' (loaded for node 'split.split') does not match segad.schemas.ImageIndex "
        "(docs/schemas.md):",
        "  column 'label': dtype int64, expected int8",
        "  column 'width': dtype int64, expected int32",
        "  column 'height': dtype int64, expected int32",
    ]
    assert "Traceback" not in result.stdout + result.stderr
