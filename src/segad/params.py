"""Checking parameter blocks from conf/ against the dataclass that holds them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields


def known_params(config_class: type, params: Mapping | None, section: str) -> dict:
    """`params` as a new dict; ValueError naming `section` and the keys `config_class` lacks.

    Example: known_params(BRFConfig, {"max_depht": 5}, "brf") raises
    "unknown brf parameters ['max_depht']".
    """
    params = dict(params or {})
    unknown = set(params) - {f.name for f in fields(config_class)}
    if unknown:
        raise ValueError(f"unknown {section} parameters {sorted(unknown)}")
    return params
