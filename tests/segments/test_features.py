"""Feature tables: rows, maps streamed in batches, the torch path and the reference loop against the
definition (the statistics themselves: tests/segments/test_statistics.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from segad.columns import STATS, feature_columns
from segad.segments.features import build_feature_table, feature_rows, stream_statistics
from segad.segments.features_torch import TORCH_STATS, segment_statistics_torch
from segad.segments.reference import reference_segment_statistics
from segad.segments.segment_maps import SegmentMaps
from tests.segments.test_statistics import RTOL, _assert_equal_stats, _expected, _maps_and_labels

pytestmark = pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")


def test_feature_config_checks_its_keys_and_values():
    from segad.segments.features import FeatureConfig
    from segad.segments.statistics import default_threads

    assert FeatureConfig(batch_size=8).kernel_threads == default_threads() >= 1
    assert FeatureConfig(threads=2).kernel_threads == 2
    with pytest.raises(ValueError, match="thread\n  Unexpected keyword argument"):
        FeatureConfig(**{"thread": 2})
    with pytest.raises(ValueError, match="threads\n  Input should be greater than or equal to 1"):
        FeatureConfig(threads=0)


def test_reference_loop_is_the_definition():
    maps, labels, n = _maps_and_labels(n=2, seed=6)
    ref = np.stack([reference_segment_statistics(m.astype(np.float64), labels, n) for m in maps])
    _assert_equal_stats(ref, _expected(maps, labels, n))


@pytest.mark.parametrize("shared", [True, False])
def test_torch_path_matches_numpy_on_cpu_tensors(shared):
    maps, labels, n = _maps_and_labels(seed=7)
    lab = labels if shared else np.broadcast_to(labels, maps.shape).copy()
    out = segment_statistics_torch(torch.from_numpy(maps), torch.from_numpy(lab), n)
    assert out.dtype == torch.float64
    _assert_equal_stats(out.numpy(), _expected(maps, labels, n)[..., [STATS.index(s) for s in TORCH_STATS]])


def test_stream_statistics_reads_in_batches():
    maps, labels, n = _maps_and_labels(n=7)
    reads = []

    def read(key):
        reads.append(key)
        return maps[int(key)]

    stats, maxima = stream_statistics([str(i) for i in range(7)], read, labels, n, batch_size=3)
    _assert_equal_stats(stats, _expected(maps, labels, n))
    np.testing.assert_allclose(maxima, maps.reshape(7, -1).max(1))
    assert reads == [str(i) for i in range(7)]


def _tables():
    index = pd.DataFrame(
        {
            "image_id": ["g0", "g1", "g2", "b0", "t0", "t1"],
            "category": "c",
            "label": [0, 0, 0, 1, 0, 1],
            "defect_type": ["good"] * 3 + ["bad", "good", "bad"],
            "unseen": [False] * 5 + [True],
        }
    )
    splits = pd.DataFrame(
        {
            "image_id": index["image_id"].tolist() * 2,
            "split_seed": [0] * 6 + [1] * 6,
            "role": [
                "detector_train",
                "brf_train",
                "brf_train",
                "brf_train",
                "test",
                "test",
                "brf_train",
                "detector_train",
                "brf_train",
                "brf_train",
                "test",
                "test",
            ],
        }
    )
    synthetic = pd.DataFrame(
        {
            "image_id": ["synthetic/0/g1__0.png"],
            "split_seed": [0],
            "source_image_id": ["g1"],
            "category": ["c"],
            "defect_type": ["synthetic_blur"],
            "label": [1],
            "role": ["brf_train"],
            "path": ["/x.png"],
        }
    )
    return index, splits, synthetic


def test_build_feature_table_joins_maps_once_per_key():
    index, splits, synthetic = _tables()
    rows = feature_rows(index, splits, synthetic)
    assert len(rows) == 2 * 5 + 1 and set(rows["role"]) == {"brf_train", "test"}
    assert rows.loc[rows["image_id"].str.startswith("synthetic"), "source_image_id"].item() == "g1"
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(2), 32).reshape(8, 8)
    store = {}
    map_index = []
    for _, r in rows.iterrows():
        key = f"m/{r.image_id}"  # same map for both seeds: one key
        store.setdefault(key, rng.gamma(2.0, 1.0, (8, 8)).astype(np.float32))
        map_index.append(
            {
                "image_id": r.image_id,
                "detector": "padim",
                "split_seed": r.split_seed,
                "model_key": "m",
                "map_key": key,
                "max_score": float(store[key].max()),
                "height": 8,
                "width": 8,
            }
        )
    reads = []

    def read(key):
        reads.append(key)
        return store[key]

    seg = SegmentMaps(method="static", size=(8, 8), n_segments={"c": 2}, static_maps={"c": labels})
    table = build_feature_table(rows, {"padim": pd.DataFrame(map_index)}, {"padim": read}, seg, batch_size=4)
    assert len(reads) == len(store)  # each distinct map summarised once
    assert list(table.columns[-9:]) == feature_columns(["padim"], 2)
    row = table[(table.image_id == "t1") & (table.split_seed == 1)].iloc[0]
    expected = _expected(store["m/t1"][None], labels, 2)[0]
    np.testing.assert_allclose(row[feature_columns(["padim"], 2)[:8]].to_numpy(float), expected.ravel(), rtol=RTOL)
    assert row["padim__max"] == pytest.approx(store["m/t1"].max())
    with pytest.raises(ValueError, match="padim.map_index has no map"):
        build_feature_table(rows, {"padim": pd.DataFrame(map_index[:-1])}, {"padim": read}, seg)
    # a map index with the detector's own image score (supersimplenet_supervised) adds <d>__score last
    scored = pd.DataFrame(map_index).assign(pred_score=lambda t: np.arange(len(t)) / 100.0)
    table = build_feature_table(rows, {"padim": scored}, {"padim": read}, seg, batch_size=4)
    assert list(table.columns[-10:]) == feature_columns(["padim"], 2, scored=["padim"])
    merged = table.merge(scored, on=["image_id", "split_seed"])
    np.testing.assert_array_equal(merged["padim__score"], merged["pred_score"])


def test_build_feature_table_with_per_image_segment_maps(tmp_path):
    index, splits, synthetic = _tables()
    rows = feature_rows(index, splits[splits.split_seed == 0], synthetic)
    rng = np.random.default_rng(1)
    folder = tmp_path / "segments"
    folder.mkdir()
    maps, map_index, label_maps = {}, [], {}
    for image_id in index.image_id:
        label_maps[image_id] = rng.integers(0, 3, (8, 8))
        np.save(folder / f"{image_id}.npy", label_maps[image_id])
    for r in rows.itertuples():
        maps[r.image_id] = rng.gamma(2.0, 1.0, (8, 8)).astype(np.float32)
        map_index.append(
            {
                "image_id": r.image_id,
                "detector": "padim",
                "split_seed": 0,
                "model_key": "m",
                "map_key": r.image_id,
                "max_score": 0.0,
                "height": 8,
                "width": 8,
            }
        )
    seg = SegmentMaps(method="per_image", size=(8, 8), n_segments={"c": 3}, folder=str(folder))
    table = build_feature_table(
        rows, {"padim": pd.DataFrame(map_index)}, {"padim": maps.__getitem__}, seg, batch_size=2
    )
    cols = feature_columns(["padim"], 3)[:12]
    for r in table.itertuples():
        labels = label_maps[r.source_image_id]  # a synthetic image uses its source's segment map
        expected = _expected(maps[r.image_id][None], labels, 3)[0].ravel()
        got = table.loc[r.Index, cols].to_numpy(float)
        np.testing.assert_allclose(got, expected, rtol=RTOL, equal_nan=True)
    assert "synthetic/0/g1__0.png" in set(table.image_id)
