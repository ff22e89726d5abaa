"""Classifier protocols: the paper's (one model) and cross-fitted out-of-fold scores for the BRF's rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import segad.meta.classifier_protocol as protocol
from segad.meta.classifier import ClassifierConfig, empty_scores
from segad.meta.classifier_protocol import classifier_scores, stratified_share, usable_folds
from tests.meta.conftest import tiny_config
from tests.meta.test_classifier import _images


def test_stratified_share_is_seeded_and_keeps_the_label_mix():
    labels = np.r_[np.zeros(10, int), np.ones(5, int)]
    chosen = stratified_share(labels, 0.8, seed=0)
    assert (labels[chosen] == 0).sum() == 8 and (labels[chosen] == 1).sum() == 4
    np.testing.assert_array_equal(chosen, stratified_share(labels, 0.8, seed=0))


def test_scores_for_each_seed_after_a_few_steps(tmp_path, backbones):
    index = _images(tmp_path)
    splits = pd.DataFrame(
        {
            "image_id": index.image_id.tolist() * 2,
            "split_seed": [0] * 8 + [1] * 8,
            "role": (["brf_train"] * 4 + ["test"] * 4) * 2,
        }
    )
    config = tiny_config(backbones, max_steps=2, learning_rate=1e-3, mode="full")
    scores = classifier_scores(index, splits, None, config, image_size=32)
    assert list(scores.columns) == list(empty_scores().columns)
    assert len(scores) == 16 and set(scores.split_seed) == {0, 1}  # brf_train + test rows of each seed
    assert np.isfinite(scores.score).all() and scores.score.std() > 0


def test_one_class_pool_takes_the_synthetic_defects_as_its_bad_class(tmp_path, backbones):
    index = _images(tmp_path)
    goods = index[index.label == 0]
    splits = pd.DataFrame(
        {"image_id": goods.image_id, "split_seed": 0, "role": ["brf_train", "brf_train", "test", "test"]}
    )
    bads = index[index.label == 1]
    synthetic = pd.DataFrame({"image_id": "syn_" + bads.image_id, "split_seed": 0, "path": bads.path})
    config = tiny_config(backbones, max_steps=2)

    scores = classifier_scores(goods, splits, synthetic, config, image_size=32)

    assert sorted(scores.image_id) == sorted([*goods.image_id, *synthetic.image_id])
    with pytest.raises(ValueError, match="classifier.enabled=false"):
        classifier_scores(goods, splits, None, config, image_size=32)


class _Recorder:
    """Stands in for fit_classifier / predict_scores: each model is the set of paths it trained on."""

    def __init__(self):
        self.fits: list[frozenset[str]] = []
        self.scored_by: dict[str, list[int]] = {}

    def fit(self, paths, labels, config, image_size, seed, device="cpu", cache=None):
        self.fits.append(frozenset(paths))
        return len(self.fits) - 1

    def predict(self, model, paths, image_size, batch_size=32, device="cpu", cache=None):
        for p in paths:
            self.scored_by.setdefault(p, []).append(model)
        return np.full(len(paths), float(model))


def _split(index: pd.DataFrame) -> pd.DataFrame:
    roles = ["detector_train"] * 4 + ["brf_train"] * 8 + ["test"] * 4
    return pd.DataFrame({"image_id": index.image_id, "split_seed": 0, "role": roles})


@pytest.mark.parametrize("folds", [0, 2, 4])
def test_which_model_scores_each_row(tmp_path, monkeypatch, folds):
    index = _images(tmp_path, n=16)
    splits = _split(index)
    recorder = _Recorder()
    monkeypatch.setattr(protocol, "fit_classifier", recorder.fit)
    monkeypatch.setattr(protocol, "predict_scores", recorder.predict)

    scores = classifier_scores(
        index,
        splits,
        None,
        ClassifierConfig(cross_fit_folds=folds, enabled=False, mode="full", backend="eager"),
        image_size=32,
    )

    path = index.set_index("image_id").path
    role = splits.set_index("image_id").role
    assert sorted(scores.image_id) == sorted(splits.image_id[splits.role != "detector_train"])
    assert len(recorder.fits) == max(folds, 1)
    brf_paths = [path[i] for i in role.index[role == "brf_train"]]
    test_paths = [path[i] for i in role.index[role == "test"]]
    if folds == 0:  # the paper's protocol: one model on 80 % of the pool, brf_train rows among them
        assert any(p in recorder.fits[0] for p in brf_paths)
        return
    for p in brf_paths:  # out of fold: scored once, by a model that never saw the image
        (model,) = recorder.scored_by[p]
        assert p not in recorder.fits[model]
    for fit in recorder.fits:  # detector_train images train every fold's model; test images none
        assert {path[i] for i in role.index[role == "detector_train"]} <= fit
        assert not fit & set(test_paths)
    test_scores = scores.set_index("image_id").score[role.index[role == "test"]]
    np.testing.assert_allclose(test_scores, np.mean(range(folds)))  # mean of the K models' logits


@pytest.mark.parametrize(("n_bad", "used"), [(0, 0), (1, 0), (2, 2), (3, 3), (9, 3)])
def test_folds_never_leave_a_fold_model_without_a_bad_image(n_bad, used):
    assert usable_folds(3, n_bad, seed=0) == used
    assert usable_folds(0, n_bad, seed=0) == 0


def test_one_bad_brf_image_falls_back_to_the_papers_protocol(tmp_path, monkeypatch):
    index = _images(tmp_path, n=16)
    index["label"] = 0
    index.loc[index.index[5], "label"] = 1  # the only bad image, a brf_train row
    recorder = _Recorder()
    monkeypatch.setattr(protocol, "fit_classifier", recorder.fit)
    monkeypatch.setattr(protocol, "predict_scores", recorder.predict)
    scores = classifier_scores(
        index,
        _split(index),
        None,
        ClassifierConfig(cross_fit_folds=3, enabled=False, mode="full", backend="eager"),
        image_size=32,
    )
    assert len(recorder.fits) == 1 and len(scores) == 12


def test_cross_fitted_scores_with_a_real_frozen_model(tmp_path, backbones):
    index = _images(tmp_path, n=16)
    config = tiny_config(backbones, max_steps=2, cross_fit_folds=2)
    scores = classifier_scores(index, _split(index), None, config, image_size=32)
    assert list(scores.columns) == list(empty_scores().columns)
    assert len(scores) == 12 and np.isfinite(scores.score).all()


def test_stored_scores_are_reused_until_an_input_changes(tmp_path, monkeypatch):
    from segad.storage.map_store import MapStore

    index = _images(tmp_path, n=16)
    splits = _split(index)
    recorder = _Recorder()
    monkeypatch.setattr(protocol, "fit_classifier", recorder.fit)
    monkeypatch.setattr(protocol, "predict_scores", lambda model, paths, *a, **k: np.linspace(0.1, 0.9, len(paths)))
    store = MapStore(tmp_path / "store")
    config = ClassifierConfig(cross_fit_folds=2, enabled=False, mode="full", backend="eager")

    first = classifier_scores(index, splits, None, config, image_size=32, store=store)
    assert len(recorder.fits) == 2
    second = classifier_scores(index, splits, None, config, image_size=32, store=store)
    assert len(recorder.fits) == 2  # nothing trained again
    pd.testing.assert_frame_equal(first, second)
    assert first.score.dtype == np.float64 and np.allclose(first.score, first.score.astype(np.float32))

    classifier_scores(
        index,
        splits,
        None,
        ClassifierConfig(cross_fit_folds=3, enabled=False, mode="full", backend="eager"),
        image_size=32,
        store=store,
    )
    assert len(recorder.fits) == 5  # another setting: trained again
    Path(index.path.iloc[5]).write_bytes(Path(index.path.iloc[6]).read_bytes())  # a file's content changed
    classifier_scores(index, splits, None, config, image_size=32, store=store)
    assert len(recorder.fits) == 7


def test_with_two_defect_types_a_bad_row_is_scored_by_a_model_that_never_saw_its_type(tmp_path, monkeypatch):
    index = _images(tmp_path, n=16)
    splits = _split(index)
    brf_bad = index.path[(splits.role == "brf_train") & (index.label == 1)].tolist()
    index["defect_type"] = np.where(index.label == 1, "scratch", "good")
    index.loc[index.path.isin(brf_bad[:2]), "defect_type"] = "pit"  # two of the four brf_train bad images
    recorder = _Recorder()
    monkeypatch.setattr(protocol, "fit_classifier", recorder.fit)
    monkeypatch.setattr(protocol, "predict_scores", recorder.predict)
    config = ClassifierConfig(cross_fit_folds=3, enabled=False, mode="full", backend="eager")
    classifier_scores(index, splits, None, config, image_size=32)

    assert len(recorder.fits) == 2  # k lowered to the number of types
    type_of = index.set_index("path").defect_type
    for path in brf_bad:
        (model,) = recorder.scored_by[path]
        seen = {type_of[p] for p in recorder.fits[model] if p in brf_bad}
        assert seen and type_of[path] not in seen
