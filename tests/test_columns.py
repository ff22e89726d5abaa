"""The feature-column grammar: format and parse agree, the order is the paper's, bad names fail."""

from __future__ import annotations

import pytest

from segad.columns import (
    CLASSIFIER_COLUMN,
    STATS,
    Column,
    columns_of,
    feature_columns,
    is_feature_column,
    max_column,
    parse_column,
    score_column,
    segment_column,
    vector_order,
)


def test_format_and_parse_are_inverse():
    for name in feature_columns(["padim", "patch_core2"], 3, classifier=True):
        column = parse_column(name)
        if column.kind == "segment":
            assert segment_column(column.segment, column.owner, column.stat) == name
        elif column.kind == "max":
            assert max_column(column.owner) == name
        else:
            assert name == CLASSIFIER_COLUMN
    assert parse_column("seg12__patch_core2__kurtosis") == Column("segment", "patch_core2", 12, "kurtosis")


def test_order_is_classifier_first_then_segment_major_then_maxima():
    cols = feature_columns(["padim", "patchcore"], 2, classifier=True)
    assert len(cols) == 4 * 2 * 2 + 2 + 1
    assert cols[0] == CLASSIFIER_COLUMN
    assert cols[1:5] == [f"seg0__padim__{s}" for s in STATS]
    assert cols[5] == "seg0__patchcore__q995"
    assert cols[-2:] == ["padim__max", "patchcore__max"]


@pytest.mark.parametrize(
    "name",
    [
        "image_id",
        "seg__padim__q995",
        "seg1__padim__median",
        "classifier__max",
        "Seg1__padim__mean",
        "padim",
        "split_seed",
    ],
)
def test_other_names_are_not_feature_columns(name):
    assert not is_feature_column(name)
    with pytest.raises(ValueError, match=name):
        parse_column(name)


def test_columns_of_selects_members_in_table_order():
    cols = ["image_id", *feature_columns(["padim", "patchcore"], 2, classifier=True)]
    chosen = columns_of(["patchcore"], cols)
    assert len(chosen) == 4 * 2 + 1 and all(parse_column(c).owner == "patchcore" for c in chosen)
    assert columns_of(["classifier", "padim"], cols)[0] == CLASSIFIER_COLUMN


def test_vector_order_puts_a_larger_category_segments_before_the_maxima():
    two = feature_columns(["padim"], 2)
    six = feature_columns(["padim"], 6)
    joined = ["image_id", *two] + [c for c in six if c not in two]  # what concatenating 2 then 6 gives
    assert joined[-1] != "padim__max"
    assert vector_order(joined, ["padim"]) == ["image_id", *six]


def test_a_detectors_own_score_column_comes_last_and_parses():
    cols = feature_columns(["padim", "supersimplenet_supervised"], 1, scored=["supersimplenet_supervised"])
    assert cols[-3:] == ["padim__max", "supersimplenet_supervised__max", "supersimplenet_supervised__score"]
    assert parse_column(cols[-1]) == Column("score", "supersimplenet_supervised")
    assert parse_column(CLASSIFIER_COLUMN).kind == "classifier"
    assert columns_of(["supersimplenet_supervised"], cols)[-1] == score_column("supersimplenet_supervised")
    with pytest.raises(ValueError, match="classifier"):
        score_column("classifier")
