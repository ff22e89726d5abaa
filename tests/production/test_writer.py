"""segad.production.writer: atomic bundle folders, versions under a parent folder, LATEST."""

from __future__ import annotations

import pytest
from kedro.io import DatasetError

from segad.datasets.bundle_dataset import BundleDataset
from segad.production.bundle import LATEST, BundleIntegrityError, list_bundles, load_bundle, resolve_bundle
from segad.production.writer import write_bundle, write_versioned_bundle


def test_rewriting_replaces_the_bundle_atomically(trained, bundle_dir):
    first = load_bundle(bundle_dir).bundle_id
    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    write_bundle(bundle_dir, **arguments)
    assert load_bundle(bundle_dir).bundle_id != first
    assert sorted(p.name for p in bundle_dir.parent.iterdir()) == ["bundle"]  # no staging left


def test_each_build_is_a_new_version_and_latest_points_to_the_newest(trained, tmp_path):
    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    parent = tmp_path / "segad_bundle"
    dataset = BundleDataset(str(parent))
    assert not dataset.exists()
    dataset.save(arguments)
    first = (parent / LATEST).read_text().strip()
    dataset.save(arguments)
    second = (parent / LATEST).read_text().strip()
    assert first != second
    assert list_bundles(parent) == sorted([first, second])  # both kept
    assert sorted(p.name for p in parent.iterdir()) == sorted([LATEST, first, second])  # no temp left
    assert resolve_bundle(parent) == parent / second
    assert dataset.load().bundle_id == second  # the parent loads the latest
    assert load_bundle(parent / second).bundle_id == second  # folder name = bundle_id
    assert BundleDataset(str(parent / first)).load().bundle_id == first  # an explicit older bundle
    with pytest.raises(DatasetError, match="versioned bundle"):
        BundleDataset(str(parent / first)).save(arguments)
    (parent / "notes.txt").write_text("not ours")
    with pytest.raises(DatasetError, match="did not write"):
        dataset.save(arguments)
    assert list_bundles(parent) == sorted([first, second])


def test_an_unversioned_bundle_becomes_the_first_version(trained, bundle_dir):
    old = load_bundle(bundle_dir).bundle_id
    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    new = write_versioned_bundle(bundle_dir, **arguments)
    assert list_bundles(bundle_dir) == sorted([old, new.name])
    assert (bundle_dir / LATEST).read_text().strip() == new.name
    assert load_bundle(bundle_dir / old).bundle_id == old


def test_a_damaged_detector_is_never_bundled_and_latest_stays(trained, tmp_path):
    """The bundle is assembled from verified files only: a saved detector whose state no longer
    matches its recorded checksum is refused, naming the file, and no bundle or LATEST moves."""
    import shutil

    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    parent = tmp_path / "segad_bundle"
    first = write_versioned_bundle(parent, **arguments).name
    source = tmp_path / "padim_model"
    shutil.copytree(arguments["detector_dirs"]["padim"], source)
    state = source / "state_dict.pt"
    state.write_bytes(state.read_bytes()[:-100])
    damaged = {**arguments, "detector_dirs": {"padim": source}}
    with pytest.raises(BundleIntegrityError, match=rf"{state}: checksum mismatch.*not bundled"):
        write_versioned_bundle(parent, **damaged)
    assert list_bundles(parent) == [first] and (parent / LATEST).read_text().strip() == first
    assert sorted(p.name for p in parent.iterdir()) == sorted([LATEST, first])  # no staging left


def test_the_bundle_stage_picks_the_id_the_report_names(trained, tmp_path):
    from segad.production.writer import BundleError, new_bundle_id

    arguments = {k: v for k, v in trained.items() if not k.startswith("_")}
    parent = tmp_path / "segad_bundle"
    chosen = new_bundle_id()
    BundleDataset(str(parent)).save({**arguments, "bundle_id": chosen})
    assert (parent / LATEST).read_text().strip() == chosen
    assert load_bundle(parent / chosen).bundle_id == chosen
    with pytest.raises(BundleError, match="exists already"):  # an id names one bundle only
        write_versioned_bundle(parent, bundle_id=chosen, **arguments)
    with pytest.raises(BundleError, match="does not have the form"):
        write_versioned_bundle(parent, bundle_id="../elsewhere", **arguments)
