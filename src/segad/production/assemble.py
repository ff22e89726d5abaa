"""What goes into the production bundle of a training run, for one split seed and one category.

- the fitted detectors of that seed (the model_key of each detector's map index), copied as
  `segad.detection.saved.save_detector` wrote them;
- the category's segments: its static map, or, for `auto_per_image` (also when `auto_select`
  picks it), the shared centres that segment every new image by its backbone features
  (`segad.production.bundle_segments`); per-image map folders (`per_image`) cannot be bundled;
- the BRF of the combination ``options.detectors`` (default: all run detectors, plus the
  classifier g(I) when the run has its scores) from the run's own dataset layout and benchmark
  (`segad.meta.brf.model_key`), with its feature column names;
- with the classifier in the combination: the model(s) that produced that seed's classifier
  scores (`segad.meta.classifier_models`: one, or the K cross-fitted ones whose mean logit is a
  test row's score);
- the operating point (`segad.production.operating_point`) on out-of-fold BRF scores of the
  ``brf_train`` rows, so its expected rates are those of unseen parts;
- the input spec (`segad.production.inputs`) of the training images, and the recorded config.

`assemble_bundle` returns the keyword arguments of `segad.production.writer.write_bundle` and a
small operating-point report; it writes nothing.

Example:
    >>> from segad.production.assemble import BundleOptions
    >>> BundleOptions(max_miss_rate=0.05).oof_folds
    5
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, cast

import numpy as np
import pandas as pd
import pydantic
from pydantic import Field

from segad.columns import CLASSIFIER
from segad.config import PARAMS
from segad.meta.brf import (
    BRFConfig,
    method_name,
    model_key,
    select_run,
    single_input_model,
)
from segad.meta.selection import SELECTED
from segad.production.bundle_selection import (
    blend_member,
    evidence_records,
    member_column,
    selected_members,
    selected_method,
)
from segad.production.inputs import input_spec_from_paths
from segad.production.operating_point import training_operating_point
from segad.segments.elpv import ELPV_SEGMENTS
from segad.segments.segment_maps import SegmentMaps
from segad.storage.identity import dataset_id_of
from segad.storage.images import ImageSize, SizeLike
from segad.vocabulary import TRAINING_ROLES

log = logging.getLogger(__name__)

#: Split roles whose images define the input spec (what the bundle was trained on).


@pydantic.dataclasses.dataclass(config=PARAMS)
class BundleOptions:
    """The ``bundle`` parameters (conf/base/parameters_bundle.yml).

    Attributes:
        build: False = the run builds no bundle (e.g. per-image segment maps, which new images
            do not have, or a benchmark run over many categories).
        split_seed: whose detectors and BRF are bundled; None = the run's first seed.
        category: the product category; None = the run's only category.
        detectors: the SegAD combination (detectors, and ``classifier`` for g(I)); None = all run
            detectors except those with their own image score (`pred_score` in the map index:
            supersimplenet_supervised), which cannot be bundled yet, plus ``classifier`` when the
            run has classifier scores (the combination the brf stage adds for it).
        max_miss_rate: target share of bad parts accepted at the operating point, in (0, 1).
        oof_folds: k of the k-fold out-of-fold scores the threshold is chosen on.
        segment_names: {label: name}; None = built-in names (demo, elpv), else ``seg<l>``.
    """

    build: bool = True
    split_seed: int | None = None
    category: str | None = None
    detectors: list[str] | None = None
    max_miss_rate: Annotated[float, Field(gt=0, lt=1)] = 0.02
    oof_folds: Annotated[int, Field(ge=2)] = 5
    segment_names: dict[int, str] | None = None


def assemble_bundle(
    features: pd.DataFrame,
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    segment_maps: SegmentMaps,
    brf_models: Mapping[str, Callable[[], Any]],
    map_indexes: Mapping[str, pd.DataFrame],
    detector_stores: Mapping[str, str | Path],
    *,
    dataset: Mapping,
    benchmark: str,
    seeds: Sequence[int],
    image_size: SizeLike,
    detectors: Sequence[str],
    brf_model: BRFConfig,
    options: BundleOptions,
    recorded: Mapping[str, Any],
    classifier_scores: pd.DataFrame | None = None,
    classifier_models: str | Path | None = None,
    selection: pd.DataFrame | None = None,
    fit_brf: Callable[..., Any] | None = None,
) -> tuple[dict, dict]:
    """(arguments of `segad.production.writer.write_bundle`, operating-point report).

    Args:
        features, image_index, splits: the run's feature table, image index and splits.
        segment_maps: the run's segmentation (the category's static map or shared centres are bundled).
        brf_models: `segad.meta.brf.model_key` -> loader of the fitted BRF (called once).
        map_indexes: detector -> its map index (rows image_id, split_seed, model_key, ...).
        detector_stores: detector -> folder of its fitted detectors (one sub-folder per model_key).
        dataset, benchmark, seeds, detectors: the run's parameters of those names.
        image_size: the run's resolved map size (`segad.storage.images.ImageSize`); the manifest's
            ``input_spec.image_size`` records it and scoring resizes new images to it.
        brf_model: the BRF settings (``brf.model``) of the out-of-fold BRFs.
        options: the ``bundle`` parameters.
        recorded: run parameters stored in the manifest's ``config.parameters``.
        classifier_scores: the run's classifier scores (image_id, split_seed, score, model_key);
            None or empty when the classifier is off.
        classifier_models: the folder where the run kept its classifier models.
        selection: the brf stage's selection evidence (`segad.meta.selection`); with
            ``options.detectors`` None its chosen method of the category ships (a single input
            ships as a one-column linear model, `segad.meta.brf.single_input_model`).
        fit_brf: fits the out-of-fold BRFs (`segad.meta.brf.fit_brf` by default;
            `segad.meta.brf_store.BRFStore.fit` reuses those of an earlier run).
    Raises:
        ValueError naming the parameter or input that does not fit the run.
    """
    run_detectors = [str(d) for d in detectors]
    seeds = [int(s) for s in seeds]
    # detectors with their own image score (pred_score: supersimplenet_supervised) cannot be bundled yet
    scored = [d for d in run_detectors if d in map_indexes and "pred_score" in map_indexes[d].columns]
    has_classifier = classifier_scores is not None and len(classifier_scores) > 0
    seed, category, members, with_classifier = _choose(
        options, run_detectors, seeds, image_index, scored, has_classifier
    )
    chosen = (
        selected_method(selection, dataset_id_of(dataset), str(benchmark), category)
        if options.detectors is None
        else None
    )
    single_column = None
    if chosen is not None:
        picked, with_classifier, single_column = selected_members(chosen, members, scored)
        members = [d for d in run_detectors if d in set(picked)]  # feature order = run order
        log.info("bundle ships the out-of-fold selection's method %s (brf_selection)", chosen)
    if set(scored) & set(members):
        raise ValueError(
            f"bundle.detectors: {sorted(set(scored) & set(members))} cannot be bundled yet (their "
            "cross-fitted models and own scores are not part of the bundle format); bundle a "
            "combination without them"
        )
    method = method_name([*members, *([CLASSIFIER] if with_classifier else [])])
    layout, benchmark, ident = str(dataset["layout"]), str(benchmark), dataset_id_of(dataset)
    key = model_key(ident, benchmark, category, method, seed)  # this run's dataset and regime only
    if single_column is not None:
        method, key = str(chosen), f"single input {single_column}"
    elif key not in brf_models:
        ours = sorted(k for k in brf_models if k.startswith(f"{ident}/{benchmark}/"))
        raise ValueError(
            f"no BRF model {key!r} (run the brf pipeline for dataset {ident}, benchmark "
            f"{benchmark}; brf.combinations must include {method.split('+')[:-1]}); this regime has: {ours[:10]}"
        )
    segments = _segments(segment_maps, category, ImageSize.parse(image_size))
    classifier_dirs = (
        _classifier_dirs(cast(pd.DataFrame, classifier_scores), classifier_models, seed) if with_classifier else []
    )
    brf = single_input_model(single_column) if single_column is not None else brf_models[key]()
    columns = list(brf.get_booster().feature_names or [])
    if not columns:
        raise ValueError(f"BRF model {key} carries no feature names; retrain it with the brf pipeline")

    table = select_run(features, image_index, ident, seeds, run_detectors, benchmark)
    rows = table[(table["category"] == category) & (table["split_seed"] == seed) & (table["role"] == "brf_train")]
    member = blend_member(selection, ident, benchmark, category) if chosen is not None else None
    blend_column = None if single_column is not None or member is None else member_column(member, columns)
    op, blend = training_operating_point(
        rows,
        columns,
        brf_model,
        seed,
        category,
        int(options.oof_folds),
        float(options.max_miss_rate),
        fit_brf,
        fitted=single_column is None,
        blend_column=blend_column,
    )
    log.info(
        "operating point %s: threshold %.4f rejects at least %.1f%% of bad parts; expected pass "
        "rate of good parts %.1f%% (on %d good / %d bad held-out rows)",
        method,
        op.threshold,
        100 * (1 - op.target_miss_rate),
        100 * op.expected_pass_rate,
        op.n_good,
        op.n_bad,
    )

    detector_dirs = _detector_dirs(members, map_indexes, detector_stores, image_index, seed, category)
    in_training = splits[(splits["split_seed"] == seed) & splits["role"].isin(TRAINING_ROLES)]["image_id"]
    train_images = image_index[image_index["image_id"].isin(set(in_training)) & (image_index["category"] == category)]
    spec = input_spec_from_paths(train_images["path"].tolist(), ImageSize.parse(image_size))
    names = options.segment_names or _builtin_segment_names(segment_maps, layout)
    contents = dict(
        detector_dirs=detector_dirs,
        **segments,
        n_segments=int(segment_maps.n_segments[category]),
        classifier_dirs=classifier_dirs,
        brf=brf,
        blend=blend,
        feature_columns=columns,
        operating_point=op,
        input_spec=spec,
        segment_names={int(k): str(v) for k, v in (names or {}).items()},
        config={
            "dataset": ident,
            "layout": layout,
            "benchmark": benchmark,
            "split_seed": seed,
            "category": category,
            "method": method,
            "brf_model": key,
            "segmentation_source": segment_maps.sources.get(category),
            "selection": evidence_records(selection, ident, benchmark, category) if chosen is not None else None,
            "parameters": dict(recorded),
        },
    )
    report = {
        "dataset": ident,
        "benchmark": benchmark,
        "method": method,
        "scores_method": SELECTED if chosen is not None else method,
        "category": category,
        "split_seed": seed,
        "segmentation": segment_maps.sources.get(category),
        "classifier_models": len(classifier_dirs),
        **op.as_dict(),
        "input_spec": spec.as_dict(),
    }
    return contents, report


def _choose(
    options: BundleOptions,
    run_detectors: list[str],
    seeds: list[int],
    image_index: pd.DataFrame,
    scored: Sequence[str] = (),
    classifier: bool = False,
) -> tuple[int, str, list[str], bool]:
    """(split seed, category, detectors in run order, with the classifier) the options name, checked
    against the run; by default every run detector except the `scored` ones, with the classifier
    when the run has one."""
    seed = int(options.split_seed) if options.split_seed is not None else seeds[0]
    if seed not in seeds:
        raise ValueError(f"bundle.split_seed {seed} is not one of the run's seeds {seeds}")
    categories = sorted(image_index["category"].unique())
    category = options.category or (categories[0] if len(categories) == 1 else None)
    if category not in categories:
        raise ValueError(
            f"bundle.category must name one of the run's categories {categories}, "
            f"got {options.category!r} (a bundle serves one product category)"
        )
    default = [d for d in run_detectors if d not in set(scored)] + ([CLASSIFIER] if classifier else [])
    wanted = [str(d) for d in (options.detectors or default)]
    with_classifier = CLASSIFIER in wanted
    if with_classifier and not classifier:
        raise ValueError(
            f"bundle.detectors {wanted} names the classifier, but this run has no classifier scores "
            "(classifier.enabled is false, or the regime has no bad training image)"
        )
    named = {d for d in wanted if d != CLASSIFIER}
    members = [d for d in run_detectors if d in named]  # feature order = run order
    if not members or len(members) != len(named):
        raise ValueError(
            f"bundle.detectors {wanted} must be at least one detector of this run {run_detectors}, "
            f"optionally with {CLASSIFIER}"
        )
    return seed, str(category), members, with_classifier


def _classifier_dirs(scores: pd.DataFrame, root: str | Path | None, seed: int) -> list[Path]:
    """The folders of the classifier model(s) that scored split seed `seed`."""
    from segad.meta.classifier_models import kept_folders

    if "model_key" not in scores.columns or root is None:
        raise ValueError(
            "classifier scores without kept models (computed before models were kept, or no "
            "classifier_models folder); run the classifier pipeline again, or set bundle.detectors "
            "without the classifier"
        )
    keys = sorted(scores.loc[scores["split_seed"] == seed, "model_key"].dropna().unique())
    if len(keys) != 1:
        raise ValueError(f"classifier scores of split_seed {seed} name models {keys}, expected one")
    return kept_folders(root, str(keys[0]))


def _detector_dirs(
    members: list[str],
    map_indexes: Mapping[str, pd.DataFrame],
    detector_stores: Mapping[str, str | Path],
    image_index: pd.DataFrame,
    seed: int,
    category: str,
) -> dict[str, Path]:
    """detector -> the folder of its detector fitted for (`seed`, `category`), in member order."""
    missing = [name for name in members if name not in map_indexes or name not in detector_stores]
    if missing:
        raise ValueError(f"no map index or detector store for the bundled detectors {missing}")
    in_category = image_index.loc[image_index["category"] == category, "image_id"]
    dirs = {}
    for name in members:
        index = map_indexes[name]
        rows = index[(index["split_seed"] == seed) & index["image_id"].isin(in_category)]
        model_keys = sorted(rows["model_key"].unique())
        if len(model_keys) != 1:
            raise ValueError(
                f"{name}.map_index has model keys {model_keys} for split_seed {seed} and "
                f"category {category}, expected one"
            )
        dirs[name] = Path(detector_stores[name]) / model_keys[0]
    return dirs


def _segments(segment_maps: SegmentMaps, category: str, size: ImageSize) -> dict[str, Any]:
    """write_bundle's ``segments`` (static map) or ``clusters`` (per-image centres) of `category`."""
    if tuple(segment_maps.size) != size.hw:
        raise ValueError(f"segment maps at {tuple(segment_maps.size)}, the run's image size is {size.hw}")
    if category in segment_maps.static_maps:
        return {"segments": segment_maps.static_maps[category]}
    if category in segment_maps.clusters:
        return {"clusters": segment_maps.clusters[category]}
    raise ValueError(
        f"category {category}: segmentation method {segment_maps.method!r} reads a map per image from "
        f"{segment_maps.folder}, which new images do not have; production scoring needs a static, elpv, "
        "auto, single, auto_per_image or auto_select segmentation, or bundle.build: false"
    )


