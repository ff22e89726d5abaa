import pickle

import pandas as pd
import pytest

from segad.ingestion.image_index import INDEX_COLUMNS
from segad.ingestion.layouts import LayoutError, build_index, read_low_shot, read_sensum_folds
from segad.storage.images import ImageReadError
from tests.conftest import write_png


def make_vad(root, n=2):
    for folder in ("train/good", "train/bad", "test/good", "test/bad", "test/bad_unseen_defects"):
        for i in range(n):
            write_png(root / folder / f"{i:03d}.png")
    return root


def make_mvtec_category(base, mask_suffix="_mask"):
    for i in range(3):
        write_png(base / "train" / "good" / f"{i:03d}.png")
    write_png(base / "test" / "good" / "000.png")
    for defect in ("crack", "scratch"):
        write_png(base / "test" / defect / "000.png")
        write_png(base / "ground_truth" / defect / f"000{mask_suffix}.png", mode="L", value=255)
    return base


def test_vad_schema_labels_and_unseen(tmp_path):
    index, problems = build_index("vad", make_vad(tmp_path / "vad"))
    assert list(index.columns) == INDEX_COLUMNS
    assert problems.empty and len(index) == 10
    assert set(index.dataset) == {"vad"} and set(index.category) == {"vad"}
    unseen = index[index.unseen]
    assert set(unseen.defect_type) == {"bad_unseen_defects"} and (unseen.label == 1).all()
    assert index.set_index("image_id").loc["train/bad/000.png", "label"] == 1
    assert (index.width == 32).all() and (index.height == 32).all()
    assert index.mask_path.isna().all()


def test_image_ids_are_stable_relative_paths(tmp_path):
    a, _ = build_index("vad", make_vad(tmp_path / "one"))
    b, _ = build_index("vad", make_vad(tmp_path / "two"))
    assert list(a.image_id) == list(b.image_id)
    assert "test/bad_unseen_defects/001.png" in set(a.image_id)


def test_vad_low_shot_json(tmp_path):
    root = make_vad(tmp_path / "vad")
    (root / "low_shot_train.json").write_text('{"0": ["000.png"], "1": ["001.png"]}')
    build_index("vad", root)
    assert read_low_shot(root) == {"0": ["000.png"], "1": ["001.png"]}
    (root / "low_shot_train.json").write_text('{"0": ["999.png"]}')
    with pytest.raises(LayoutError, match="999.png"):
        build_index("vad", root)


def test_demo_reads_defect_types(tiny_demo):
    index, _ = build_index("demo", tiny_demo)
    bad = index[index.label == 1]
    assert {"missing_wire", "crack"} <= set(bad.defect_type)
    assert set(bad[bad.unseen].defect_type) <= {"bent_wire", "burn"}
    assert (index[index.label == 0].defect_type == "good").all()


def test_visa_raw_release(tmp_path):
    root = tmp_path / "visa"
    rows = ["object,split,label,image,mask"]
    for cat in ("candle", "pcb1"):
        for i in range(2):
            write_png(root / cat / "Data/Images/Normal" / f"{i:04d}.JPG".replace("JPG", "png"))
            rows.append(f"{cat},train,normal,{cat}/Data/Images/Normal/{i:04d}.png,")
        write_png(root / cat / "Data/Images/Anomaly/0000.png")
        write_png(root / cat / "Data/Masks/Anomaly/0000.png", mode="L")
        rows.append(f"{cat},test,anomaly,{cat}/Data/Images/Anomaly/0000.png,{cat}/Data/Masks/Anomaly/0000.png")
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv/1cls.csv").write_text("\n".join(rows) + "\n")
    index, _ = build_index("visa", root)
    assert sorted(index.category.unique()) == ["candle", "pcb1"] and len(index) == 6
    bad = index[index.label == 1]
    assert (bad.split == "test").all() and bad.mask_path.notna().all()
    only, _ = build_index("visa", root, category="pcb1")
    assert set(only.category) == {"pcb1"}
    with pytest.raises(LayoutError, match="not found"):
        build_index("visa", root, category="fryum")
    # the same image listed twice is a duplicate id
    (root / "split_csv/1cls.csv").write_text("\n".join(rows + [rows[1]]) + "\n")
    with pytest.raises(LayoutError, match="duplicate image ids"):
        build_index("visa", root)


def test_visa_prepared_form(tmp_path):
    root = tmp_path / "visa_pytorch"
    make_mvtec_category(root / "candle", mask_suffix="")
    index, _ = build_index("visa", root)
    assert set(index.category) == {"candle"}
    assert index[index.label == 1].mask_path.notna().all()


def test_mvtec_root_or_folder_of_categories(tmp_path):
    make_mvtec_category(tmp_path / "mv" / "bottle")
    make_mvtec_category(tmp_path / "mv" / "screw")
    index, _ = build_index("mvtec", tmp_path / "mv")
    assert sorted(index.category.unique()) == ["bottle", "screw"]
    assert set(index[index.label == 1].defect_type) == {"crack", "scratch"}
    assert index[index.label == 1].mask_path.str.endswith("000_mask.png").all()
    single, _ = build_index("mvtec", tmp_path / "mv" / "bottle")
    assert set(single.category) == {"bottle"} and "train/good/000.png" in set(single.image_id)


