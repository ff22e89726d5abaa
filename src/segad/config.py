"""Typed parameter blocks: the run configuration and the options of the evaluation stage.

Every block of conf/<env>/parameters*.yml that a node reads as ``params:<block>`` is a frozen
pydantic dataclass built with `PARAMS` (``extra="forbid"``): a key that the class lacks fails
naming the key, and a value of the wrong type fails naming its field. The Kedro project builds
them before any node runs (a node input type-hinted with such a class is converted by Kedro;
`RunConfig` is built by `segad.hooks.RunConfigHooks`); the library itself takes the instances.

Example (runs as is)::

    >>> from segad.config import ParameterError, RunConfig
    >>> run = RunConfig.from_parameters({"dataset": {"layout": "demo", "root": "data/01_raw/demo"},
    ...                                  "benchmark": "high_shot", "seeds": [0, 1], "image_size": 256,
    ...                                  "device": "cpu", "detectors": ["patchcore"],
    ...                                  "anomaly_maps": {"patchcore": {}}})
    >>> run.detectors, run.dataset.layout
    (['patchcore'], 'demo')
    >>> try:
    ...     RunConfig.from_parameters({**run.as_parameters(), "image_sise": 128})
    ... except ParameterError as error:
    ...     print(str(error).split(";")[0])
    unknown top-level parameter(s) ['image_sise']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator
from pydantic.dataclasses import dataclass

from segad.storage.identity import check_dataset_name, dataset_id
from segad.storage.images import ImageSize, ImageSizeError, check_image_size_setting
from segad.versions import jsonable
from segad.vocabulary import Backend, Benchmark, GoodSplit, Layout

#: The configuration of every parameter class: unknown keys fail, instances are immutable.
PARAMS = ConfigDict(extra="forbid", frozen=True)

Device = Literal["auto", "cpu", "cuda"]

#: Top-level parameter blocks of the stages (each checked by the class of the node that reads it).
STAGE_BLOCKS = (
    "anomaly_maps",
    "brf",
    "bundle",
    "classifier",
    "defects",
    "demo",
    "evaluation",
    "features",
    "lock",
    "score",
    "segmentation",
    "split",
)


#: Detectors whose anomalib model needs each side of ``image_size`` to be a multiple of this
#: (pixels): FastFlow's layer norms and Reverse Distillation's decoder are built for the feature
#: map sizes of their ResNet stages, and a forward pass fails at other sizes (docs/anomaly_maps.md,
#: "Image size"). ``image_size: auto`` gives multiples of 32.
SIDE_MULTIPLE = {"fastflow": 16, "reverse_distillation": 32}
#: Detectors whose maps need each side of ``image_size`` to be at least this (pixels). PatchCore
#: and PaDiM smooth their anomaly map with a Gaussian of sigma 4 (a 33-pixel kernel, reflection
#: padding 16), which fails on a side of 16 or less after the model is fitted and saved (measured:
#: 16 fails, 17 works, for either); EfficientAD's autoencoder needs 256.
MIN_SIDE = {"patchcore": 17, "padim": 17, "efficient_ad": 256}


class ParameterError(ValueError):
    """The run's parameters do not form a valid run configuration; the message names the keys."""


@dataclass(config=PARAMS)
class DatasetConfig:
    """The `dataset` block (conf/base/parameters.yml): which images, in which layout."""

    layout: Layout = "demo"
    root: str | None = None
    category: str | list[str] | None = None
    on_bad_image: Literal["fail", "skip"] = "fail"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the dataset id when given (a plain name); None: ``<layout>-<hash of the resolved root>``
    name: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        return None if value is None else check_dataset_name(value)

    @property
    def id(self) -> str:
        """The dataset id (`segad.storage.identity`): the key of every table, model and report of
        this dataset, never shared with another root."""
        return dataset_id(self.layout, self.root, self.name, self.options)


@dataclass(config=PARAMS)
class RunConfig:
    """What one run is: the dataset, the regime and its seeds, the detectors, map size and device.

    These are the top-level keys of conf/base/parameters.yml. ``detectors`` is structural: the
    pipeline registry makes one namespaced anomaly_maps pipeline per name, so every name needs
    its ``anomaly_maps.<name>`` block. ``image_size`` is an int N (N x N pixels), ``[height,
    width]`` or ``auto`` (resolved from the image index by `segad.storage.images.resolve_image_size`).
    """

    dataset: DatasetConfig
    benchmark: Benchmark
    seeds: Annotated[list[int], Field(min_length=1)]
    detectors: Annotated[list[str], Field(min_length=1)]
    image_size: int | list[int] | str
    device: Device = "auto"

    @field_validator("image_size", mode="before")
    @classmethod
    def _check_image_size(cls, value: Any) -> int | list[int] | str:
        try:
            return check_image_size_setting(value)
        except ImageSizeError as error:  # pydantic names the field already
            raise ValueError(str(error).removeprefix("image_size: ")) from None

    def __post_init__(self) -> None:
        for name, values in (("seeds", self.seeds), ("detectors", self.detectors)):
            if len(set(values)) != len(values):
                raise ValueError(f"{name} must not repeat a value, got {values}")

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> RunConfig:
        """The run configuration of a whole parameter tree (the session's ``parameters``).

        Raises `ParameterError` naming every unknown top-level key, every invalid run key and
        every detector without its ``anomaly_maps.<name>`` block.
        """
        run_keys = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(parameters) - set(run_keys) - set(STAGE_BLOCKS))
        if unknown:
            raise ParameterError(
                f"unknown top-level parameter(s) {unknown}; the known ones are {sorted([*run_keys, *STAGE_BLOCKS])}"
            )
        try:
            run = cls(**{key: parameters[key] for key in run_keys if key in parameters})
        except ValidationError as error:
            raise ParameterError(describe(error, "")) from error
        blocks = parameters.get("anomaly_maps") or {}
        missing = [name for name in run.detectors if name not in blocks]
        if missing:
            raise ParameterError(
                f"detectors {missing} have no anomaly_maps.<name> block; configured detectors: {sorted(blocks)}"
            )
        if not isinstance(run.image_size, str):  # auto: multiples of 32 by construction
            size = ImageSize.parse(run.image_size)
            for name in run.detectors:
                least = MIN_SIDE.get(name, 1)
                if min(size.hw) < least:
                    raise ParameterError(
                        f"image_size: {name} needs each side at least {least} pixels, got {size} "
                        f"(height x width); use e.g. {max(32, least)} or auto"
                    )
                step = SIDE_MULTIPLE.get(name, 1)
                if size.height % step or size.width % step:
                    near = [max(step, step * round(side / step)) for side in size.hw]
                    raise ParameterError(
                        f"image_size: {name} needs each side a multiple of {step} pixels, got {size} "
                        f"(height x width); use e.g. {near} or auto"
                    )
        return run

    def as_parameters(self) -> dict[str, Any]:
        """The run keys as plain parameters (the inverse of `from_parameters` for these keys)."""
        return jsonable(self)


