import dataclasses

from segad.config import DatasetConfig, SplitOptions
from segad.ingestion.layouts import build_index
from segad.pipelines.split.nodes import split

OPTIONS = SplitOptions(
    detector_share=0.5,
    good_split="per_seed",
    good_split_seed=0,
    low_shot_n=2,
    use_low_shot_json=True,
    visa_moved_bad=10,
    n_folds=3,
    kfold_seed=0,
    sensum_splits=None,
)


def test_split_node_on_the_demo(tiny_demo):
    index, _ = build_index("demo", tiny_demo)
    splits = split(index, DatasetConfig(layout="demo", root=str(tiny_demo)), "high_shot", [0, 1], OPTIONS)
    assert len(splits) == 2 * len(index)
    counts = splits[splits.split_seed == 0].role.value_counts().to_dict()
    assert counts == {"test": 15, "brf_train": 6 + 6, "detector_train": 6}


def test_split_node_reads_vad_low_shot_json(tiny_demo, tmp_path):
    index, _ = build_index("demo", tiny_demo)
    (tmp_path / "low_shot_train.json").write_text('{"0": ["0001.png"]}')
    splits = split(index, DatasetConfig(layout="vad", root=str(tmp_path)), "low_shot", [5], OPTIONS)
    bad = splits.merge(index, on="image_id").query("label == 1 and split == 'train' and role == 'brf_train'")
    assert list(bad.image_id) == ["train/bad/0001.png"]


def test_split_node_fixed_good_split_logs_its_seed(tiny_demo, caplog):
    index, _ = build_index("demo", tiny_demo)
    caplog.set_level("INFO")
    splits = split(
        index,
        DatasetConfig(layout="demo", root=str(tiny_demo)),
        "high_shot",
        [0, 1],
        dataclasses.replace(OPTIONS, good_split="fixed", good_split_seed=333),
    )
    detector = splits[splits.role == "detector_train"].groupby("split_seed").image_id.apply(frozenset)
    assert detector.nunique() == 1
    assert "good split fixed with seed 333" in caplog.text
