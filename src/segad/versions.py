"""Installed package versions and plain-JSON values: the records that caches, bundles and the
report keep so that a result can be traced to the code that made it.

Example (runs as is)::

    >>> import platform
    >>> from segad.versions import package_versions
    >>> package_versions(["surely-not-a-package-xyz"])
    {'surely-not-a-package-xyz': 'missing'}
    >>> package_versions(["python"]) == {"python": platform.python_version()}
    True
    >>> jsonable({"size": (4, 4), "n": __import__("numpy").int64(3)})
    {'size': [4, 4], 'n': 3}
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import platform
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

MISSING = "missing"


def package_version(name: str) -> str:
    """Version of distribution or module `name`: distribution metadata first, then the module's
    ``__version__`` (e.g. ``xgboost`` installed as the ``xgboost-cpu`` distribution), else
    'missing'. ``python`` is the interpreter's version."""
    if name == "python":
        return platform.python_version()
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        module = importlib.import_module(name)
    except ImportError:
        return MISSING
    return str(getattr(module, "__version__", MISSING))


def package_versions(names: Iterable[str], optional: Iterable[str] = ()) -> dict[str, str]:
    """{name: version} for `names` in order; names in `optional` are left out when missing."""
    optional = set(optional)
    versions = {name: package_version(name) for name in names}
    return {name: v for name, v in versions.items() if not (v == MISSING and name in optional)}


def jsonable(value: Any) -> Any:
    """`value` as plain JSON/YAML types: parameter classes (dataclasses) and mappings -> dicts with
    str keys, tuples -> lists, numpy scalars and arrays -> Python numbers and lists, paths -> str."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def mismatches(recorded: Mapping[str, str], installed: Mapping[str, str], names: Iterable[str]) -> list[str]:
    """``'name: recorded X, installed Y'`` for each of `names` whose major.minor differs (or is missing).

    >>> mismatches({"torch": "2.14.1"}, {"torch": "2.15.0+cpu"}, ["torch"])
    ['torch: recorded 2.14.1, installed 2.15.0+cpu']
    """

    def major_minor(version: str) -> tuple[str, ...]:
        return tuple(version.split("+")[0].split(".")[:2])

    problems = []
    for name in names:
        want, have = recorded.get(name), installed.get(name)
        if want is None or have is None or major_minor(want) != major_minor(have):
            problems.append(f"{name}: recorded {want}, installed {have}")
    return problems
