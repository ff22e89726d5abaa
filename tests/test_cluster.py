"""segad.cluster: the Dask plumbing of sharded stages, without and with a (fake) cluster."""

from __future__ import annotations

import pytest
import torch

from segad.cluster import cluster_client, gather_all, torch_threads, worker_name


def test_without_a_cluster_there_is_no_client_and_the_worker_is_local():
    with cluster_client() as client:
        assert client is None
    assert worker_name() == "local"


def test_torch_threads_pins_the_count_inside_the_block_and_restores_it():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


class FakeClient:
    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on, self.cancelled = fail_on, []

    def gather(self, futures):
        if self.fail_on in futures:
            raise RuntimeError(f"task {self.fail_on} failed")
        return [f.upper() for f in futures]

    def cancel(self, futures):
        self.cancelled = list(futures)


def test_gather_all_returns_each_group_in_order_and_cancels_everything_on_a_failure():
    assert gather_all(FakeClient(), ["a", "b"], ["c"]) == (["A", "B"], ["C"])
    client = FakeClient(fail_on="c")
    with pytest.raises(RuntimeError, match="task c failed"):
        gather_all(client, ["a", "b"], ["c"])
    assert client.cancelled == ["a", "b", "c"]
