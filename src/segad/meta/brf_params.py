"""The BRF's parameters: XGBoost settings (`BRFConfig`), named presets and the `brf` params block.

A leaf module (no xgboost import), so that the parameter check reads it without the model code.

Example:
    >>> from segad.meta.brf_params import BRFParams
    >>> BRFParams(preset="paper").settings.monotone
    False
"""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from segad.config import PARAMS
from segad.meta.selection_params import DEFAULT_SELECTION, SelectionParams

__all__ = ["DEFAULT_BRF", "PRESETS", "BRFConfig", "BRFParams"]


Share = Annotated[float, Field(gt=0.0, le=1.0)]


@dataclass(config=PARAMS)
class BRFConfig:
    """XGBClassifier settings of the BRF (paper values by default): the `brf.model` params block.

    Two settings are not XGBoost's own (both off in the paper):
    monotone: a larger q995, mean, map maximum or image score (a detector's, the classifier's) is
        never evidence of a good part (XGBoost ``monotone_constraints`` +1 on those columns;
        skewness and kurtosis stay free).
    global_weight: column-sampling weight of the image-level columns (map maxima, image scores,
        the classifier's logit) against 1 for each segment statistic (XGBoost ``feature_weights``),
        so the strongest single inputs are offered to most trees despite ``colsample_*``.
    """

    n_estimators: Annotated[int, Field(ge=1)] = 10
    num_parallel_tree: Annotated[int, Field(ge=1)] = 200
    max_depth: Annotated[int, Field(ge=0)] = 5
    learning_rate: Annotated[float, Field(gt=0.0)] = 0.3
    objective: str = "binary:logitraw"
    colsample_bynode: Share = 0.6
    colsample_bytree: Share = 0.6
    subsample: Share = 0.6
    reg_alpha: Annotated[float, Field(ge=0.0)] = 1.0
    tree_method: str = "hist"
    n_jobs: int | None = None
    monotone: bool = False
    global_weight: Annotated[float, Field(gt=0.0)] = 1.0


#: The paper's settings (an immutable default argument).
DEFAULT_BRF = BRFConfig()


#: Named BRF settings (``brf.preset``): what each changes from the paper's (`BRFConfig`'s defaults).
#: ``guarded`` (the default, chosen by measurement: docs/journal.md, "Do-no-harm SegAD") keeps the
#: paper's forest and adds the prior that a larger anomaly statistic is never evidence of a good part.
PRESETS: dict[str, dict[str, object]] = {
    "paper": {},
    "guarded": {"monotone": True},
}


@dataclass(config=PARAMS)
class BRFParams:
    """The `brf` params block (conf/base/parameters_brf.yml).

    Attributes:
        preset: named settings (`PRESETS`): ``guarded`` (default) or ``paper`` (the paper's BRF).
        model: XGBClassifier settings (`BRFConfig` fields) on top of the preset, e.g. ``{max_depth: 3}``.
        combinations: SegAD combinations, lists of members (detector names, ``classifier``);
            None = each detector alone + all detectors together (+ classifier when enabled).
        selection: the do-no-harm choice of the shipped method (`segad.meta.selection`).
    """

    preset: Literal["guarded", "paper"] = "guarded"
    model: dict[str, Any] = field(default_factory=dict)
    combinations: list[Annotated[list[str], Field(min_length=1)]] | None = None
    selection: SelectionParams = DEFAULT_SELECTION

    def __post_init__(self) -> None:
        """An unknown or out-of-range `model` setting fails here, named ``model.<setting>``."""
        from pydantic import ValidationError

        try:
            self.settings  # noqa: B018
        except ValidationError as error:
            raise ValidationError.from_exception_data(
                "BRFParams",
                [
                    {"type": e["type"], "loc": ("model", *e["loc"]), "input": e["input"], "ctx": e.get("ctx", {})}
                    for e in error.errors()
                ],
            ) from None

    @property
    def settings(self) -> BRFConfig:
        """The BRF settings: the preset's, then `model` on top."""
        return BRFConfig(**{**PRESETS[self.preset], **self.model})
