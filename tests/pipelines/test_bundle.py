"""bundle node: the BRF comes from this run's dataset and benchmark only."""

from __future__ import annotations

import pandas as pd
import pytest

from segad.pipelines.bundle.nodes import build_bundle

PARAMETERS = {"detectors": ["patchcore"], "seeds": [0], "dataset": {"layout": "demo"}, "benchmark": "high_shot"}


def test_bundle_refuses_another_regimes_model():
    """Only a one_class model exists: a high_shot run must not bundle it."""
    models = {"demo/one_class/demo/patchcore+segad/split_seed_0": lambda: pytest.fail("must not be read"),
              "visa/high_shot/demo/patchcore+segad/split_seed_0": lambda: pytest.fail("must not be read")}
    index = pd.DataFrame({"image_id": ["a.png"], "category": ["demo"]})
    with pytest.raises(ValueError, match=r"no BRF model 'demo/high_shot/demo/patchcore\+segad/split_seed_0'"):
        build_bundle(None, index, None, None, models, {}, PARAMETERS)
