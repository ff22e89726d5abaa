"""segad.meta.blend: a combination's BRF score averaged with its strongest member's, on the good parts' scale."""

from __future__ import annotations

import numpy as np
import pytest

from segad.meta.blend import Blend, good_scale


def test_good_scale_is_the_good_share_inside_and_linear_beyond_the_most_anomalous_good_part():
    good = np.array([0.0, 1.0, 2.0, 3.0, 4.0])  # median 2, max 4
    scaled = good_scale(np.array([-1.0, 0.0, 2.5, 4.0, 6.0, 10.0, np.nan]), good)
    np.testing.assert_allclose(scaled[:6], [0.0, 0.2, 0.6, 1.0, 2.0, 4.0])
    assert np.isnan(scaled[6])


def test_a_member_alarm_survives_a_brf_that_never_saw_the_defect():
    rng = np.random.default_rng(0)
    blend = Blend.of("patchcore__max", rng.normal(0, 1, 200), rng.normal(5, 0.5, 200))
    good = blend.score(rng.normal(0, 1, 100), rng.normal(5, 0.5, 100))
    # an unseen defect: the BRF scores it like a good part, the detector far beyond every good part
    unseen = blend.score(np.array([0.0]), np.array([9.0]))
    assert unseen[0] > good.max()


def test_the_blend_never_falls_when_either_score_grows():
    blend = Blend.of("classifier__score", np.linspace(-3, 3, 50), np.linspace(0, 1, 50))
    grid = np.linspace(-5, 5, 41)
    for fixed in (-1.0, 0.5, 4.0):
        assert np.all(np.diff(blend.score(grid, np.full_like(grid, fixed / 4))) >= 0)
        assert np.all(np.diff(blend.score(np.full_like(grid, fixed), grid / 4)) >= 0)


def test_a_blend_survives_its_json_form_and_refuses_a_broken_one():
    blend = Blend.of("padim__max", [3.0, 1.0, np.nan, 2.0], [0.5, 0.25])
    np.testing.assert_array_equal(blend.model_good, [1.0, 2.0, 3.0])  # sorted, NaN dropped
    again = Blend.from_dict(blend.as_dict())
    assert again.column == "padim__max"
    np.testing.assert_array_equal(again.model_good, blend.model_good)
    np.testing.assert_array_equal(again.member_good, blend.member_good)
    with pytest.raises(ValueError, match="member_good"):
        Blend.from_dict({"column": "padim__max", "model_good": [1.0]})
    with pytest.raises(ValueError, match="no finite padim__max score"):
        Blend.of("padim__max", [1.0], [np.nan])
