"""The SegAD bundle: everything production scoring needs, in one versioned folder.

Versions: the bundle pipeline writes each bundle as a new folder ``<parent>/<bundle_id>``
(`write_versioned_bundle`; ``bundle_id`` = UTC time + random, e.g. ``20261202T123456Z-1a2b3c4d``)
and then points ``<parent>/LATEST`` (a text file holding that folder name, replaced atomically) at
it. Older bundles stay. `resolve_bundle` turns a parent folder into its latest bundle and accepts
a bundle folder itself::

    data/06_models/segad_bundle/
        LATEST                        "20261202T123456Z-1a2b3c4d"
        20261201T090000Z-5e6f7a8b/    an older bundle
        20261202T123456Z-1a2b3c4d/    the latest bundle

Layout of one bundle (all paths relative to the bundle folder)::

    manifest.json             format name + version, bundle id, creation time, package versions,
                              configuration, detectors, feature schema, operating point, input
                              spec, segment names, sha256 of every other file
    detectors/<name>/...      each fitted detector, as `segad.detection.persistence` saves it
    segmentation.npy          int64 (S, S) segment labels at map resolution (np.save, no pickle)
    brf.ubj                   the XGBoost BRF (UBJSON model file)

Loading (`load_bundle`) refuses, with an error that says what differs:

- another format or a newer format version (`BundleVersionError`);
- packages whose recorded major.minor differs from the installed one for the libraries that
  define the model files or the numbers (`CHECKED_PACKAGES`), unless `allow_version_mismatch`
  (then it only logs a warning);
- feature columns that this code's `segad.segments.features.feature_columns` no longer produces for the
  bundled detectors and segments, BRF columns that are not an ordered subset of them, or that
  differ from the BRF's own feature names (`BundleSchemaError`);
- a file whose sha256 differs from the manifest, or a missing file (`BundleIntegrityError`).

Nothing is unpickled: the BRF loads from UBJSON, the segment map with
``np.load(allow_pickle=False)``, detectors through `segad.detection.persistence` (torch weights with
``weights_only=True``), the manifest is JSON.

Writing is atomic: the bundle is assembled in a temporary sibling folder and moved into place
with ``os.replace`` (`segad.files.replace_folder`); an interrupted write leaves the previous
bundle and LATEST intact.

Example:
    >>> from segad.production.bundle import package_versions
    >>> {"anomalib", "kedro", "numpy", "torch", "xgboost"} <= set(package_versions())
    True
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segad import versions
from segad.files import check_owned, file_sha256, relative_files, replace_folder
from segad.production.scoring import InputSpec, OperatingPoint

logger = logging.getLogger(__name__)

FORMAT = "segad-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SEGMENTATION_FILE = "segmentation.npy"
BRF_FILE = "brf.ubj"
DETECTORS_DIR = "detectors"
#: The file in a bundle parent folder naming its latest bundle folder.
LATEST = "LATEST"
#: Folder names of versioned bundles (= their bundle_id).
BUNDLE_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
#: Libraries whose major.minor must match between training and scoring: they define the
#: detector weights' meaning (anomalib, torch, timm), the BRF file (xgboost) and the features.
CHECKED_PACKAGES = ("segad", "anomalib", "torch", "timm", "xgboost")
#: Recorded for the record (module names).
RECORDED_PACKAGES = CHECKED_PACKAGES + (
    "torchvision", "kedro", "numpy", "numba", "scipy", "pandas", "PIL", "python")


class BundleError(ValueError):
    """A bundle cannot be written or used; the message says which file and what is wrong."""


class BundleVersionError(BundleError):
    """The bundle was written by an incompatible format or package version."""


class BundleSchemaError(BundleError):
    """The bundle's feature schema does not match this code or its own BRF model."""


class BundleIntegrityError(BundleError):
    """A bundle file is missing or its content differs from the manifest."""


# --------------------------------------------------------------------------------------------
# versions


def package_versions() -> dict[str, str]:
    """Installed versions of `RECORDED_PACKAGES` ('missing' for one that is not installed)."""
    return versions.package_versions(RECORDED_PACKAGES)


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


def version_mismatches(recorded: Mapping[str, str], installed: Mapping[str, str]) -> list[str]:
    """'name: bundle X, installed Y' for every CHECKED_PACKAGES entry whose major.minor differs."""
    problems = []
    for name in CHECKED_PACKAGES:
        want, have = recorded.get(name), installed.get(name)
        if want is None or have is None or _major_minor(want) != _major_minor(have):
            problems.append(f"{name}: bundle {want}, installed {have}")
    return problems


