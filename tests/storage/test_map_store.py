"""MapStore: exact round trips, atomic writes, damaged files detected."""

from __future__ import annotations

import subprocess
import sys
import uuid

import numpy as np
import pytest

from segad.storage.files import HOST
from segad.storage.map_store import MapStore, MapStoreError


@pytest.fixture
def store(tmp_path):
    return MapStore(tmp_path / "maps")


def test_float32_round_trip_is_exact(store):
    rng = np.random.default_rng(0)
    anomaly_map = (rng.normal(size=(16, 24)) * 100).astype(np.float32)
    store.write("model/abc", anomaly_map)
    assert store.exists("model/abc")
    out = store.read("model/abc")
    assert out.dtype == np.float32 and out.shape == (16, 24)
    np.testing.assert_array_equal(out, anomaly_map)
    assert store.path("model/abc") == store.root / "model" / "abc.npz"


def test_float16_store_returns_float32_and_keeps_out_of_range_maps_exact(tmp_path):
    store = MapStore(tmp_path, dtype="float16")
    small = np.linspace(10, 20, 64, dtype=np.float32).reshape(8, 8)
    store.write("a", small)
    out = store.read("a")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, small, rtol=1e-3)
    assert not np.array_equal(out, small)  # really stored as float16
    huge = np.full((4, 4), 1e6, np.float32)
    store.write("b", huge)
    np.testing.assert_array_equal(store.read("b"), huge)


def test_missing_map_is_absent_and_read_names_the_file(store):
    assert not store.exists("nope")
    with pytest.raises(MapStoreError, match="nope.npz"):
        store.read("nope")


@pytest.mark.parametrize("bad", [np.zeros((3,), np.float32), np.array([[np.nan]], np.float32), np.zeros((2, 2), int)])
def test_bad_maps_are_refused_without_leaving_files(store, bad):
    with pytest.raises(ValueError):
        store.write("x", bad)
    assert not store.path("x").exists()
    assert list(store.root.rglob("*")) == [] or not any(p.is_file() for p in store.root.rglob("*"))


@pytest.mark.parametrize("key", ["../escape", "/abs", "a b", "", "a//b"])
def test_keys_that_could_escape_the_root_are_refused(store, key):
    with pytest.raises(ValueError, match="invalid map_key"):
        store.path(key)


def test_write_leaves_no_temporary_files(store):
    for i in range(3):
        store.write(f"m/{i}", np.ones((4, 4), np.float32) * i)
    names = sorted(p.name for p in store.root.rglob("*") if p.is_file())
    assert names == ["0.npz", "1.npz", "2.npz"]


def test_the_temporary_map_of_a_killed_run_is_removed_by_the_next_write_in_its_folder(store):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = store.root / "m" / f".7.npz.{HOST}-{dead.pid}.{uuid.uuid4().hex}.tmp"  # as atomic_path names it
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"PK half a map")
    store.write("n/0", np.ones((4, 4), np.float32))  # another folder: left alone
    assert orphan.exists()
    store.write("m/0", np.ones((4, 4), np.float32))
    assert sorted(p.name for p in (store.root / "m").iterdir()) == ["0.npz"]


def test_truncated_file_is_detected(store):
    store.write("k", np.ones((32, 32), np.float32))
    path = store.path("k")
    path.write_bytes(path.read_bytes()[:300])
    assert not store.exists("k")
    with pytest.raises(MapStoreError, match="damaged"):
        store.read("k")


def test_flipped_byte_in_the_data_is_detected_by_the_crc(store):
    store.write("k", np.arange(1024, dtype=np.float32).reshape(32, 32))
    path = store.path("k")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert not store.exists("k")
    with pytest.raises(MapStoreError):
        store.read("k")


def test_a_map_copied_under_another_key_is_detected(store):
    store.write("a", np.ones((4, 4), np.float32))
    store.path("b").write_bytes(store.path("a").read_bytes())
    with pytest.raises(MapStoreError, match="holds map 'a'"):
        store.read("b")
    assert not store.exists("b")


def test_rewrite_replaces_a_damaged_file(store):
    store.write("k", np.ones((4, 4), np.float32))
    store.path("k").write_bytes(b"garbage")
    store.write("k", np.full((4, 4), 2.0, np.float32))
    np.testing.assert_array_equal(store.read("k"), np.full((4, 4), 2.0, np.float32))
