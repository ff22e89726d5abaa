import json

import numpy as np
import pytest
from PIL import Image

from segad.ingestion.demo import SEGMENTS, DemoConfig, render_part, segmentation_map, write_demo
from tests.conftest import TINY_DEMO


def test_layout_counts_and_files(tiny_demo):
    counts = {
        f: len(list((tiny_demo / f).glob("*.png")))
        for f in ("train/good", "train/bad", "test/good", "test/bad", "test/bad_unseen_defects")
    }
    assert counts == {"train/good": 12, "train/bad": 6, "test/good": 6, "test/bad": 5, "test/bad_unseen_defects": 4}
    seg = np.asarray(Image.open(tiny_demo / "segmentation.png"))
    assert seg.shape == (64, 64) and set(np.unique(seg)) == set(SEGMENTS)
    manifest = json.loads((tiny_demo / "manifest.json").read_text())
    assert manifest["config"]["image_size"] == 64


def test_deterministic_and_skips_when_unchanged(tmp_path, tiny_demo):
    other = write_demo(tmp_path / "again", TINY_DEMO)
    for name in ("train/good/0003.png", "test/bad_unseen_defects/0001.png"):
        assert (other / name).read_bytes() == (tiny_demo / name).read_bytes()
    stamp = (other / "train/good/0000.png").stat().st_mtime_ns
    write_demo(other, TINY_DEMO)
    assert (other / "train/good/0000.png").stat().st_mtime_ns == stamp
    write_demo(
        other, DemoConfig(n_train_good=3, n_train_bad=1, n_test_good=1, n_test_bad=1, n_test_unseen=1, image_size=64)
    )
    assert len(list((other / "train/good").glob("*.png"))) == 3  # a new configuration rewrites the folder
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_unseen_types_only_in_test(tiny_demo):
    types = dict(line.split(",") for line in (tiny_demo / "defects.csv").read_text().split()[1:])
    train_types = {t for i, t in types.items() if i.startswith("train/")}
    unseen_types = {t for i, t in types.items() if "unseen" in i}
    assert unseen_types and not (train_types & unseen_types)


def test_good_parts_vary_and_defects_change_pixels():
    good_a = np.asarray(render_part(np.random.default_rng(1), 128), np.float32)
    good_b = np.asarray(render_part(np.random.default_rng(2), 128), np.float32)
    assert np.abs(good_a - good_b).mean() > 1.0  # jitter, texture and lighting
    for defect in ("missing_wire", "crack", "burn", "misplaced_solder"):
        bad = np.asarray(render_part(np.random.default_rng(1), 128, defect), np.float32)
        assert np.abs(bad - good_a).max() > 60, defect


def test_segments_cover_the_part():
    seg = segmentation_map(256)
    image = np.asarray(render_part(np.random.default_rng(0), 256), np.float32)
    background = image[seg == 0]
    assert background.mean() < 80  # the part's bright regions lie inside its segments
    assert (np.bincount(seg.ravel(), minlength=6) > 0).all()


def test_shift_rotation_scale_option_moves_the_part():
    aligned = [np.asarray(render_part(np.random.default_rng(i), 128), np.float32) for i in range(6)]
    shifted = [
        np.asarray(
            render_part(np.random.default_rng(i), 128, jitter_px=40, rotation_deg=180, scale_jitter=0.2), np.float32
        )
        for i in range(6)
    ]

    def centre(image):  # centroid of the bright ceramic centre
        ys, xs = np.nonzero(image.mean(axis=2) > 170)
        return np.array([ys.mean(), xs.mean()])

    spread = lambda images: np.std([centre(i) for i in images], axis=0).max()  # noqa: E731
    assert spread(aligned) < 2.0 < 8.0 < spread(shifted)
    # the options off draw no random numbers: the aligned demo is unchanged
    np.testing.assert_array_equal(
        aligned[0],
        np.asarray(render_part(np.random.default_rng(0), 128, jitter_px=3.0, rotation_deg=0.0, scale_jitter=0.0)),
    )
    config = DemoConfig(jitter_px=40, rotation_deg=180, scale_jitter=0.2)
    assert (config.rotation_deg, config.scale_jitter) == (180, 0.2)
    with pytest.raises(ValueError):
        DemoConfig(scale_jitter=1.5)


def test_only_parts_in_register_ship_the_static_map(tmp_path, tiny_demo):
    """A static map fits the aligned demo only: the shifted variant ships none and is segmented as any
    dataset without a map (segmentation.method null -> auto_select)."""
    from segad.ingestion.demo import ships_map
    from segad.segments.segment_maps import SegmentMapConfig

    assert ships_map(DemoConfig()) and not ships_map(DemoConfig(jitter_px=40))
    assert not ships_map(DemoConfig(rotation_deg=10)) and not ships_map(DemoConfig(surface="texture"))
    small = dict(n_train_good=2, n_train_bad=1, n_test_good=1, n_test_bad=1, n_test_unseen=1, image_size=32)
    shifted = write_demo(tmp_path / "shifted", DemoConfig(**small, jitter_px=40, rotation_deg=180))
    assert not (shifted / "segmentation.png").exists()
    assert SegmentMapConfig().for_dataset("demo", str(shifted)).method == "auto_select"
    chosen = SegmentMapConfig().for_dataset("demo", str(tiny_demo))
    assert (chosen.method, chosen.path) == ("static", str(tiny_demo / "segmentation.png"))


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_damaged_demo_is_written_again_never_used_as_it_is(tmp_path, tiny_demo, caplog, damage):
    """The demo's files are verified against the checksums in its manifest; a listed file that
    is missing or changed makes the demo be written again (and the log says so)."""
    import shutil

    demo = tmp_path / "demo"
    shutil.copytree(tiny_demo, demo)
    victim = demo / "test/bad/0002.png"
    expected = victim.read_bytes()
    if damage == "delete":
        victim.unlink()
    else:
        victim.write_bytes(expected[:50])
    with caplog.at_level("WARNING", logger="segad.ingestion.demo"):
        write_demo(demo, TINY_DEMO)
    what = "missing" if damage == "delete" else "changed"
    assert f"the demo does not match its manifest (1 file(s) {what}, e.g. ['test/bad/0002.png'])" in caplog.text
    assert victim.read_bytes() == expected
    # a demo written before checksums were recorded is written once more, then verified
    manifest = json.loads((demo / "manifest.json").read_text())
    del manifest["sha256"]
    (demo / "manifest.json").write_text(json.dumps(manifest))
    write_demo(demo, TINY_DEMO)
    assert "sha256" in json.loads((demo / "manifest.json").read_text())
    # a file of the user's in the demo folder is still never overwritten
    (demo / "notes.txt").write_text("mine")
    victim.unlink()
    with pytest.raises(Exception, match="did not write"):
        write_demo(demo, TINY_DEMO)
