"""The supervised classifier g(I) in a production bundle: the model(s) behind ``classifier__score``.

A bundle whose combination includes the classifier (``classifier+<detectors>+segad``) carries the
model(s) that scored the bundled seed's test rows in training (`segad.meta.classifier_models`),
copied unchanged into ``classifier/model_<k>/``: one model (``cross_fit_folds: 0``) or the K
cross-fitted ones. A new image's ``classifier__score`` is computed as those test rows' was: the
model's logit, or the mean of the K logits, rounded to float32 (`combined_logits`). The manifest's
``classifier`` block records the count, the protocol, the settings and the image size; loading
checks each folder's checksum and that it is a classifier at the bundle's image size.

Example:
    >>> from segad.production.bundle_classifier import CLASSIFIER_DIR, classifier_folder
    >>> classifier_folder("bundle", 1).as_posix()
    'bundle/classifier/model_1'
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segad.production.errors import BundleError, BundleIntegrityError, BundleSchemaError
from segad.storage.images import ImageSize, SizeLike

CLASSIFIER_DIR = "classifier"


def classifier_folder(root: str | Path, k: int) -> Path:
    """Folder of model `k` inside a bundle."""
    return Path(root) / CLASSIFIER_DIR / f"model_{k}"


def copy_classifiers(sources: Sequence[str | Path], staging: Path, size: SizeLike) -> dict[str, Any]:
    """Copy the kept model folders into the bundle folder `staging`; return the manifest block.

    Each copy is verified against the checksum its folder records (BundleIntegrityError).
    BundleSchemaError when a folder is not a kept classifier, is at another image size than
    `size`, or the folders are not the complete set of one seed (fold k in place k)."""
    from segad.storage.persistence import DetectorLoadError, copy_model_folder

    metas = []
    for k, source in enumerate(Path(s) for s in sources):
        try:
            meta = json.loads((source / "detector.json").read_text())
        except (OSError, ValueError) as error:
            raise BundleError(f"{source}: not a kept classifier model ({error})") from error
        if meta.get("detector") != "classifier" or meta.get("fold") != k or meta.get("n_models") != len(sources):
            raise BundleSchemaError(
                f"{source}: holds {meta.get('detector')!r} fold {meta.get('fold')} of {meta.get('n_models')}, "
                f"expected classifier fold {k} of {len(sources)}"
            )
        if ImageSize.parse(meta["image_size"]) != ImageSize.parse(size):
            raise BundleSchemaError(f"{source}: classifier at {meta['image_size']} px, the bundle at {size}")
        try:
            copy_model_folder(source, classifier_folder(staging, k))
        except DetectorLoadError as error:
            raise BundleIntegrityError(
                f"{error}: not bundled; rerun `kedro run --pipelines segad`, which trains a damaged classifier again"
            ) from error
        metas.append(meta)
    folds = int(metas[0]["cross_fit_folds"])
    return {
        "models": len(metas),
        "cross_fit_folds": folds,
        "score": (
            "mean of the cross-fitted models' logits, rounded to float32"
            if folds
            else "the model's logit, rounded to float32"
        ),
        "image_size": ImageSize.parse(size).to_json(),
        "config": metas[0]["config"],
    }


def check_classifiers(root: Path, block: Mapping[str, Any] | None) -> int:
    """Number of bundled classifier models (0 without a ``classifier`` block); BundleSchemaError
    when the block and the folders disagree."""
    if not block:
        return 0
    count = int(block.get("models", 0))
    present = [classifier_folder(root, k) for k in range(count)]
    if count < 1 or not all((p / "detector.json").is_file() for p in present):
        raise BundleSchemaError(f"{root}: the manifest lists {count} classifier models, the folders do not match")
    return count


def load_classifiers(root: Path, count: int, size: SizeLike, device: str = "cpu") -> list:
    """The bundled classifier models in eval mode (fold order); BundleSchemaError for one at another size."""
    from segad.meta.classifier_models import load_classifier
    from segad.storage.persistence import DetectorLoadError

    models = []
    for k in range(count):
        try:
            model, _, model_size = load_classifier(classifier_folder(root, k), device)
        except DetectorLoadError as error:
            raise BundleSchemaError(str(error)) from error
        if model_size != ImageSize.parse(size):
            raise BundleSchemaError(f"{classifier_folder(root, k)}: classifier at {model_size}, the bundle at {size}")
        models.append(model)
    return models
