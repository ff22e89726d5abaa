"""Kedro dataset for one XGBoost model as XGBoost's own JSON or UBJSON file (never pickle).

The format follows the file suffix (``.json`` or ``.ubj``). Saving writes a temporary file in the
target folder and then ``os.replace``s it, so a crash never leaves half a model; the model's
SHA-256 goes into a sidecar ``<file>.sha256`` (written first), and loading verifies it, so a
damaged or unrecorded model is refused, naming the file, before it is used. Loading returns
an ``xgboost.XGBClassifier`` (the BRF's class); feature names given at fit time travel inside the
file (``model.get_booster().feature_names``).

Use it alone, or under ``partitions.PartitionedDataset`` for one model per dataset, benchmark,
category, method and split seed (``<dataset>/<benchmark>/<category>/<method>/split_seed_<s>.json``,
conf/base/catalog_brf.yml)::

    brf_models:
      type: partitions.PartitionedDataset
      path: data/06_models/brf
      dataset: segad.datasets.xgboost_model_dataset.XGBoostModelDataset
      filename_suffix: .json

Example:
    >>> from segad.datasets.xgboost_model_dataset import XGBoostModelDataset
    >>> ds = XGBoostModelDataset(filepath="/tmp/brf.json")   # doctest: +SKIP
    >>> ds.save(model); ds.load().predict(X, output_margin=True)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from segad.storage.files import atomic_path, file_sha256

FORMATS = (".json", ".ubj")


def checksum_path(model_file: Path) -> Path:
    """The sidecar ``<file>.sha256`` holding a saved model's SHA-256 (hex, one line)."""
    return model_file.with_name(model_file.name + ".sha256")


class XGBoostModelDataset(AbstractDataset):
    """An `xgboost.XGBClassifier` stored at `filepath` (suffix .json or .ubj)."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        # PartitionedDataset builds one instance with an empty path to inspect it: check on use
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _check_suffix(self) -> None:
        suffix = PurePosixPath(str(self._filepath)).suffix.lower()
        if suffix not in FORMATS:
            raise DatasetError(f"{self._filepath}: XGBoost model files must end in .json or .ubj, not {suffix!r}")

    def load(self):
        from xgboost import XGBClassifier

        self._check_suffix()
        if not self._filepath.is_file():
            raise DatasetError(f"{self._filepath}: no such XGBoost model file")
        recorded = checksum_path(self._filepath)
        if not recorded.is_file():
            raise DatasetError(
                f"{self._filepath}: no recorded checksum ({recorded.name}); run the brf pipeline again to refit it"
            )
        if recorded.read_text().strip() != file_sha256(self._filepath):
            raise DatasetError(
                f"{self._filepath}: checksum mismatch (damaged file); run the brf pipeline again to refit it"
            )
        model = XGBClassifier()
        try:
            model.load_model(str(self._filepath))
        except Exception as error:  # noqa: BLE001 - xgboost raises XGBoostError for damaged files
            raise DatasetError(f"{self._filepath}: unreadable XGBoost model ({error})") from error
        return model

    def save(self, data) -> None:
        self._check_suffix()
        if not hasattr(data, "save_model"):
            raise DatasetError(f"{self._filepath}: expected an XGBoost model, got {type(data).__name__}")
        with atomic_path(self._filepath, keep_suffix=True) as temp:
            data.save_model(str(temp))  # xgboost picks JSON / UBJ from the suffix
            # the checksum first: a crash between the two leaves a mismatch (refused), never an unchecked model
            with atomic_path(checksum_path(self._filepath), sweep=False) as sidecar:
                sidecar.write_text(file_sha256(temp) + "\n")

    def _exists(self) -> bool:
        return self._filepath.is_file()