# --------------------------------------------------------------------------------------------
# files


def _file_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): file_sha256(p)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST}


def save_segmentation(path: Path, labels: np.ndarray) -> None:
    """Write an integer (S, S) label map as .npy (no pickle)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise BundleError(f"segment labels must be an integer (H, W) array, got {labels.dtype} {labels.shape}")
    np.save(path, labels.astype(np.int64), allow_pickle=False)


def load_segmentation(path: Path, n_segments: int, size: int) -> np.ndarray:
    """Read the bundle's label map and check shape (size, size) and labels in [0, n_segments)."""
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise BundleIntegrityError(f"{path}: unreadable segment map ({error})") from error
    if labels.shape != (size, size) or not np.issubdtype(labels.dtype, np.integer):
        raise BundleSchemaError(
            f"{path}: segment map {labels.dtype} {labels.shape}, expected integer ({size}, {size})")
    if labels.size and (labels.min() < 0 or labels.max() >= n_segments):
        raise BundleSchemaError(f"{path}: labels outside [0, {n_segments})")
    return labels


def load_brf(path: Path):
    """The BRF as an `xgboost.XGBClassifier` from a JSON/UBJSON model file (never a pickle)."""
    import xgboost

    if path.suffix not in (".json", ".ubj"):
        raise BundleError(f"{path}: the BRF must be an XGBoost .json or .ubj model file")
    model = xgboost.XGBClassifier()
    try:
        model.load_model(str(path))
    except (xgboost.core.XGBoostError, ValueError, TypeError) as error:
        raise BundleIntegrityError(f"{path}: unreadable XGBoost model ({error})") from error
    return model


# --------------------------------------------------------------------------------------------
# the bundle


@dataclass
class Bundle:
    """A loaded bundle.

    Attributes:
        root: the bundle folder.
        manifest: the parsed manifest.json.
        detectors: detector names, in feature order.
        feature_columns: the ordered BRF input columns.
        column_positions: int64 positions of `feature_columns` among the columns that
            `segad.segments.features.feature_matrix` computes (`computed_columns` in the manifest).
        segments: int64 (S, S) labels; n_segments: L.
        operating_point: threshold and expected rates.
        input_spec: what scored images must look like.
        brf: the BRF (`xgboost.XGBClassifier`; scores with `segad.meta.brf.brf_scores`).
    Detectors stay on disk until `load_detectors`.
    """

    root: Path
    manifest: dict
    detectors: list[str]
    feature_columns: list[str]
    column_positions: np.ndarray
    segments: np.ndarray
    n_segments: int
    operating_point: OperatingPoint
    input_spec: InputSpec
    brf: Any

    def detector_dir(self, name: str) -> Path:
        return self.root / DETECTORS_DIR / name

    def load_detectors(self, device: str = "cpu", backbone_cache_dir: str | Path | None = None) -> dict:
        """name -> fitted detector in eval mode, via `segad.detection.persistence.load_detector`.

        Raises BundleSchemaError when a saved detector is another model or another image size.
        """
        from segad.detection.persistence import load_detector

        models = {}
        for name in self.detectors:
            model, config, image_size = load_detector(self.detector_dir(name), device, backbone_cache_dir)
            if config.name != name or image_size != self.input_spec.image_size:
                raise BundleSchemaError(
                    f"{self.detector_dir(name)}: saved detector is {config.name} at {image_size} px, "
                    f"the manifest expects {name} at {self.input_spec.image_size} px")
            models[name] = model
        return models

    @property
    def bundle_id(self) -> str:
        return str(self.manifest["bundle_id"])

    @property
    def segment_names(self) -> list[str]:
        names = self.manifest.get("segment_names") or {}
        return [str(names.get(str(i), f"seg{i}")) for i in range(self.n_segments)]


def computed_feature_columns(detectors: Sequence[str], n_segments: int) -> list[str]:
    """The columns `segad.segments.features.feature_matrix` produces for these detectors and segments."""
    from segad.segments.features import feature_columns

    return feature_columns(list(detectors), n_segments)


