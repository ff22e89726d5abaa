"""Score history: every `score` run keeps its own inspection table and one row in an index of runs.

A `score` run never replaces an earlier one. Its inspection rows carry its run id
(`segad.runs.new_run_id`) and are stored as their own partition
(``data/07_model_output/inspection/run=<run id>/part-0.parquet``), its overlays in their own folder,
and the run adds one row to the index of score runs, itself one small file per run
(``data/07_model_output/score_runs/run=<run id>/part-0.parquet``). Runs, concurrent ones included,
therefore never write the same file: the index is the union of those files, and reading the
folders gives every row of every run (DuckDB: ``read_parquet('.../inspection/**/*.parquet',
hive_partitioning=true)``).

Example:
    >>> import datetime as dt, pandas as pd
    >>> from types import SimpleNamespace
    >>> from segad.production.history import score_run_record
    >>> t0 = dt.datetime(2026, 12, 6, 4, 30, tzinfo=dt.UTC)
    >>> table = pd.DataFrame({"decision": ["accept", "reject", "error"]})
    >>> bundle = SimpleNamespace(bundle_id="b1", operating_point=SimpleNamespace(threshold=0.5))
    >>> row = score_run_record("20261206T043000Z-1a2b3c4d", t0, t0 + dt.timedelta(seconds=2), bundle, "/in", table)
    >>> row[["run", "images", "accepted", "rejected", "errors", "seconds"]].to_dict("records")
    [{'run': '20261206T043000Z-1a2b3c4d', 'images': 3, 'accepted': 1, 'rejected': 1, 'errors': 1, 'seconds': 2.0}]
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
from typing import Any

import pandas as pd

from segad.production.operating_point import ACCEPT, ERROR, REJECT


def score_run_record(
    run_id: str,
    started: _dt.datetime,
    finished: _dt.datetime,
    bundle: Any,
    input_folder: str,
    table: pd.DataFrame,
) -> pd.DataFrame:
    """The one-row entry of a score run in the index of score runs (schema `segad.schemas.ScoreRuns`).

    `bundle` needs ``bundle_id`` and ``operating_point.threshold``; `table` is the run's inspection
    table (its ``decision`` column is counted).
    """
    counts = table["decision"].value_counts() if "decision" in table else pd.Series(dtype="int64")
    return pd.DataFrame(
        {
            "run": [run_id],
            "started": [started.astimezone(_dt.UTC).isoformat(timespec="milliseconds")],
            "finished": [finished.astimezone(_dt.UTC).isoformat(timespec="milliseconds")],
            "seconds": [round((finished - started).total_seconds(), 3)],
            "bundle_id": [str(bundle.bundle_id)],
            "threshold": [float(bundle.operating_point.threshold)],
            "input": [str(input_folder)],
            "images": [len(table)],
            "accepted": [int(counts.get(ACCEPT, 0))],
            "rejected": [int(counts.get(REJECT, 0))],
            "errors": [int(counts.get(ERROR, 0))],
            "host": [socket.gethostname()],
            "pid": [os.getpid()],
        }
    )
