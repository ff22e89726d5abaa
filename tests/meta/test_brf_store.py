"""The BRF store: keyed by rows, settings and seed; reused models score like fresh ones; damage refits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segad.meta.brf import BRFConfig, brf_scores, fit_brf
from segad.meta.brf_store import BRFStore, fit_key

SMALL = BRFConfig(n_estimators=3, num_parallel_tree=4, n_jobs=1)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(30, int), np.ones(10, int)]
    X = pd.DataFrame(rng.normal(size=(40, 3)) + y[:, None], columns=["a__max", "b__max", "c__max"])
    X.iloc[::7, 1] = np.nan
    return X, y


def test_fit_key_changes_with_everything_a_brf_depends_on():
    X, y = _data()
    key = fit_key(X, y, SMALL, 0)
    assert key == fit_key(X.copy(), y.copy(), SMALL, 0)
    changed = X.copy()
    changed.iloc[3, 0] += 1e-9
    flipped = y.copy()
    flipped[0] = 1
    others = {
        fit_key(changed, y, SMALL, 0),
        fit_key(X, flipped, SMALL, 0),
        fit_key(X, y, SMALL, 1),
        fit_key(X, y, BRFConfig(n_estimators=4, num_parallel_tree=4, n_jobs=1), 0),
        fit_key(X.rename(columns={"a__max": "d__max"}), y, SMALL, 0),
        fit_key(X.to_numpy(), y, SMALL, 0),  # no column names: another model file
    }
    assert key not in others and len(others) == 6


def test_a_reused_model_scores_exactly_like_a_fresh_fit(tmp_path):
    X, y = _data()
    store = BRFStore(tmp_path)
    first = store.fit(X, y, SMALL, seed=2)
    again = BRFStore(tmp_path).fit(X, y, SMALL, seed=2)
    fresh = fit_brf(X, y, SMALL, seed=2)
    assert (store.fitted, store.reused) == (1, 0)
    np.testing.assert_array_equal(brf_scores(again, X), brf_scores(fresh, X))
    np.testing.assert_array_equal(brf_scores(first, X), brf_scores(fresh, X))
    assert again.get_booster().feature_names == list(X.columns)


@pytest.mark.parametrize("damage", ["flip", "truncate", "no_meta"])
def test_a_damaged_stored_model_is_refitted_and_logged(tmp_path, caplog, damage):
    X, y = _data()
    BRFStore(tmp_path).fit(X, y, SMALL, seed=0)
    model_path, meta_path = BRFStore(tmp_path).paths(fit_key(X, y, SMALL, 0))
    data = model_path.read_bytes()
    if damage == "flip":
        i = data.index(b"split_conditions") + 30
        model_path.write_bytes(data[:i] + (b"7" if data[i : i + 1] != b"7" else b"8") + data[i + 1 :])
    elif damage == "truncate":
        model_path.write_bytes(data[: len(data) // 2])
    else:
        meta_path.unlink()
    store = BRFStore(tmp_path)
    with caplog.at_level("WARNING"):
        model = store.fit(X, y, SMALL, seed=0)
    assert (store.fitted, store.reused) == (1, 0)
    if damage != "no_meta":
        assert any(str(model_path) in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(brf_scores(model, X), brf_scores(fit_brf(X, y, SMALL, seed=0), X))
    assert BRFStore(tmp_path).load(fit_key(X, y, SMALL, 0)) is not None  # stored again, whole


def test_invalid_keys_are_refused(tmp_path):
    with pytest.raises(ValueError, match="32 lowercase hex"):
        BRFStore(tmp_path).paths("../x")
