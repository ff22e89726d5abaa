"""Model folders: a fitted model saved as ``detector.json`` + ``state_dict.pt``, and image content hashes.

`write_model_folder` writes a model's tensors (``state_dict.pt``, reloaded with
``torch.load(weights_only=True)``) and its metadata plus the state's sha256 (``detector.json``)
atomically; `read_model_folder` reads them back and reports damage (`DetectorLoadError`, naming
the folder). `content_hash` is the cache identity of an image file. What a folder means (which
detector or classifier, its identity) is decided by the package that writes it:
`segad.detection.saved` for detectors, `segad.meta.classifier_models` for the classifier.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from segad.storage.files import check_owned, file_sha256, replace_folder, staging_folder
from segad.storage.images import ImageReadError


def content_hash(path: str | Path) -> str:
    """32-hex SHA-256 of an image file's bytes: the cache identity of an image."""
    if not Path(path).is_file():
        raise ImageReadError(f"{path}: no such image file")
    return file_sha256(path)[:32]


def write_model_folder(model: torch.nn.Module, meta: dict, directory: str | Path, writer: str) -> Path:
    """``state_dict.pt`` of `model` and ``detector.json`` (`meta` + the state's sha256) written
    into a temporary sibling folder, then swapped in for ``directory`` (`segad.storage.files.replace_folder`);
    ``directory`` may only hold a model folder's own files (`segad.storage.files.check_owned`, named by
    `writer`). Nothing is left half-written."""
    directory = Path(directory)
    staging = staging_folder(directory)
    try:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, staging / "state_dict.pt")
        meta = {**meta, "state_sha256": file_sha256(staging / "state_dict.pt")}
        (staging / "detector.json").write_text(json.dumps(meta, indent=2, default=str))
        # a model folder holds these two files only (one may be missing in a damaged folder)
        check_owned(directory, ["detector.json", "state_dict.pt"], writer)
        replace_folder(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


class DetectorLoadError(RuntimeError):
    """A saved detector folder is missing, incomplete or damaged."""


def model_folder_problem(directory: str | Path) -> str | None:
    """What is wrong with a folder `write_model_folder` wrote, or None when its ``state_dict.pt``
    matches the checksum its ``detector.json`` records (the check made before any reuse: a
    saved detector or kept classifier model is verified before a run skips fitting it, and
    before a bundle copies it)."""
    directory = Path(directory)
    meta_path, state_path = directory / "detector.json", directory / "state_dict.pt"
    if not meta_path.is_file() or not state_path.is_file():
        return f"{directory}: not a saved model (needs detector.json and state_dict.pt)"
    try:
        recorded = json.loads(meta_path.read_text())["state_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{meta_path}: unreadable ({type(error).__name__}: {error})"
    if file_sha256(state_path) != recorded:
        return f"{state_path}: checksum mismatch (damaged file)"
    return None


def copy_model_folder(source: str | Path, destination: str | Path) -> None:
    """Copy a folder `write_model_folder` wrote (into a bundle) and verify the copy: its
    ``state_dict.pt`` must match the checksum its ``detector.json`` records, so the source was
    intact and the copy is too. DetectorLoadError naming the source file otherwise."""
    source, destination = Path(source), Path(destination)
    shutil.copytree(source, destination)
    problem = model_folder_problem(destination)
    if problem is not None:
        raise DetectorLoadError(problem.replace(str(destination), str(source)))


def read_model_folder(directory: Path, detector: str | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """(``detector.json`` contents, state dict) of a folder `write_model_folder` wrote, loaded with
    ``weights_only``; `DetectorLoadError` naming the folder when a file is missing, the checksum
    does not match, or (with `detector`) it holds another detector."""
    meta_path, state_path = directory / "detector.json", directory / "state_dict.pt"
    if not meta_path.is_file() or not state_path.is_file():
        raise DetectorLoadError(f"{directory}: not a saved detector (needs detector.json and state_dict.pt)")
    try:
        meta = json.loads(meta_path.read_text())
        if detector is not None and meta.get("detector") != detector:
            raise DetectorLoadError(f"{directory}: not a {detector} model (it holds {meta.get('detector')!r})")
        if file_sha256(state_path) != meta["state_sha256"]:
            raise DetectorLoadError(f"{state_path}: checksum mismatch (damaged file)")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except DetectorLoadError:
        raise
    except Exception as error:  # noqa: BLE001
        raise DetectorLoadError(f"{directory}: damaged saved detector ({error})") from error
    return meta, state
