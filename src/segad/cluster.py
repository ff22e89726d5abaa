"""Dask plumbing shared by sharded stages, with no stage in it: which client to submit to, torch's
thread count inside a task, the worker's name, and gathering futures (all cancelled when one fails).

`distributed` is imported only when a cluster is looked for; with none, callers run their tasks in
this process (`segad.detection.distribute`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any


@contextlib.contextmanager
def cluster_client() -> Iterator[Any]:
    """The Dask client to submit to: `worker_client` inside a Dask task (the thread secedes, so
    the worker can run shard tasks meanwhile), the current client in a driver, else None."""
    try:
        from distributed import get_client, get_worker, worker_client
    except ImportError:  # pragma: no cover - distributed is a dependency of the project
        yield None
        return
    try:
        get_worker()
    except ValueError:
        try:
            client = get_client()
        except ValueError:
            client = None
        yield client
        return
    with worker_client() as client:
        yield client


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` inside the block (None: unchanged)."""
    import torch

    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def gather_all(client: Any, *groups: Sequence[Any]) -> tuple[list, ...]:
    """The results of each group of futures, in order; on any failure every future is cancelled and
    the error raised."""
    everything = [future for group in groups for future in group]
    try:
        return tuple(client.gather(list(group)) for group in groups)
    except BaseException:
        client.cancel(everything)
        raise


def worker_name() -> str:
    """The Dask worker's address, ``local`` outside a worker."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"
