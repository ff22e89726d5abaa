"""Run ids: one per run that keeps its results as history (score runs, evaluation copies).

A run id is the UTC start time to the second plus 8 random hex digits, as bundle ids are, so ids
sort by time and two runs started in the same second (on one machine or two) never share one.

Example:
    >>> import datetime as dt
    >>> from segad.runs import new_run_id
    >>> new_run_id(dt.datetime(2026, 12, 6, 4, 30, tzinfo=dt.UTC))[:17]
    '20261206T043000Z-'
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid

#: What `new_run_id` returns: ``YYYYmmddTHHMMSSZ-<8 hex>``.
RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


def new_run_id(now: _dt.datetime | None = None) -> str:
    """A fresh run id for a run started at `now` (default: the current UTC time)."""
    now = now or _dt.datetime.now(_dt.UTC)
    return f"{now.astimezone(_dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
