"""The SegAD bundle: everything production scoring needs, in one versioned folder.

This module defines the format and reads it back; `segad.production.writer` writes it.

Versions: the bundle pipeline writes each bundle as a new folder ``<parent>/<bundle_id>``
(``bundle_id`` = UTC time + random, e.g. ``20261202T123456Z-1a2b3c4d``) and then points
``<parent>/LATEST`` (a text file holding that folder name, replaced atomically) at it. Older
bundles stay. `resolve_bundle` turns a parent folder into its latest bundle and accepts a bundle
folder itself::

    data/06_models/segad_bundle/
        LATEST                        "20261202T123456Z-1a2b3c4d"
        20261201T090000Z-5e6f7a8b/    an older bundle
        20261202T123456Z-1a2b3c4d/    the latest bundle

Layout of one bundle (all paths relative to the bundle folder)::

    manifest.json             format name + version, bundle id, creation time, package versions,
                              configuration, detectors, feature schema, operating point, input
                              spec, segment names, sha256 of every other file
    detectors/<name>/...      each fitted detector, as `segad.storage.persistence` saves it
    segmentation.npy          static segments: int64 (H, W) labels at map resolution (np.save, no pickle)
    segment_clusters.npz      or per-image segments: the shared centres (`segad.production.bundle_segments`)
    classifier/model_<k>/     with g(I) in the combination: its model(s) (`segad.production.bundle_classifier`)
    brf.ubj                   the XGBoost BRF (UBJSON model file)

Format version 4 (saved detectors of format 4, every setting recorded); another version is refused.

Loading (`load_bundle`) refuses, with an error that says what differs:

- another format or a newer format version (`BundleVersionError`);
- per-image segments computed with other packaged backbone weights than the installed ones
  (`BundleVersionError`; only a warning with `allow_version_mismatch`);
- packages whose recorded major.minor differs from the installed one for the libraries that
  define the model files or the numbers (`CHECKED_PACKAGES`), unless `allow_version_mismatch`
  (then it only logs a warning);
- feature columns that this code's `segad.columns.feature_columns` no longer produces for
  the bundled detectors and segments, BRF columns that are not an ordered subset of them, or that
  differ from the BRF's own feature names (`BundleSchemaError`);
- a file whose sha256 differs from the manifest, or a missing file (`BundleIntegrityError`);
- per-image centres or classifier folders that do not fit the manifest (`BundleSchemaError`).

Nothing is unpickled: the BRF loads from UBJSON, the segment map or centres with
``np.load(allow_pickle=False)``, detectors through `segad.storage.persistence` (torch weights with
``weights_only=True``), the manifest is JSON.

Example:
    >>> from segad.production.bundle import package_versions
    >>> {"anomalib", "kedro", "numpy", "torch", "xgboost"} <= set(package_versions())
    True
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from segad import versions
from segad.columns import CLASSIFIER, feature_columns
from segad.meta.blend import Blend
from segad.production.bundle_classifier import check_classifiers, load_classifiers
from segad.production.bundle_segments import SEGMENTATION_FILE as SEGMENTATION_FILE
from segad.production.bundle_segments import BundleSegments, load_segments
from segad.production.errors import BundleError as BundleError
from segad.production.errors import BundleIntegrityError as BundleIntegrityError
from segad.production.errors import BundleSchemaError as BundleSchemaError
from segad.production.errors import BundleVersionError as BundleVersionError
from segad.production.explain import ContributionGroups
from segad.production.inputs import InputSpec
from segad.production.operating_point import OperatingPoint
from segad.storage.files import file_sha256

logger = logging.getLogger(__name__)

FORMAT = "segad-bundle"
FORMAT_VERSION = 4
#: keys every manifest holds (``classifier`` and ``blend`` may be null)
KEYS = tuple(
    "bundle_id packages detectors n_segments segmentation classifier computed_columns feature_columns blend "
    "operating_point input_spec files".split()
)
MANIFEST = "manifest.json"
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
RECORDED_PACKAGES = CHECKED_PACKAGES + ("torchvision", "kedro", "numpy", "numba", "scipy", "pandas", "PIL", "python")


# --------------------------------------------------------------------------------------------
# versions


def package_versions() -> dict[str, str]:
    """Installed versions of `RECORDED_PACKAGES` ('missing' for one that is not installed)."""
    return versions.package_versions(RECORDED_PACKAGES)


# --------------------------------------------------------------------------------------------
# files


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` but the manifest, by path relative to `root`."""
    return {
        p.relative_to(root).as_posix(): file_sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def own_files(folder: Path) -> list[str] | None:
    """Files of the bundle at `folder` per its manifest (+ the manifest), or None if it has none."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return [MANIFEST, *manifest.get("files", {})] if isinstance(manifest, dict) else None


def load_brf(path: Path):
    """The BRF as an `xgboost.XGBClassifier` from a JSON/UBJSON file (never a pickle), on one thread:
    same scores; a 2-thread call on one row took 8.5-16 ms on a busy machine, 0.4 ms on one thread."""
    import xgboost

    if path.suffix not in (".json", ".ubj"):
        raise BundleError(f"{path}: the BRF must be an XGBoost .json or .ubj model file")
    model = xgboost.XGBClassifier()
    try:
        model.load_model(str(path))
    except (xgboost.core.XGBoostError, ValueError, TypeError) as error:
        raise BundleIntegrityError(f"{path}: unreadable XGBoost model ({error})") from error
    return model.set_params(n_jobs=1)


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
            `segad.segments.statistics.feature_matrix` computes (`computed_columns` in the manifest).
        segmentation: how images are segmented (`segad.production.bundle_segments.BundleSegments`:
            one static map, or shared centres applied to each image); n_segments: L.
        operating_point: threshold and expected rates.
        input_spec: what scored images must look like.
        brf: the BRF (`xgboost.XGBClassifier`; scores with `segad.meta.brf.brf_scores`).
        blend: where the bundle's score blends the BRF's with one member's (`segad.meta.blend`),
            that blend (`score` applies it); None: the score is the BRF's raw margin.
        classifier_models: number of classifier models behind ``classifier__score`` (0: none).
    Detectors and classifier models stay on disk until `load_models`.
    """

    root: Path
    manifest: dict
    detectors: list[str]
    feature_columns: list[str]
    column_positions: np.ndarray
    segmentation: BundleSegments
    n_segments: int
    operating_point: OperatingPoint
    input_spec: InputSpec
    brf: Any
    classifier_models: int = 0
    blend: Blend | None = None

    def score(self, features: np.ndarray) -> np.ndarray:
        """Scores float64 (N,) of finite feature rows (N, len(feature_columns)): the BRF's raw margin,
        blended where the bundle has a blend; higher = more anomalous."""
        from segad.meta.brf import brf_scores

        raw = brf_scores(self.brf, features)
        at = self.feature_columns.index(self.blend.column) if self.blend else None
        return raw if self.blend is None else self.blend.score(raw, np.asarray(features)[:, at])

    def detector_dir(self, name: str) -> Path:
        return self.root / DETECTORS_DIR / name

    def load_detectors(self, device: str = "cpu", backbone_cache_dir: str | Path | None = None) -> dict:
        """name -> fitted detector in eval mode, via `segad.detection.saved.load_detector`.

        Raises BundleSchemaError when a saved detector is another model or another image size.
        """
        from segad.detection.saved import load_detector

        models = {}
        for name in self.detectors:
            model, config, image_size = load_detector(self.detector_dir(name), device, backbone_cache_dir)
            if config.name != name or image_size != self.input_spec.image_size:
                raise BundleSchemaError(
                    f"{self.detector_dir(name)}: saved detector is {config.name} at {image_size} px, "
                    f"the manifest expects {name} at {self.input_spec.image_size} px"
                )
            models[name] = model
        return models

    def load_models(self, device: str = "cpu", backbone_cache_dir: str | Path | None = None) -> dict:
        """`load_detectors`, plus ``classifier`` -> the list of classifier models when bundled."""
        models: dict[str, Any] = self.load_detectors(device, backbone_cache_dir)
        if self.classifier_models:
            models[CLASSIFIER] = load_classifiers(self.root, self.classifier_models, self.input_spec.image_size, device)
        return models

    @cached_property
    def contribution_groups(self) -> ContributionGroups:
        """How the BRF's SHAP contributions sum per segment and per owner (`owners`), built once."""
        return ContributionGroups.of(self.feature_columns, self.n_segments, self.owners)

    @property
    def owners(self) -> list[str]:
        """The detectors, then ``classifier`` when bundled: whose columns feed the BRF."""
        return [*self.detectors, *([CLASSIFIER] if self.classifier_models else [])]

    @property
    def segments(self) -> np.ndarray | None:
        """The static int64 (H, W) label map; None when each image is segmented on its own."""
        return self.segmentation.labels

    def segment_labels(self, images: np.ndarray) -> np.ndarray:
        """Labels of float (N, 3, H, W) images in [0, 1] at the bundle's image size: (H, W) shared or (N, H, W)."""
        return self.segmentation.labels_for(images)

    @property
    def bundle_id(self) -> str:
        return str(self.manifest["bundle_id"])

    @property
    def segment_names(self) -> list[str]:
        names = self.manifest.get("segment_names") or {}
        return [str(names.get(str(i), f"seg{i}")) for i in range(self.n_segments)]


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
        kept = list_bundles(path)
        there = f"bundles there: {len(kept)}, the newest {kept[-1]}" if kept else "no bundle is there"
        raise BundleIntegrityError(
            f"{latest}: names the bundle {name!r}, which is missing from {path} ({there}); point "
            "score.bundle at a bundle folder, or run `kedro run --pipelines segad`, which writes a new "
            "bundle and moves LATEST to it"
        )
    return path / name


def list_bundles(parent: str | Path) -> list[str]:
    """Names of the bundle folders under `parent`, oldest first (ids sort by creation time)."""
    parent = Path(parent)
    return (
        sorted(c.name for c in parent.iterdir() if c.is_dir() and (c / MANIFEST).is_file()) if parent.is_dir() else []
    )


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
            + (" (upgrade segad)" if newer else " (retrain the bundle)")
        )
    if missing := [key for key in KEYS if key not in manifest]:
        raise BundleIntegrityError(f"{path}: the manifest lacks {missing}")
    check_names(path, manifest)
    return manifest


