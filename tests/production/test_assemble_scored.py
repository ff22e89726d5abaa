"""The bundle leaves detectors with their own image score (supersimplenet_supervised) out by default."""

from __future__ import annotations

import pandas as pd
import pytest

from segad.production.assemble import BundleOptions, _choose

INDEX = pd.DataFrame({"image_id": ["a"], "category": ["c"]})


def test_default_members_leave_the_scored_detector_out():
    _, _, members, classifier = _choose(
        BundleOptions(), ["padim", "supersimplenet_supervised"], [0], INDEX, scored=["supersimplenet_supervised"]
    )
    assert members == ["padim"] and not classifier


def test_the_default_takes_the_classifier_when_the_run_has_it():
    """The brf stage adds the classifier to the all-detector combination; the bundle's default follows."""
    _, _, members, classifier = _choose(BundleOptions(), ["patchcore", "padim"], [0], INDEX, classifier=True)
    assert members == ["patchcore", "padim"] and classifier
    chosen = _choose(BundleOptions(detectors=["padim"]), ["patchcore", "padim"], [0], INDEX, classifier=True)
    assert chosen[2:] == (["padim"], False)


def test_naming_a_scored_detector_is_refused_by_assemble_bundle():
    from segad.production import assemble

    index = {
        "padim": pd.DataFrame(columns=["image_id"]),
        "supersimplenet_supervised": pd.DataFrame(columns=["image_id", "pred_score"]),
    }
    with pytest.raises(ValueError, match="cannot be bundled yet"):
        assemble.assemble_bundle(
            pd.DataFrame(),
            INDEX,
            pd.DataFrame(),
            None,
            {},
            index,
            {},
            dataset={"layout": "demo"},
            benchmark="high_shot",
            seeds=[0],
            image_size=64,
            detectors=["padim", "supersimplenet_supervised"],
            brf_model=None,
            options=BundleOptions(detectors=["supersimplenet_supervised"]),
            recorded={},
        )
