"""The project's word lists, each defined once: a Literal for the parameter classes and the tuple
derived from it for code and table checks.

Example:
    >>> from segad.vocabulary import LAYOUTS, ROLES
    >>> LAYOUTS[:2], ROLES[-1]
    (('demo', 'vad'), 'unused')
"""

from __future__ import annotations

from typing import Literal, get_args

#: Dataset folder formats (`dataset.layout`; readers in `segad.ingestion.layouts`).
Layout = Literal["demo", "vad", "visa", "sensum", "mvtec", "elpv"]
LAYOUTS: tuple[str, ...] = get_args(Layout)
#: Benchmark regimes (`benchmark`; roles per regime in `segad.ingestion.splits`).
Benchmark = Literal["one_class", "high_shot", "low_shot", "visa_supervised", "kfold"]
BENCHMARKS: tuple[str, ...] = get_args(Benchmark)
#: Divisions of the good training images (`split.good_split`).
GoodSplit = Literal["per_seed", "fixed"]
GOOD_SPLITS: tuple[str, ...] = get_args(GoodSplit)
#: The role of an image in one split seed (the `splits` table).
Role = Literal["detector_train", "brf_train", "test", "unused"]
ROLES: tuple[str, ...] = get_args(Role)
#: The roles whose images get anomaly maps and feature rows.
FEATURE_ROLES: tuple[Role, ...] = ("brf_train", "test")
#: The roles of training images (the detectors' and the BRF's); also where EfficientAD's map
#: quantiles may come from (`quantiles_from`).
TrainingRole = Literal["detector_train", "brf_train"]
TRAINING_ROLES: tuple[str, ...] = get_args(TrainingRole)
#: Kind of synthetic defect (`defects.kinds`) -> the `defect_type` of its rows in `synthetic_index`.
DEFECT_KINDS = {"blur": "synthetic_blur", "rectangle": "synthetic_rectangle"}
#: How a model runs inference on CPU (`segad.storage.backends`): the model itself, or converted.
Backend = Literal["eager", "openvino", "onnxruntime"]
BACKENDS: tuple[str, ...] = get_args(Backend)
#: PatchCore's coreset selector (`segad.detection.coreset`).
Coreset = Literal["anomalib", "fast"]
CORESETS: tuple[str, ...] = get_args(Coreset)
#: Which pixel masks the supervised SuperSimpleNet trains with (`masks`; `segad.detection.supervised`).
MaskPolicy = Literal["auto", "masks", "label_only"]
MASK_POLICIES: tuple[str, ...] = get_args(MaskPolicy)
#: Libraries whose exact installed version is part of a fitted detector's identity (model_key):
#: a new release may fit or score differently, so its maps are not reused.
MAP_LIBRARIES = ("anomalib", "torch", "torchvision", "timm")
#: The candidate segmentations of an `auto_select` category, simplest first (segad.segments.segment_maps).
SEGMENTATION_CANDIDATES = ("single", "auto", "auto_per_image")
#: The evaluation's plot sets (`evaluation.<set>` folders, `evaluation.<set>_files` lists, keys of
#: `evaluation.report.plot_dirs`), which the report stage links in report.md.
PLOT_SETS = ("segments", "roc_curves", "score_histograms", "feature_importance", "overlays")

#: Table value sets (segad.schemas): image labels (0 good, 1 bad), metric subsets, score row statuses
#: (segad.production.batch OK, ERROR) and decisions (segad.production.operating_point ACCEPT, REJECT, ERROR).
LABELS = (0, 1)
SUBSETS = ("all", "seen", "unseen")
STATUSES = ("ok", "error")
DECISIONS = ("accept", "reject", "error")