@dataclass(config=PARAMS)
class LockOptions:
    """The `lock` block (conf/base/parameters.yml): what a run does when another run holds the data
    folder (`segad.storage.run_lock`). ``wait`` for it to end (at most ``timeout_s`` seconds; None: no
    limit), or ``fail`` at once naming the holder."""

    mode: Literal["wait", "fail"] = "wait"
    timeout_s: Annotated[float, Field(ge=0)] | None = None


@dataclass(config=PARAMS)
class SplitOptions:
    """The `split` block (conf/base/parameters_split.yml): the knobs of the benchmark regimes, each
    defined only here (type, default, range). The regimes and roles are in `segad.ingestion.splits`,
    whose `SplitConfig` holds these options with the run's benchmark and seeds and checks their
    combinations; ``use_low_shot_json`` and ``sensum_splits`` are read by the split node."""

    #: fraction of each category's good training images that fit the detectors (the rest: brf_train)
    detector_share: Annotated[float, Field(gt=0, lt=1)] = 0.5
    #: per_seed: a new detector_train/brf_train division per split seed; fixed: one for every seed
    good_split: GoodSplit = "per_seed"
    #: seed of the one division of ``good_split: fixed``
    good_split_seed: int = 0
    #: low_shot: bad training images per category and seed (without low_shot_train.json draws)
    low_shot_n: Annotated[int, Field(ge=1)] = 100
    #: low_shot on VAD/demo: use the dataset's low_shot_train.json draws when present
    use_low_shot_json: bool = True
    #: visa_supervised: test bad images moved to brf_train per category and seed
    visa_moved_bad: Annotated[int, Field(ge=1)] = 10
    #: kfold: number of folds (drawn when no official fold files)
    n_folds: Annotated[int, Field(ge=2)] = 3
    #: kfold: seed of the stratified fold draw
    kfold_seed: int = 0
    #: kfold on SensumSODF: folder of the official fold files (None: <dataset.root>/sensum_splits)
    sensum_splits: str | None = None


@dataclass(config=PARAMS)
class ScoreOptions:
    """The `score` block (conf/base/parameters_score.yml): production scoring of a folder of images.

    ``bundle`` (``--params score.bundle=<folder>``) is read by the catalog entry of the bundle,
    not by the node; it is accepted here so that the override passes the check.
    """

    input: str | None = None
    batch_size: Annotated[int, Field(gt=0)] = 16
    explain: Literal["rejected", "all", "none"] = "rejected"
    overlays: bool = True
    progress: bool = True
    bundle: str | None = None
    #: CPU inference backend of every bundled detector (`segad.storage.backends`)
    backend: Backend = "openvino"


@dataclass(config=PARAMS)
class PlotOptions:
    """The `evaluation.plots` block (conf/base/parameters_evaluation.yml)."""

    split_seed: int | None = None
    histogram_bins: Annotated[int, Field(gt=0)] = 30
    overlay_method: str | None = None
    n_worst: Annotated[int, Field(ge=0)] = 3
    importance_type: Literal["weight", "gain", "cover", "total_gain", "total_cover"] = "total_gain"


@dataclass(config=PARAMS)
class ReportOptions:
    """The `evaluation.report` block: the report title and, per plot dataset, its folder and heading."""

    #: folder of each plot dataset relative to report.md (catalog_evaluation.yml writes them there)
    plot_dirs: dict[str, str] = dataclasses.field(
        default_factory=lambda: {
            "segments": "plots/segments",
            "roc_curves": "plots/roc",
            "score_histograms": "plots/histograms",
            "feature_importance": "plots/importance",
            "overlays": "plots/overlays",
        }
    )
    title: str = "SegAD evaluation report"
    plot_titles: dict[str, str] = dataclasses.field(
        default_factory=lambda: {
            "segments": "Segments of each category (the out-of-fold choice where the segmentation is automatic)",
            "roc_curves": "ROC curves (one line per split seed)",
            "score_histograms": "Score histograms of good, seen-bad and unseen-bad test images",
            "feature_importance": "BRF feature importance by segment and statistic",
            "overlays": "Worst false negatives and false positives (image + segments, raw anomaly maps)",
        }
    )


def describe(error: ValidationError, section: str) -> str:
    """One line per pydantic error: ``<section>.<field>: <message> (got <value>)``."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in (section, *item["loc"]) if part != "")
        value = "" if item["type"] == "missing" else f" (got {item['input']!r})"
        lines.append(f"{where or section or 'parameters'}: {item['msg']}{value}")
    return "; ".join(lines)
