"""Thin node over segad.production.bundle / segad.production.scoring: assemble the production bundle of a training run."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from segad.meta.brf import BRFConfig, method_name
from segad.pipelines.brf.nodes import model_key, select_run
from segad.production.scoring import choose_operating_point, input_spec_from_paths, out_of_fold_scores
from segad.segments.segmentation import ELPV_SEGMENTS, Segmentation

log = logging.getLogger(__name__)

KNOWN = {"split_seed", "category", "detectors", "max_miss_rate", "oof_folds", "segment_names"}
TRAINING_ROLES = ("detector_train", "brf_train")


def build_bundle(
    features: pd.DataFrame,
    image_index: pd.DataFrame,
    splits: pd.DataFrame,
    segment_maps: Segmentation,
    brf_models: dict,
    params: dict,
    parameters: dict,
    **detector_handles,
) -> tuple[dict, dict]:
    """(arguments of `segad.production.bundle.write_bundle`, operating-point report) for one seed and category.

    `detector_handles` holds ``<detector>__map_index`` (its model_key per seed) and
    ``<detector>__detector_store`` (the folder of fitted detectors) for every run detector.
    """
    unknown = set(params) - KNOWN
    if unknown:
        raise ValueError(f"unknown bundle parameters {sorted(unknown)}; known: {sorted(KNOWN)}")
    run_detectors = [str(d) for d in parameters["detectors"]]
    seeds = [int(s) for s in parameters["seeds"]]
    seed = int(params["split_seed"]) if params.get("split_seed") is not None else seeds[0]
    if seed not in seeds:
        raise ValueError(f"bundle.split_seed {seed} is not one of the run's seeds {seeds}")
    categories = sorted(image_index["category"].unique())
    category = params.get("category") or (categories[0] if len(categories) == 1 else None)
    if category not in categories:
        raise ValueError(f"bundle.category must name one of the run's categories {categories}, "
                         f"got {params.get('category')!r} (a bundle serves one product category)")
    wanted = params.get("detectors") or run_detectors
    members = [d for d in run_detectors if d in set(wanted)]  # feature order = run order
    if "classifier" in wanted or len(members) != len(set(wanted)):
        raise ValueError(f"bundle.detectors {list(wanted)} must be detectors of this run {run_detectors} "
                         "(the supervised classifier cannot be bundled yet)")
    method = method_name(members)
    layout, benchmark = str(parameters["dataset"]["layout"]), str(parameters["benchmark"])
    key = model_key(layout, benchmark, str(category), method, seed)  # this run's regime only
    if key not in brf_models:
        ours = sorted(k for k in brf_models if k.startswith(f"{layout}/{benchmark}/"))
        raise ValueError(f"no BRF model {key!r} (run the brf pipeline for dataset {layout}, benchmark "
                         f"{benchmark}; brf.combinations must include {members}); this regime has: {ours[:10]}")
    brf = brf_models[key]()
    columns = list(brf.get_booster().feature_names or [])
    if not columns:
        raise ValueError(f"BRF model {key} carries no feature names; retrain it with the brf pipeline")

    table = select_run(features, image_index, parameters["dataset"], seeds, run_detectors, parameters["benchmark"])
    rows = table[(table["category"] == category) & (table["split_seed"] == seed)
                 & (table["role"] == "brf_train")]
    labels = rows["label"].to_numpy().astype(np.int64)
    config = BRFConfig.from_params(parameters["brf"].get("model", {}))
    held_out = out_of_fold_scores(rows[columns].to_numpy(np.float64), labels, config, seed=seed,
                                  n_folds=int(params.get("oof_folds", 5)))
    n_synthetic = int(rows["image_id"].str.startswith("synthetic/").sum())
    source = (f"{int(params.get('oof_folds', 5))}-fold out-of-fold BRF scores of the brf_train rows "
              f"(split_seed {seed}, category {category}; {n_synthetic} synthetic defects)")
    op = choose_operating_point(labels, held_out, float(params.get("max_miss_rate", 0.02)), source=source)
    log.info("operating point %s: threshold %.4f rejects at least %.1f%% of bad parts; expected pass "
             "rate of good parts %.1f%% (on %d good / %d bad held-out rows)", method, op.threshold,
             100 * (1 - op.target_miss_rate), 100 * op.expected_pass_rate, op.n_good, op.n_bad)

    if category not in segment_maps.static_maps:
        raise ValueError(f"category {category}: segmentation method {segment_maps.method!r} has no static map; "
                         "new images have no per-image map, so production scoring needs a static, elpv, "
                         "auto or single segmentation")
    detector_dirs = {}
    in_category = image_index.loc[image_index["category"] == category, "image_id"]
    for name in members:
        index = detector_handles[f"{name}__map_index"]
        rows = index[(index["split_seed"] == seed) & index["image_id"].isin(in_category)]
        model_keys = sorted(rows["model_key"].unique())
        if len(model_keys) != 1:
            raise ValueError(f"{name}.map_index has model keys {model_keys} for split_seed {seed} and "
                             f"category {category}, expected one")
        detector_dirs[name] = Path(detector_handles[f"{name}__detector_store"]) / model_keys[0]

    in_training = splits[(splits["split_seed"] == seed) & splits["role"].isin(TRAINING_ROLES)]["image_id"]
    train_images = image_index[image_index["image_id"].isin(set(in_training))
                               & (image_index["category"] == category)]
    spec = input_spec_from_paths(train_images["path"].tolist(), int(parameters["image_size"]))
    names = params.get("segment_names") or _builtin_segment_names(segment_maps, parameters)
    contents = dict(
        detector_dirs=detector_dirs,
        segments=segment_maps.static_maps[category],
        n_segments=int(segment_maps.n_segments[category]),
        brf=brf,
        feature_columns=columns,
        operating_point=op,
        input_spec=spec,
        segment_names={int(k): str(v) for k, v in (names or {}).items()},
        config={"dataset": layout, "benchmark": benchmark, "split_seed": seed, "category": category,
                "method": method, "brf_model": key,
                "segmentation_source": segment_maps.sources.get(category), "parameters": parameters},
    )
    report = {"dataset": layout, "benchmark": benchmark, "method": method, "category": category,
              "split_seed": seed, **op.as_dict(),
              "input_spec": spec.as_dict()}
    return contents, report


def _builtin_segment_names(segment_maps: Segmentation, parameters: dict) -> dict | None:
    if segment_maps.method == "elpv":
        return ELPV_SEGMENTS
    if segment_maps.method == "static" and parameters["dataset"].get("layout") == "demo":
        from segad.ingestion.demo import SEGMENTS

        return SEGMENTS
    return None
