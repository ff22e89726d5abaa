"""The ``brf.selection`` parameters of the do-no-harm selection (`segad.meta.selection`).

A leaf module, so that `segad.meta.brf_params.BRFParams` holds them without importing the selection.

Example:
    >>> from segad.meta.selection_params import SelectionParams
    >>> SelectionParams(folds=3).operating_weight
    0.5
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic.dataclasses import dataclass

from segad.config import PARAMS


@dataclass(config=PARAMS)
class SelectionParams:
    """The ``brf.selection`` params block (conf/base/parameters_brf.yml).

    Attributes:
        enabled: False = no selection: no ``selected`` rows, the bundle ships ``bundle.detectors``
            (default: the full combination).
        folds: k of the stratified k-fold out-of-fold scores (lowered to the bad rows' count).
        miss_rate: the operating point judged: PG at this share of bad parts accepted.
        operating_weight: weight of that PG in the utility (1 - it: AUROC's weight).
        se_multiplier: standard errors a richer candidate's gain must exceed.
        blend: a combination is judged and ships blended with its strongest member
            (`segad.meta.blend`); False = its BRF score alone (the paper's).
    """

    enabled: bool = True
    folds: Annotated[int, Field(ge=2)] = 5
    miss_rate: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.02
    operating_weight: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    se_multiplier: Annotated[float, Field(ge=0.0)] = 1.0
    blend: bool = True


DEFAULT_SELECTION = SelectionParams()