#: A plain detector name: what `segad.detection.config.SPECS` and the ``detectors`` parameter use.
PLAIN_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: One part of a bundle file's relative path (no separators, never ``.`` or ``..``).
PLAIN_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def check_names(path: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse a manifest whose names are not plain names of the project's vocabulary, before
    anything they name is read: ``detectors`` must be detector names segad knows (never a path
    such as ``../../elsewhere/padim``), ``files`` relative paths of plain parts inside the bundle.
    BundleIntegrityError naming the manifest and the name."""
    from segad.detection.config import SPECS  # torch is imported here, not for every manifest reader

    detectors = manifest.get("detectors")
    if not isinstance(detectors, list) or not detectors:
        raise BundleIntegrityError(f"{path}: 'detectors' must be a non-empty list of detector names")
    for name in detectors:
        if not isinstance(name, str) or not PLAIN_NAME.match(name) or name not in SPECS:
            raise BundleIntegrityError(
                f"{path}: detector {name!r} is not one of segad's detectors ({', '.join(sorted(SPECS))}); "
                "nothing was read"
            )
    files = manifest.get("files", {})
    if not isinstance(files, Mapping):
        raise BundleIntegrityError(f"{path}: 'files' must map relative file names to sha256")
    for name in files:
        parts = str(name).split("/")
        if not all(PLAIN_PART.match(part) for part in parts):
            raise BundleIntegrityError(
                f"{path}: file {name!r} is not a plain relative name inside the bundle; nothing was read"
            )


def verify_files(root: Path, manifest: Mapping[str, Any]) -> None:
    """Every file listed in the manifest exists with its recorded sha256; no file is extra."""
    recorded = manifest.get("files", {})
    present = file_hashes(root)
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
    mismatches = versions.mismatches(manifest["packages"], package_versions(), CHECKED_PACKAGES)
    if mismatches:
        message = f"{root}: package versions differ from training: " + "; ".join(mismatches)
        if not allow_version_mismatch:
            raise BundleVersionError(
                message + ". Install the recorded versions or retrain; "
                "bundle.allow_version_mismatch=true scores anyway at your own risk"
            )
        logger.warning(message)
    verify_files(root, manifest)
    detectors = [str(d) for d in manifest["detectors"]]
    n_segments = int(manifest["n_segments"])
    columns = [str(c) for c in manifest["feature_columns"]]
    classifiers = check_classifiers(root, manifest.get("classifier"))
    computed = feature_columns(detectors, n_segments, classifier=bool(classifiers))
    recorded = [str(c) for c in manifest["computed_columns"]]
    if recorded != computed:
        raise BundleSchemaError(
            f"{root}: this segad computes other feature columns than the bundle was trained with "
            f"({_first_difference(recorded, computed)}); retrain the bundle"
        )
    try:
        positions = column_positions(columns, computed)
    except BundleSchemaError as error:
        raise BundleSchemaError(f"{root}: feature schema: {error}") from error
    brf = load_brf(root / BRF_FILE)
    booster = brf.get_booster()
    if booster.feature_names is not None and list(booster.feature_names) != columns:
        raise BundleSchemaError(
            f"{root / BRF_FILE}: the BRF was trained on other columns than the manifest lists "
            f"({_first_difference(list(booster.feature_names), columns)})"
        )
    if booster.num_features() != len(columns):
        raise BundleSchemaError(
            f"{root / BRF_FILE}: the BRF expects {booster.num_features()} features, the manifest lists {len(columns)}"
        )
    try:  # the blend of a selected combination, on feature columns only
        blend = Blend.from_dict(manifest["blend"], columns) if manifest["blend"] is not None else None
    except ValueError as error:
        raise BundleSchemaError(f"{root / MANIFEST}: {error}") from error
    spec = InputSpec.from_dict(manifest["input_spec"])
    segmentation = load_segments(root, manifest, spec.image_size, allow_version_mismatch)
    return Bundle(
        root=root,
        manifest=manifest,
        detectors=detectors,
        feature_columns=columns,
        column_positions=positions,
        segmentation=segmentation,
        n_segments=n_segments,
        operating_point=OperatingPoint(**manifest["operating_point"]),
        input_spec=spec,
        brf=brf,
        classifier_models=classifiers,
        blend=blend,
    )