def segment_names(segment_maps: SegmentMaps, layout: str, configured: Mapping | None = None) -> dict[int, str]:
    """{label: part name} the bundle records: `configured` (``bundle.segment_names``), else the
    built-in names (demo, elpv), else none."""
    names = configured or _builtin_segment_names(segment_maps, layout) or {}
    return {int(k): str(v) for k, v in names.items()}


def _builtin_segment_names(segment_maps: SegmentMaps, layout: str) -> Mapping | None:
    if segment_maps.method == "elpv":
        return ELPV_SEGMENTS
    if segment_maps.method == "static" and layout == "demo":
        from segad.ingestion.demo import SEGMENTS

        return SEGMENTS
    return None


def evaluated_rows(metrics: pd.DataFrame, report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The metric rows (`segad.schemas.Metrics`) of the bundled combination: the dataset,
    benchmark, category, method and split seed of `report` (`assemble_bundle`'s second value).

    They are recorded in the manifest (``config.evaluation``), so a bundle carries the figures of
    the evaluation it was promoted after. ValueError when the evaluation holds none: a bundle is
    promoted only after its own combination was evaluated."""
    wanted = {k: report[k] for k in ("dataset", "benchmark", "category", "method", "split_seed")}
    absent = [c for c in wanted if c not in metrics.columns]
    if absent and len(metrics):
        raise ValueError(f"metrics: missing columns {absent}")
    chosen = np.zeros(len(metrics), dtype=bool) if absent else np.ones(len(metrics), dtype=bool)
    for column, value in wanted.items() if not absent else ():
        chosen &= (metrics[column].astype(str) == str(value)).to_numpy()
    if not chosen.any():
        raise ValueError(
            f"the evaluation holds no metrics of the bundled combination {wanted}; a bundle is promoted "
            "only after its combination was evaluated: run `kedro run --pipelines segad` (or the "
            "evaluation pipeline) for this regime first"
        )
    rows = metrics[chosen].to_dict(orient="records")
    return [
        {str(k): (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()} for row in rows
    ]