def column_positions(columns: Sequence[str], computed: Sequence[str]) -> np.ndarray:
    """Positions of `columns` in `computed`; BundleSchemaError unless `columns` is an ordered
    subset of `computed` (the BRF may drop columns that were empty for its category)."""
    index = {name: i for i, name in enumerate(computed)}
    unknown = [c for c in columns if c not in index]
    if unknown:
        raise BundleSchemaError(f"BRF columns not produced by segad.segments.features: {unknown[:5]}")
    positions = np.array([index[c] for c in columns], dtype=np.int64)
    if len(columns) == 0 or np.any(np.diff(positions) <= 0):
        raise BundleSchemaError("BRF columns are empty or not in segad.segments.features' order")
    return positions


def new_bundle_id() -> str:
    """A fresh bundle id: UTC time to the second + 8 random hex digits (sorts by time)."""
    return f"{_dt.datetime.now(_dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def write_bundle(
    target: str | Path,
    *,
    detector_dirs: Mapping[str, str | Path],
    segments: np.ndarray,
    brf: Any,
    feature_columns: Sequence[str],
    operating_point: OperatingPoint,
    input_spec: InputSpec,
    config: Mapping[str, Any],
    n_segments: int | None = None,
    segment_names: Mapping[int, str] | None = None,
    bundle_id: str | None = None,
) -> Path:
    """Write a bundle folder at `target` atomically; returns `target`.

    Args:
        target: bundle folder (replaced if it exists and holds only a bundle's own files;
            `segad.files.NotOwnedError` otherwise). The bundle pipeline uses
            `write_versioned_bundle`, which never replaces a bundle.
        detector_dirs: detector name -> folder written by `segad.detection.persistence.save_detector`, in
            feature order; each folder is copied into the bundle unchanged.
        segments: int (S, S) label map at map resolution S = input_spec.image_size.
        brf: the fitted BRF (`xgboost.XGBClassifier` or `Booster`); saved as UBJSON with the
            feature column names.
        feature_columns: ordered BRF input columns: the columns `segad.segments.features` computes for
            these detectors and segments, or an ordered subset of them (a BRF of the brf stage
            leaves out columns that were empty for its category). The supervised classifier
            score is not supported in a bundle (its model is not bundled).
        operating_point, input_spec: from `segad.production.scoring`.
        config: the training configuration to record (parameters, split seed, ...).
        n_segments: L (default: largest label + 1).
        segment_names: optional readable names of the segments.
        bundle_id: the id to record (default `new_bundle_id`).
    """
    target = Path(target)
    detectors = list(detector_dirs)
    segments = np.asarray(segments)
    n_segments = int(n_segments) if n_segments is not None else int(segments.max()) + 1
    computed = computed_feature_columns(detectors, n_segments)
    try:
        column_positions(feature_columns, computed)
    except BundleSchemaError as error:
        raise BundleSchemaError(
            f"feature columns do not match segad.segments.features for detectors {list(detectors)} and "
            f"{n_segments} segments: {error}") from error
    if segments.shape != (input_spec.image_size, input_spec.image_size):
        raise BundleSchemaError(
            f"segment map {segments.shape} is not at the map resolution {input_spec.image_size}")
    check_owned(target, _own_files(target), "write_bundle")
    bundle_id = bundle_id or new_bundle_id()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, source in detector_dirs.items():
            _copy_detector(name, Path(source), staging / DETECTORS_DIR / name)
        save_segmentation(staging / SEGMENTATION_FILE, segments)
        booster = brf.get_booster() if hasattr(brf, "get_booster") else brf
        if booster.num_features() != len(feature_columns):
            raise BundleSchemaError(
                f"the BRF takes {booster.num_features()} features, the schema has {len(feature_columns)}")
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
            "segment_names": {str(k): str(v) for k, v in (segment_names or {}).items()},
            "computed_columns": computed,
            "feature_columns": list(feature_columns),
            "score": "raw margin of the XGBoost BRF (binary:logitraw): a score, not a probability",
            "operating_point": operating_point.as_dict(),
            "input_spec": input_spec.as_dict(),
            "config": versions.jsonable(dict(config)),
            "files": _file_hashes(staging),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False))
        replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("wrote bundle %s at %s", manifest["bundle_id"], target)
    return target