def test_mvtec_mask_without_image(tmp_path):
    base = make_mvtec_category(tmp_path / "bottle")
    write_png(base / "ground_truth/crack/007_mask.png", mode="L")
    with pytest.raises(LayoutError, match="masks without images.*007"):
        build_index("mvtec", base)


def test_sensum_and_official_folds(tmp_path):
    root = tmp_path / "sensum"
    for cat, size in (("capsule", (192, 320)), ("softgel", (144, 144))):
        for i in range(3):
            write_png(root / cat / "negative/data" / f"{i:03d}.png", size)
        write_png(root / cat / "positive/data/100.png", size)
        write_png(root / cat / "positive/annotation/100.png", size, mode="L")
    index, _ = build_index("sensum", root)
    assert (index.split == "train").all() and len(index) == 8
    capsule = index[index.category == "capsule"]
    assert set(capsule.width) == {192} and set(capsule.height) == {320}
    assert capsule[capsule.label == 1].mask_path.notna().all()
    fold = root / "sensum_splits/capsule/0/test"
    fold.mkdir(parents=True)
    with (fold / "neg.pckl").open("wb") as handle:
        pickle.dump([("000", False), ("001", False)], handle)
    assert read_sensum_folds(root / "sensum_splits", "capsule") == {0: {"train": set(), "test": {"000", "001"}}}
    with (fold / "pos.pckl").open("wb") as handle:
        pickle.dump([pd.Timestamp(0)], handle)  # anything but plain values is refused
    with pytest.raises(LayoutError, match="not a fold file"):
        read_sensum_folds(root / "sensum_splits", "capsule")
    write_png(root / "capsule/positive/annotation/555.png", mode="L")
    with pytest.raises(LayoutError, match="masks without images"):
        build_index("sensum", root)


@pytest.mark.slow
def test_elpv_from_the_installed_package():
    index, _ = build_index("elpv", None)
    counts = index.groupby("label").size().to_dict()
    assert counts == {0: 1508, 1: 715}  # uncertain cells left out
    assert set(index.category) == {"mono", "poly"}
    assert set(index.width) == {300} and set(index.height) == {300}
    share = (index.split == "test").mean()
    assert 0.24 < share < 0.26
    again, _ = build_index("elpv", None)
    assert again.equals(index)  # the seeded split is deterministic
    with_uncertain, _ = build_index("elpv", None, include_uncertain=True, test_share=0.5)
    assert len(with_uncertain) == 2624


def test_vad_needs_only_train_good_and_test_good_and_says_so(tmp_path):
    for folder in ("train/good", "test/good"):
        write_png(tmp_path / "parts" / folder / "0.png")
    index, _ = build_index("vad", tmp_path / "parts")  # no bad and no bad_unseen_defects folder
    assert sorted(index.image_id) == ["test/good/0.png", "train/good/0.png"]
    write_png(tmp_path / "half" / "train" / "good" / "0.png")
    with pytest.raises(LayoutError, match=r"expected train/good and test/good \(train/bad, test/bad and "):
        build_index("vad", tmp_path / "half")


def test_bad_input_errors(tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        build_index("vad", tmp_path / "missing")
    with pytest.raises(LayoutError, match="unknown dataset.layout"):
        build_index("kitti", tmp_path)
    (tmp_path / "random").mkdir()
    write_png(tmp_path / "random" / "x.png")
    with pytest.raises(LayoutError, match="not a VAD-style folder.*x.png"):
        build_index("vad", tmp_path / "random")
    with pytest.raises(LayoutError, match="not an MVTec-style folder"):
        build_index("mvtec", tmp_path / "random")
    empty = tmp_path / "empty"
    for folder in ("train/good", "test/good"):
        (empty / folder).mkdir(parents=True)
    with pytest.raises(LayoutError, match="no images found"):
        build_index("vad", empty)


def test_truncated_images_fail_or_skip_and_report(tmp_path):
    root = make_vad(tmp_path / "vad")
    broken = root / "test/good/001.png"
    broken.write_bytes(broken.read_bytes()[:60])
    (root / "train/good/002.png").write_text("garbage")
    with pytest.raises(ImageReadError) as error:
        build_index("vad", root)
    assert "2 unreadable" in str(error.value) and "001.png" in str(error.value) and "002.png" in str(error.value)
    index, problems = build_index("vad", root, on_bad_image="skip")
    assert len(index) == 9 and len(problems) == 2
    assert {p.split("/")[-1] for p in problems.path} == {"001.png", "002.png"}
    assert "test/good/001.png" not in set(index.image_id)


def test_elpv_root_without_labels_is_an_error_not_the_packaged_copy(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(LayoutError, match=r"no labels.csv, so it is not an ELPV folder"):
        build_index("elpv", tmp_path)
