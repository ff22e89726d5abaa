"""Thin node over segad.production.assemble: the production bundle of a training run."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from segad.config import DatasetConfig
from segad.meta.brf_params import BRFParams
from segad.meta.brf_store import BRFStore
from segad.meta.segmentation_choice import chosen_segmentation
from segad.production.assemble import BundleOptions, assemble_bundle, evaluated_rows
from segad.production.bundle_selection import evidence_records
from segad.production.writer import new_bundle_id
from segad.segments.segment_maps import SegmentMaps
from segad.storage.images import resolve_image_size
from segad.versions import jsonable

log = logging.getLogger(__name__)


def build_bundle(
    features: pd.DataFrame,
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    segment_maps: SegmentMaps,
    brf_models: dict,
    bundle: BundleOptions,
    dataset: DatasetConfig,
    benchmark: str,
    seeds: list[int],
    image_size: int | list[int] | str,
    detectors: list[str],
    brf: BRFParams,
    split: dict,
    defects: dict,
    anomaly_maps: dict,
    segmentation: dict,
    feature_params: dict,
    classifier_scores: pd.DataFrame | None = None,
    classifier_models: Path | None = None,
    metrics_by_regime: Mapping[str, Callable[[], pd.DataFrame]] | None = None,
    brf_selection: pd.DataFrame | None = None,
    brf_store: BRFStore | None = None,
    segmentation_selection: pd.DataFrame | None = None,
    **detector_handles,
) -> tuple[dict, dict]:
    """(arguments of `segad.production.writer.write_bundle`, operating-point report).

    `detector_handles` holds ``<detector>__map_index`` and ``<detector>__detector_store`` (the
    folder of fitted detectors) per run detector; `classifier_scores` and `classifier_models` (the
    folder of kept classifier models) serve a combination with g(I); `brf_selection` (the brf stage's
    out-of-fold choice) names the shipped method when ``bundle.detectors`` is null. `brf_store` keeps the
    out-of-fold BRFs, so a rerun on the same rows refits none. The parameters of the stages that produced the
    bundle are recorded in its manifest (``config.parameters``); ``image_size`` (the parameter) is
    resolved from ``image_index`` as in every stage (`segad.storage.images.resolve_image_size`) and the
    concrete size is recorded (``input_spec.image_size`` and ``config.parameters.image_size``). With ``bundle.build: false``
    it returns no arguments (the bundle dataset then writes nothing) and says so in the report.

    `metrics_by_regime` (the evaluation stage's last output: partition -> loader) makes this the
    last node of a run, so LATEST moves only once the run's evaluation has finished; the bundled
    combination's rows of this regime (`segad.production.assemble.evaluated_rows`) are recorded
    in the manifest (``config.evaluation``), and a combination that was not evaluated is refused.
    None (a call outside the pipeline) records nothing.
    """
    if not bundle.build:
        return {}, {"built": False, "reason": "bundle.build is false"}
    size = resolve_image_size(image_size, image_index)
    recorded = jsonable(
        {
            "dataset": dataset,
            "benchmark": benchmark,
            "seeds": seeds,
            "image_size": size.to_json(),  # the concrete size, also for `auto`: reruns reproduce it
            "detectors": detectors,
            "split": split,
            "defects": defects,
            "anomaly_maps": anomaly_maps,
            "segmentation": segmentation,
            "features": feature_params,
            "brf": brf,
            "bundle": bundle,
        }
    )
    handles = {
        kind: {
            key.removesuffix(f"__{kind}"): value for key, value in detector_handles.items() if key.endswith(f"__{kind}")
        }
        for kind in ("map_index", "detector_store")
    }
    if segment_maps is not None:  # the segments the features were computed with
        segment_maps = chosen_segmentation(segment_maps, segmentation_selection, dataset.id, str(benchmark))
    contents, report = assemble_bundle(
        features,
        image_index,
        splits,
        segment_maps,
        brf_models,
        handles["map_index"],
        {name: Path(folder) for name, folder in handles["detector_store"].items()},
        dataset=jsonable(dataset),
        benchmark=benchmark,
        seeds=seeds,
        image_size=size,
        detectors=detectors,
        brf_model=brf.settings,
        options=bundle,
        recorded=recorded,
        classifier_scores=classifier_scores,
        classifier_models=classifier_models,
        selection=brf_selection if brf.selection.enabled else None,
        fit_brf=brf_store.fit if brf_store is not None else None,
    )
    if contents:  # the out-of-fold choice of the shipped category's segments, and its evidence
        category = str(contents["config"]["category"])
        contents["config"]["segmentation_selection"] = evidence_records(
            segmentation_selection, dataset.id, str(benchmark), category
        )
    if brf_store is not None:
        log.info("bundle: out-of-fold BRFs %s (%s)", brf_store.summary(), brf_store.root)
    if metrics_by_regime is not None:
        contents["config"]["evaluation"] = evaluated_rows(_regime_metrics(metrics_by_regime, benchmark), report)
    bundle_id = new_bundle_id()  # chosen here, so that the report and the tracked run name it
    return {**contents, "bundle_id": bundle_id}, {"bundle_id": bundle_id, **report}


def _regime_metrics(partitions: Mapping[str, Callable[[], pd.DataFrame]], benchmark: str) -> pd.DataFrame:
    """The kept metrics tables of `benchmark` (partitions ``.../<benchmark>/metrics``), concatenated."""
    frames = [load() for key, load in sorted(partitions.items()) if key.endswith(f"/{benchmark}/metrics")]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
