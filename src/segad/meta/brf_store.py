"""Fitted BRFs kept by what they were fitted on, so a rerun refits only what changed.

A BRF is a pure function of its training rows (column names, values, labels), its XGBoost
settings, its seed, this module's `FORMAT_VERSION` and the installed xgboost: `fit_key` hashes
exactly those. `BRFStore.fit` has the signature of `segad.meta.brf.fit_brf`; it returns the model
stored under that key when there is a valid one and fits (and stores) it otherwise. The same
store serves the brf stage (one model per category, seed and method) and the bundle's
out-of-fold models, so a warm ``segad`` rerun with nothing changed fits no BRF at all.

On disk (``data/06_models/brf_store``): ``<key[:2]>/<key>.json`` (XGBoost's JSON) and
``<key>.meta.json`` (the model file's SHA-256, written last; a model without it, or whose bytes
do not match it, is refitted and the damage logged). Both are written atomically
(`segad.storage.files.atomic_path`).

Example:
    >>> import numpy as np, tempfile
    >>> from segad.meta.brf import BRFConfig
    >>> from segad.meta.brf_store import BRFStore
    >>> store = BRFStore(tempfile.mkdtemp())
    >>> X, y = np.arange(40.0).reshape(20, 2), np.r_[np.zeros(14), np.ones(6)]
    >>> config = BRFConfig(n_estimators=2, num_parallel_tree=3, n_jobs=1)
    >>> _ = store.fit(X, y, config, seed=0); _ = store.fit(X, y, config, seed=0)
    >>> store.fitted, store.reused
    (1, 1)
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from segad.meta.brf import DEFAULT_BRF, BRFConfig, fit_brf
from segad.storage.files import atomic_path, file_sha256

log = logging.getLogger(__name__)

#: Bump when segad changes how a BRF is fitted from the same rows (part of every key).
FORMAT_VERSION = 1


def fit_key(features: Any, labels: Any, config: BRFConfig = DEFAULT_BRF, seed: int = 0) -> str:
    """32-hex SHA-256 of everything a BRF depends on: the training rows (column names when
    `features` is a DataFrame, float64 values with one NaN pattern, labels), the settings, the
    seed, `FORMAT_VERSION` and the installed xgboost version."""
    names = [str(c) for c in features.columns] if hasattr(features, "columns") else None
    values = np.ascontiguousarray(np.asarray(features, dtype=np.float64))
    values = np.where(np.isnan(values), np.nan, values)  # one NaN bit pattern
    digest = hashlib.sha256()
    header = {
        "format": FORMAT_VERSION,
        "xgboost": _xgboost_version(),
        "config": asdict(config),
        "seed": int(seed),
        "columns": names,
        "shape": list(values.shape),
    }
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    digest.update(values.tobytes())
    digest.update(np.ascontiguousarray(np.asarray(labels).astype(np.int64)).tobytes())
    return digest.hexdigest()[:32]


def _xgboost_version() -> str:
    import xgboost

    return str(xgboost.__version__)  # the module's own: installed as xgboost or xgboost-cpu


class BRFStore:
    """A folder of fitted BRFs keyed by `fit_key`; counts what it fitted and reused.

    Args:
        root: the folder (created on the first write).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.fitted = 0
        self.reused = 0

    def __repr__(self) -> str:
        return f"BRFStore(root={str(self.root)!r})"

    def paths(self, key: str) -> tuple[Path, Path]:
        """(model file, its ``.meta.json``) of a key."""
        if len(key) != 32 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"invalid BRF key {key!r}: expected 32 lowercase hex digits")
        folder = self.root / key[:2]
        return folder / f"{key}.json", folder / f"{key}.meta.json"

    def load(self, key: str):
        """The stored model of `key`, or None when absent or damaged (damage is logged)."""
        model_path, meta_path = self.paths(key)
        if not model_path.is_file() or not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("key") != key or meta.get("sha256") != file_sha256(model_path):
                raise ValueError("checksum or key mismatch (damaged or foreign file)")
            from xgboost import XGBClassifier

            model = XGBClassifier()
            model.load_model(str(model_path))
        except Exception as error:  # noqa: BLE001 - any damage means: refit
            log.warning("refitting damaged stored BRF %s: %s", model_path, error)
            return None
        return model

    def save(self, key: str, model, context: str = "") -> None:
        """Store `model` under `key`: the model file, then its meta file (the commit marker)."""
        model_path, meta_path = self.paths(key)
        with atomic_path(model_path, keep_suffix=True) as temp:
            model.save_model(str(temp))
        meta = {"key": key, "sha256": file_sha256(model_path), "format": FORMAT_VERSION, "context": context}
        with atomic_path(meta_path) as temp:
            temp.write_text(json.dumps(meta, indent=2))

    def fit(self, features, labels, config: BRFConfig = DEFAULT_BRF, seed: int = 0, context: str = ""):
        """`segad.meta.brf.fit_brf`, reusing the stored model of the same `fit_key`."""
        key = fit_key(features, labels, config, seed)
        model = self.load(key)
        if model is not None:
            self.reused += 1
            return model
        model = fit_brf(features, labels, config, seed=seed, context=context)
        self.save(key, model, context)
        self.fitted += 1
        return model

    def summary(self) -> str:
        """``"<n> fitted, <m> reused"`` since the store was made."""
        return f"{self.fitted} fitted, {self.reused} reused"
