"""Writing SegAD bundles (format: `segad.production.bundle`): one folder, or versions + LATEST.

Writing is atomic: the bundle is assembled in a temporary sibling folder and moved into place
with ``os.replace`` (`segad.storage.files.replace_folder`); an interrupted write leaves the previous
bundle and LATEST intact. The bundle pipeline uses `write_versioned_bundle`: a new folder
``<parent>/<bundle_id>`` per build, then ``<parent>/LATEST`` names it; older bundles stay.
Files the project did not write are never replaced (`segad.storage.files.NotOwnedError`).

Example:
    >>> from segad.production.bundle import BUNDLE_ID
    >>> from segad.production.writer import new_bundle_id
    >>> bool(BUNDLE_ID.match(new_bundle_id()))
    True
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from segad import versions
from segad.columns import feature_columns as computed_columns
from segad.meta.blend import Blend
from segad.production.bundle import (
    BRF_FILE,
    BUNDLE_ID,
    DETECTORS_DIR,
    FORMAT,
    FORMAT_VERSION,
    LATEST,
    MANIFEST,
    BundleError,
    BundleIntegrityError,
    BundleSchemaError,
    column_positions,
    file_hashes,
    own_files,
    package_versions,
    read_manifest,
)
from segad.production.bundle_classifier import copy_classifiers
from segad.production.bundle_segments import BundleSegments, save_segments
from segad.production.inputs import InputSpec
from segad.production.operating_point import OperatingPoint
from segad.segments.auto_segments import FeatureClusters
from segad.storage.files import atomic_path, check_owned, relative_files, replace_folder, staging_folder

logger = logging.getLogger(__name__)


def new_bundle_id() -> str:
    """A fresh bundle id: UTC time to the second + 8 random hex digits (sorts by time)."""
    return f"{_dt.datetime.now(_dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def write_bundle(
    target: str | Path,
    *,
    detector_dirs: Mapping[str, str | Path],
    segments: np.ndarray | None = None,
    brf: Any,
    feature_columns: Sequence[str],
    operating_point: OperatingPoint,
    input_spec: InputSpec,
    config: Mapping[str, Any],
    clusters: FeatureClusters | None = None,
    classifier_dirs: Sequence[str | Path] = (),
    n_segments: int | None = None,
    segment_names: Mapping[int, str] | None = None,
    bundle_id: str | None = None,
    blend: Blend | None = None,
) -> Path:
    """Write a bundle folder at `target` atomically; returns `target`.

    Args:
        target: bundle folder (replaced if it exists and holds only a bundle's own files;
            `segad.storage.files.NotOwnedError` otherwise). The bundle pipeline uses
            `write_versioned_bundle`, which never replaces a bundle.
        detector_dirs: detector name -> folder written by `segad.detection.saved.save_detector`, in
            feature order; each folder is copied into the bundle unchanged.
        segments: int (H, W) label map at the map resolution (H, W) = input_spec.image_size, for
            static segments; or
        clusters: the shared centres of per-image segments (`segad.segments.auto_segments`): each
            scored image is segmented by its own backbone features (`segad.production.bundle_segments`).
            Exactly one of `segments` and `clusters`.
        brf: the fitted BRF (`xgboost.XGBClassifier` or `Booster`); saved as UBJSON with the
            feature column names.
        feature_columns: ordered BRF input columns: `segad.columns.feature_columns` of
            these detectors and segments, or an ordered subset of them (a BRF of the brf stage
            leaves out columns that were empty for its category); with `classifier_dirs`,
            ``classifier__score`` first.
        operating_point, input_spec: `segad.production.operating_point`, `segad.production.inputs`.
        config: the training configuration to record (parameters, split seed, ...).
        classifier_dirs: the kept classifier model folder(s) behind ``classifier__score``
            (`segad.meta.classifier_models`, fold order); empty = no classifier in the combination.
        n_segments: L (default: largest label + 1, or the number of centres).
        segment_names: optional readable names of the segments.
        bundle_id: the id to record (default `new_bundle_id`).
        blend: the blend of the BRF score with one member's score (`segad.meta.blend`); its
            column must be one of `feature_columns`. None: the score is the BRF's raw margin.
    """
    target = Path(target)
    detectors = list(detector_dirs)
    if (segments is None) == (clusters is None):
        raise BundleError("write_bundle needs exactly one of segments (a static map) and clusters (per-image)")
    segmentation = (
        BundleSegments.static(segments, n_segments)
        if segments is not None
        else BundleSegments.per_image(cast(FeatureClusters, clusters), n_segments)
    )
    n_segments = segmentation.n_segments
    computed = computed_columns(detectors, n_segments, classifier=bool(classifier_dirs))
    try:
        column_positions(feature_columns, computed)
    except BundleSchemaError as error:
        raise BundleSchemaError(
            f"feature columns do not match segad.segments.features for detectors {list(detectors)} and "
            f"{n_segments} segments: {error}"
        ) from error
    if segmentation.labels is not None and segmentation.labels.shape != input_spec.image_size.hw:
        raise BundleSchemaError(
            f"segment map {segmentation.labels.shape} is not at the map resolution {input_spec.image_size.hw} "
            "(height, width)"
        )
    if blend is not None and blend.column not in feature_columns:
        raise BundleSchemaError(f"the blend reads {blend.column}, which is not one of the feature columns")
    check_owned(target, own_files(target), "write_bundle")
    bundle_id = bundle_id or new_bundle_id()
    staging = staging_folder(target)
    try:
        for name, source in detector_dirs.items():
            _copy_detector(name, Path(source), staging / DETECTORS_DIR / name)
        segmentation_entry = save_segments(staging, segmentation, input_spec.image_size)
        classifier = copy_classifiers(classifier_dirs, staging, input_spec.image_size) if classifier_dirs else None
        booster = brf.get_booster() if hasattr(brf, "get_booster") else brf
        if booster.num_features() != len(feature_columns):
            raise BundleSchemaError(
                f"the BRF takes {booster.num_features()} features, the schema has {len(feature_columns)}"
            )
        booster = booster.copy()
        booster.feature_names = list(feature_columns)
        booster.save_model(str(staging / BRF_FILE))
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "bundle_id": bundle_id,
            "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "packages": package_versions(),
            "detectors": list(detectors),
            "n_segments": n_segments,
            "segmentation": segmentation_entry,
            "classifier": classifier,
            "segment_names": {str(k): str(v) for k, v in (segment_names or {}).items()},
            "computed_columns": computed,
            "feature_columns": list(feature_columns),
            "score": (
                "raw margin of the XGBoost BRF (binary:logitraw): a score, not a probability"
                if blend is None
                else f"blend of the BRF's raw margin and {blend.column} (segad.meta.blend): a score, not a probability"
            ),
            "blend": blend.as_dict() if blend is not None else None,
            "operating_point": operating_point.as_dict(),
            "input_spec": input_spec.as_dict(),
            "config": versions.jsonable(dict(config)),
            "files": file_hashes(staging),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False))
        replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("wrote bundle %s at %s", manifest["bundle_id"], target)
    return target


def _parent_files(parent: Path) -> list[str]:
    """Files of `parent` that versioned bundle writing owns: LATEST (and its temp files), the
    bundle folders (those with a manifest) and staging folders left by an interrupted write."""
    owned: list[str] = []
    for child in parent.iterdir() if parent.is_dir() else []:
        name = child.name
        if child.is_file() and (name == LATEST or name.startswith(f".{LATEST}.")):
            owned.append(name)
        elif child.is_dir() and ((child / MANIFEST).is_file() or BUNDLE_ID.match(name.lstrip(".").split(".")[0] or "")):
            owned.extend(f"{name}/{f}" for f in relative_files(child))
    return owned


def write_latest(parent: str | Path, name: str) -> None:
    """Point `parent`/LATEST at the bundle folder `name` (temp file + ``os.replace``: atomic)."""
    parent = Path(parent)
    if not (parent / name / MANIFEST).is_file():
        raise BundleError(f"{parent / name}: not a bundle folder; LATEST must name one")
    with atomic_path(parent / LATEST) as temp:
        temp.write_text(name + "\n")


def write_versioned_bundle(parent: str | Path, bundle_id: str | None = None, **arguments: Any) -> Path:
    """Write a new bundle folder ``parent/<bundle_id>`` and point ``parent/LATEST`` at it.

    `bundle_id`: the id to use (the bundle stage picks it, so that its report names it; BundleError
    when `parent` has it already); None: a fresh `new_bundle_id`. `arguments` are those of
    `write_bundle` (without `bundle_id`). Older bundles under `parent`
    stay. A bundle of the earlier, unversioned layout at `parent` itself is first moved into
    ``parent/<its bundle_id>``. `segad.storage.files.NotOwnedError` when `parent` holds files that are
    not bundles (nothing is changed then). Returns the new bundle folder.
    """
    parent = Path(parent)
    if (parent / MANIFEST).is_file():
        if BUNDLE_ID.match(parent.name) and (parent.parent / LATEST).is_file():
            raise BundleError(
                f"{parent}: is one versioned bundle of {parent.parent}; write new bundles to the parent folder"
            )
        _move_unversioned(parent)
    check_owned(parent, _parent_files(parent), "the bundle pipeline")
    if bundle_id is not None:
        if not BUNDLE_ID.match(bundle_id):
            raise BundleError(f"bundle id {bundle_id!r} does not have the form of new_bundle_id()")
        if (parent / bundle_id).exists():
            raise BundleError(f"{parent / bundle_id}: a bundle with this id exists already; ids are never reused")
    bundle_id = bundle_id or new_bundle_id()
    while (parent / bundle_id).exists():  # same second, same random digits: practically never
        bundle_id = new_bundle_id()
    folder = write_bundle(parent / bundle_id, bundle_id=bundle_id, **arguments)
    write_latest(parent, bundle_id)
    return folder


def _move_unversioned(parent: Path) -> None:
    """Move an unversioned bundle at `parent` to ``parent/<bundle_id>`` and write LATEST."""
    check_owned(parent, own_files(parent), "the bundle pipeline")
    bundle_id = str(read_manifest(parent).get("bundle_id", ""))
    if not BUNDLE_ID.match(bundle_id):
        raise BundleError(
            f"{parent}: unversioned bundle with unexpected bundle_id {bundle_id!r}; "
            "move it elsewhere before writing a new bundle here"
        )
    aside = parent.with_name(f".{parent.name}.unversioned-{uuid.uuid4().hex[:8]}")
    os.replace(parent, aside)
    parent.mkdir()
    os.replace(aside, parent / bundle_id)
    write_latest(parent, bundle_id)
    logger.info("moved the unversioned bundle %s into %s", bundle_id, parent / bundle_id)


def _copy_detector(name: str, source: Path, destination: Path) -> None:
    """Copy a saved detector into a bundle, verified (`segad.storage.persistence.copy_model_folder`)."""
    from segad.storage.persistence import DetectorLoadError, copy_model_folder

    meta = source / "detector.json"
    if not meta.is_file():
        raise BundleError(f"{source}: not a saved detector folder (no detector.json)")
    saved = json.loads(meta.read_text()).get("detector")
    if saved != name:
        raise BundleSchemaError(f"{source}: holds detector {saved!r}, expected {name!r}")
    try:
        copy_model_folder(source, destination)
    except DetectorLoadError as error:
        raise BundleIntegrityError(
            f"{error}: not bundled; rerun `kedro run --pipelines segad`, which refits a damaged detector"
        ) from error
