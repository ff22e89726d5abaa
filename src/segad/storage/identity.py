"""A dataset's identity: the key of everything a run writes about it.

Two datasets of one layout (two demo folders, two VAD copies) must never share a table, a model
or a report, so nothing is keyed by the layout name. The key is the dataset id:

- ``dataset.name`` when the user gives one: a plain name (letters, digits, ``_`` and ``-``, at
  most 64, starting with a letter or digit), e.g. ``line3_caps``. It must not look like an
  automatic id (``<layout>-<8 hex>``), which could be another folder's;
- otherwise ``<layout>-<8 hex>``: the layout and the first 8 hex digits of the SHA-256 of the
  resolved (absolute, symlinks followed) root folder, and of the layout options when there are
  any (ELPV's ``include_uncertain`` or ``test_share`` change which images and labels are read).
  Every root, the default demo's included, gets its own id; a folder keeps its id across runs,
  and a moved folder gets a new one (give ``dataset.name`` to keep a name across moves).

The id is the ``dataset`` column and partition of every table (image index, features, scores,
metrics), the first part of every BRF model key and by-regime report folder, the MLflow
experiment, and the ``dataset=<id>`` folder of every single-file intermediate in the catalog
(``${dataset_id:}``, docs/reliability.md "Dataset identity").

Example:
    >>> dataset_id("demo", "/data/a") != dataset_id("demo", "/data/b")
    True
    >>> dataset_id("demo", "/data/a")[:5], len(dataset_id("demo", "/data/a"))
    ('demo-', 13)
    >>> dataset_id("vad", "/data/a", name="line3_caps")
    'line3_caps'
    >>> check_dataset_name("../elsewhere")
    Traceback (most recent call last):
    ...
    ValueError: dataset.name '../elsewhere' is not a plain name: use letters, digits, '_' and '-' (at most 64, starting with a letter or digit)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: A dataset id (a user's name or an automatic id): safe as a folder name, a hive partition value
#: and an MLflow experiment part.
DATASET_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_NAME = re.compile(DATASET_ID_PATTERN)
#: Automatic ids; a user's name may not take this shape.
_AUTOMATIC = re.compile(r"^[a-z]+-[0-9a-f]{8}$")
#: Hex digits of the root's hash in an automatic id.
HASH_LENGTH = 8


def check_dataset_name(name: str) -> str:
    """`name` when it is a plain dataset name, else ValueError saying what a name may hold."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"dataset.name {name!r} is not a plain name: use letters, digits, '_' and '-' "
            "(at most 64, starting with a letter or digit)"
        )
    if _AUTOMATIC.match(name):
        raise ValueError(
            f"dataset.name {name!r} has the shape of an automatic dataset id (<layout>-<8 hex>), which "
            "names another dataset folder; choose another name"
        )
    return name


def resolved_root(root: str | Path | None) -> str:
    """The root as an absolute path with symlinks followed ('' for no root: a packaged dataset)."""
    return "" if root is None else str(Path(root).expanduser().resolve())


def dataset_id_of(dataset: Mapping[str, Any]) -> str:
    """The dataset id of a plain ``dataset`` parameter block (layout, root, name, options)."""
    return dataset_id(str(dataset["layout"]), dataset.get("root"), dataset.get("name"), dataset.get("options"))


def dataset_id(
    layout: str, root: str | Path | None, name: str | None = None, options: Mapping[str, Any] | None = None
) -> str:
    """The dataset id: `name` when given (checked), else ``<layout>-<hash of the resolved root (+ options)>``."""
    if name is not None:
        return check_dataset_name(name)
    payload = resolved_root(root)
    if options:
        payload = json.dumps({"root": payload, "options": dict(options)}, sort_keys=True, default=str)
    return f"{layout}-{hashlib.sha256(payload.encode()).hexdigest()[:HASH_LENGTH]}"


#: The meaning of the `dataset` column of the tables (segad.schemas).
DATASET_DESCRIPTION = (
    "the dataset id: `dataset.name`, or `<layout>-<8 hex of the resolved root>` (`segad.storage.identity`); "
    "`segad.ingestion.layouts.build_index` alone writes the layout name"
)
