"""The bundle's threshold: out-of-fold BRF scores, judged on real bad rows when synthetic ones top them up."""

from __future__ import annotations

import numpy as np
import pandas as pd

from segad.meta.brf import BRFConfig
from segad.production.assemble import BundleOptions, _operating_point

CONFIG = BRFConfig(n_estimators=2, num_parallel_tree=5, n_jobs=1)


def _rows(n_good: int, n_real: int, n_synthetic: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    score = np.r_[rng.normal(0, 1, n_good), rng.normal(3, 1, n_real), rng.normal(6, 1, n_synthetic)]
    ids = [f"good/{i}.png" for i in range(n_good)] + [f"bad/{i}.png" for i in range(n_real)]
    ids += [f"synthetic/0/good_{i}__0.png" for i in range(n_synthetic)]
    return pd.DataFrame({"image_id": ids, "label": [0] * n_good + [1] * (n_real + n_synthetic), "padim__max": score})


def test_top_up_trains_the_folds_but_only_real_bad_rows_set_the_threshold():
    rows = _rows(40, 12, 20)
    point = _operating_point(rows, ["padim__max"], CONFIG, 0, "c", BundleOptions(max_miss_rate=0.1))
    assert point.n_bad == 12 and point.n_good == 40
    assert "20 synthetic defects, which train the fold models but not the threshold" in point.source


def test_one_class_rows_judge_on_their_synthetic_defects():
    rows = _rows(40, 0, 20)
    point = _operating_point(rows, ["padim__max"], CONFIG, 0, "c", BundleOptions(max_miss_rate=0.1))
    assert point.n_bad == 20 and "20 synthetic defects)" in point.source
