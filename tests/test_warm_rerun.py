"""A warm `segad` rerun with nothing changed fits nothing: no detector, no BRF, no out-of-fold BRF.

The session's tiny `segad` run (tests/conftest.py `segad_run`: a real `python -m segad` subprocess,
bundling the combination patchcore+segad; by default the out-of-fold selection would ship the
single input, which needs no out-of-fold BRF) is rerun in a copy of its project. The second run
must reuse the saved detector and every map, take every BRF of the brf stage, every out-of-fold
BRF of the selection and every out-of-fold BRF of the bundle from the BRF store
(`segad.meta.brf_store`) and write the same metrics and scores.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import interruptible_env, kedro_run, plain_logging

DETECTOR = re.compile(r"patchcore: (\d+) models fitted .*?, (\d+) reused")
BRF = re.compile(r"BRF: (\d+) models \((\d+) fitted, (\d+) reused")
OUT_OF_FOLD = re.compile(r"bundle: out-of-fold BRFs (\d+) fitted, (\d+) reused")
SELECTION = re.compile(r"selection: out-of-fold BRFs (\d+) fitted, (\d+) reused")

pytestmark = pytest.mark.e2e


def _rerun(project: Path) -> str:
    """`kedro run --pipelines segad` in `project` with plain log lines, its whole output."""
    plain_logging(project)
    done = kedro_run(project, "--pipelines", "segad", env=interruptible_env(project))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def test_a_warm_segad_rerun_with_nothing_changed_fits_nothing(segad_run, tmp_path):
    first = " ".join(segad_run.log.split())  # the console wraps long lines on spaces
    assert DETECTOR.search(first).groups() == ("1", "0")
    n_models, fitted, reused = map(int, BRF.search(first).groups())
    assert n_models > 0 and (fitted, reused) == (n_models, 0)
    oof_fitted, oof_reused = map(int, OUT_OF_FOLD.search(first).groups())
    assert oof_fitted > 0 and oof_reused == 0
    selection_fitted, selection_reused = map(int, SELECTION.search(first).groups())
    assert selection_fitted > 0 and selection_reused == 0
    project = segad_run.copy(tmp_path / "project")
    metrics = (project / "data" / "08_reporting" / "metrics.csv").read_bytes()
    scores = pd.read_parquet(project / "data" / "07_model_output" / "scores")

    second = " ".join(_rerun(project).split())
    assert DETECTOR.search(second).groups() == ("0", "1")
    assert tuple(map(int, BRF.search(second).groups())) == (n_models, 0, n_models)
    assert tuple(map(int, OUT_OF_FOLD.search(second).groups())) == (0, oof_fitted)
    assert tuple(map(int, SELECTION.search(second).groups())) == (0, selection_fitted)
    assert (project / "data" / "08_reporting" / "metrics.csv").read_bytes() == metrics
    pd.testing.assert_frame_equal(pd.read_parquet(project / "data" / "07_model_output" / "scores"), scores)