def _own_files(folder: Path) -> list[str] | None:
    """Files of the bundle at `folder` per its manifest (+ the manifest), or None if it has none."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return [MANIFEST, *manifest.get("files", {})] if isinstance(manifest, dict) else None


def _parent_files(parent: Path) -> list[str]:
    """Files of `parent` that versioned bundle writing owns: LATEST (and its temp files), the
    bundle folders (those with a manifest) and staging folders left by an interrupted write."""
    owned: list[str] = []
    for child in parent.iterdir() if parent.is_dir() else []:
        name = child.name
        if child.is_file() and (name == LATEST or name.startswith(f".{LATEST}.")):
            owned.append(name)
        elif child.is_dir() and ((child / MANIFEST).is_file()
                                 or BUNDLE_ID.match(name.lstrip(".").split(".")[0] or "")):
            owned.extend(f"{name}/{f}" for f in relative_files(child))
    return owned


def write_latest(parent: str | Path, name: str) -> None:
    """Point `parent`/LATEST at the bundle folder `name` (temp file + ``os.replace``: atomic)."""
    parent = Path(parent)
    if not (parent / name / MANIFEST).is_file():
        raise BundleError(f"{parent / name}: not a bundle folder; LATEST must name one")
    temp = parent / f".{LATEST}.{uuid.uuid4().hex}.tmp"
    try:
        temp.write_text(name + "\n")
        os.replace(temp, parent / LATEST)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_versioned_bundle(parent: str | Path, **arguments: Any) -> Path:
    """Write a new bundle folder ``parent/<bundle_id>`` and point ``parent/LATEST`` at it.

    `arguments` are those of `write_bundle` (without `bundle_id`). Older bundles under `parent`
    stay. A bundle of the earlier, unversioned layout at `parent` itself is first moved into
    ``parent/<its bundle_id>``. `segad.files.NotOwnedError` when `parent` holds files that are
    not bundles (nothing is changed then). Returns the new bundle folder.
    """
    parent = Path(parent)
    if (parent / MANIFEST).is_file():
        if BUNDLE_ID.match(parent.name) and (parent.parent / LATEST).is_file():
            raise BundleError(f"{parent}: is one versioned bundle of {parent.parent}; "
                              "write new bundles to the parent folder")
        _move_unversioned(parent)
    check_owned(parent, _parent_files(parent), "the bundle pipeline")
    bundle_id = new_bundle_id()
    while (parent / bundle_id).exists():  # same second, same random digits: practically never
        bundle_id = new_bundle_id()
    folder = write_bundle(parent / bundle_id, bundle_id=bundle_id, **arguments)
    write_latest(parent, bundle_id)
    return folder


def _move_unversioned(parent: Path) -> None:
    """Move an unversioned bundle at `parent` to ``parent/<bundle_id>`` and write LATEST."""
    check_owned(parent, _own_files(parent), "the bundle pipeline")
    bundle_id = str(read_manifest(parent).get("bundle_id", ""))
    if not BUNDLE_ID.match(bundle_id):
        raise BundleError(f"{parent}: unversioned bundle with unexpected bundle_id {bundle_id!r}; "
                          "move it elsewhere before writing a new bundle here")
    aside = parent.with_name(f".{parent.name}.unversioned-{uuid.uuid4().hex[:8]}")
    os.replace(parent, aside)
    parent.mkdir()
    os.replace(aside, parent / bundle_id)
    write_latest(parent, bundle_id)
    logger.info("moved the unversioned bundle %s into %s", bundle_id, parent / bundle_id)


def resolve_bundle(path: str | Path) -> Path:
    """The bundle folder `path` names: `path` itself when it holds a manifest, else the folder
    ``path/LATEST`` names. `BundleIntegrityError` when neither is a bundle."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    latest = path / LATEST
    if not latest.is_file():
        raise BundleIntegrityError(f"{path}: neither a bundle ({MANIFEST}) nor a bundle parent ({LATEST})")
    name = latest.read_text().strip()
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise BundleIntegrityError(f"{latest}: {name!r} is not a bundle folder name")
    if not (path / name / MANIFEST).is_file():
        raise BundleIntegrityError(f"{latest}: names {name!r}, which is not a bundle under {path}")
    return path / name


def list_bundles(parent: str | Path) -> list[str]:
    """Names of the bundle folders under `parent`, oldest first (ids sort by creation time)."""
    parent = Path(parent)
    return sorted(c.name for c in parent.iterdir() if c.is_dir() and (c / MANIFEST).is_file()) \
        if parent.is_dir() else []


def _copy_detector(name: str, source: Path, destination: Path) -> None:
    meta = source / "detector.json"
    if not meta.is_file():
        raise BundleError(f"{source}: not a saved detector folder (no detector.json)")
    saved = json.loads(meta.read_text()).get("detector")
    if saved != name:
        raise BundleSchemaError(f"{source}: holds detector {saved!r}, expected {name!r}")
    shutil.copytree(source, destination)


def _first_difference(got: Sequence[str], want: Sequence[str]) -> str:
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return f"column {i}: {a!r} instead of {b!r}"
    return f"{len(got)} columns instead of {len(want)}"


def read_manifest(root: str | Path) -> dict:
    """The parsed manifest, after checking the format name and version."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise BundleIntegrityError(f"{path}: no bundle manifest (is {root} a SegAD bundle?)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BundleIntegrityError(f"{path}: unreadable manifest ({error})") from error
    if manifest.get("format") != FORMAT:
        raise BundleVersionError(f"{path}: format {manifest.get('format')!r} is not {FORMAT!r}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise BundleVersionError(
            f"{path}: bundle format version {version}, this segad reads version {FORMAT_VERSION}"
            + (" (upgrade segad)" if newer else " (retrain the bundle)"))
    return manifest


def verify_files(root: Path, manifest: Mapping[str, Any]) -> None:
    """Every file listed in the manifest exists with its recorded sha256; no file is extra."""
    recorded = manifest.get("files", {})
    present = _file_hashes(root)
    missing = sorted(set(recorded) - set(present))
    if missing:
        raise BundleIntegrityError(f"{root}: bundle files missing: {missing}")
    changed = sorted(name for name in recorded if present[name] != recorded[name])
    if changed:
        raise BundleIntegrityError(f"{root}: bundle files changed since writing (sha256): {changed}")
    extra = sorted(set(present) - set(recorded))
    if extra:
        raise BundleIntegrityError(f"{root}: files not in the manifest: {extra}")


def load_bundle(
    root: str | Path,
    *,
    allow_version_mismatch: bool = False,
) -> Bundle:
    """Load and check a bundle folder (see the module docstring for what is checked).

    Args:
        root: the bundle folder.
        allow_version_mismatch: only warn when CHECKED_PACKAGES differ in major.minor.
    """
    root = Path(root)
    manifest = read_manifest(root)
    mismatches = version_mismatches(manifest.get("packages", {}), package_versions())
    if mismatches:
        message = f"{root}: package versions differ from training: " + "; ".join(mismatches)
        if not allow_version_mismatch:
            raise BundleVersionError(
                message + ". Install the recorded versions or retrain; "
                "bundle.allow_version_mismatch=true scores anyway at your own risk")
        logger.warning(message)
    verify_files(root, manifest)
    detectors = [str(d) for d in manifest["detectors"]]
    n_segments = int(manifest["n_segments"])
    columns = [str(c) for c in manifest["feature_columns"]]
    computed = computed_feature_columns(detectors, n_segments)
    recorded = [str(c) for c in manifest.get("computed_columns", [])]
    if recorded != computed:
        raise BundleSchemaError(
            f"{root}: this segad computes other feature columns than the bundle was trained with "
            f"({_first_difference(recorded, computed)}); retrain the bundle")
    try:
        positions = column_positions(columns, computed)
    except BundleSchemaError as error:
        raise BundleSchemaError(f"{root}: feature schema: {error}") from error
    brf = load_brf(root / BRF_FILE)
    booster = brf.get_booster()
    if booster.feature_names is not None and list(booster.feature_names) != columns:
        raise BundleSchemaError(
            f"{root / BRF_FILE}: the BRF was trained on other columns than the manifest lists "
            f"({_first_difference(list(booster.feature_names), columns)})")
    if booster.num_features() != len(columns):
        raise BundleSchemaError(
            f"{root / BRF_FILE}: the BRF expects {booster.num_features()} features, "
            f"the manifest lists {len(columns)}")
    spec = InputSpec.from_dict(manifest["input_spec"])
    segments = load_segmentation(root / SEGMENTATION_FILE, n_segments, spec.image_size)
    return Bundle(
        root=root, manifest=manifest, detectors=detectors, feature_columns=columns,
        column_positions=positions,
        segments=segments, n_segments=n_segments,
        operating_point=OperatingPoint(**manifest["operating_point"]),
        input_spec=spec, brf=brf,
    )
