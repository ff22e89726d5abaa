"""Run Kedro pipelines on a `dask.distributed` cluster (Kedro's documented Dask deployment).

`DaskRunner` submits every node of a pipeline as one Dask task; a task waits on the tasks of
the nodes it depends on, so independent nodes (for example one namespaced anomaly-map pipeline
per detector) run at the same time on different workers. One node can fan out further itself:
with ``anomaly_maps.<d>.distribute.chunk_size`` set, a detector's map node submits one fit task
per model and one task per chunk of images to the same cluster from inside its task
(`segad.detection.distribute`, via ``worker_client``), so N workers share one detector's maps. Each task runs the node with Kedro's
own `Task`, so datasets are loaded and saved through the catalog exactly as with the
`SequentialRunner`; node hooks fire on the worker that runs the node.

Kedro 1.x changes from the Kedro docs' 0.19 recipe:

* `AbstractRunner.create_default_dataset` is gone: datasets that are not in the catalog become
  `MemoryDataset`s through the catalog's runtime pattern. A `MemoryDataset` lives in the copy
  of the catalog that one worker received, so a node on another worker could never read it.
  Intermediates therefore need a catch-all dataset factory that shares them through the
  scheduler: `conf/dask/catalog.yml` maps `"{name}"` to `DaskDataset`. Run with `--env dask`.
  The runner refuses (with a message saying so) to run a pipeline whose intermediates would be
  `MemoryDataset`s, instead of failing half-way on a worker.
* Runner arguments come from `--runner-params` (Kedro >= 1.0), no custom `cli.py` is needed.

Usage::

    # a LocalCluster on this machine (2 worker processes)
    kedro run --env dask --runner=segad.runner.DaskRunner --runner-params cluster_args.n_workers=2
    # an existing cluster; each detector's map node needs a worker resource `GPU`
    kedro run --env dask --runner=segad.runner.DaskRunner \
        --runner-params address=tcp://scheduler:8786,node_resources.make_anomaly_maps.GPU=1

Example (runs as is)::

    >>> import logging
    >>> from operator import neg
    >>> from distributed import Client, LocalCluster
    >>> from kedro.io import DataCatalog, MemoryDataset
    >>> from kedro.pipeline import Pipeline, node
    >>> from segad.runner import DaskDataset, DaskRunner
    >>> catalog = DataCatalog({"x": MemoryDataset(-2), "y": DaskDataset("y"), "z": DaskDataset("z")})
    >>> pipe = Pipeline([node(abs, "x", "y"), node(neg, "y", "z")])
    >>> logging.disable(logging.WARNING)  # keep the output to its result (Kedro notes dataset patterns at WARNING)
    >>> with LocalCluster(processes=False, n_workers=1, dashboard_address=None) as cluster, \\
    ...         Client(cluster) as client:
    ...     _ = DaskRunner().run(pipe, catalog)  # doctest: +ELLIPSIS
    ...     z = catalog.load("z")
    ...     catalog.release("z")
    >>> logging.disable(logging.NOTSET)
    >>> z
    -2
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from itertools import chain
from typing import TYPE_CHECKING, Any

from distributed import Client, LocalCluster, as_completed, get_client, get_worker, worker_client
from kedro.framework.hooks.manager import (
    _create_hook_manager,
    _register_hooks,
    _register_hooks_entry_points,
)
from kedro.io import AbstractDataset, MemoryDataset
from kedro.runner import AbstractRunner
from kedro.runner.task import Task

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from pluggy import PluginManager

logger = logging.getLogger(__name__)


def _in_worker() -> bool:
    try:
        get_worker()
    except ValueError:
        return False
    return True


class DaskDataset(AbstractDataset[Any, Any]):
    """An intermediate shared between Dask workers.

    `save` scatters the object to the cluster's memory and publishes the future under `name` on
    the scheduler; `load` fetches it from whichever worker holds it. Works on a worker (inside a
    task) and on the client (the runner releases datasets there). Nothing touches disk and
    nothing is pickled to files; objects travel with Dask's own serialisation.

    Args:
        name: the dataset name; the catch-all pattern passes the catalog name.
        metadata: free-form metadata (ignored by Kedro).
    """

    _EPHEMERAL = True

    def __init__(self, name: str, metadata: dict[str, Any] | None = None) -> None:
        self._name = name
        self.metadata = metadata

    def load(self) -> Any:
        with _client() as client:
            try:
                published = client.get_dataset(self._name)
            except KeyError as error:
                raise KeyError(
                    f"DaskDataset '{self._name}': nothing was published under this name on the "
                    "Dask scheduler (the node that makes it has not run or has failed)"
                ) from error
            return published.result()

    def save(self, data: Any) -> None:
        with _client() as client:
            [future] = client.scatter([data])
            client.publish_dataset(future, name=self._name, override=True)

    def _exists(self) -> bool:
        with _client() as client:
            return self._name in client.list_datasets()

    def _release(self) -> None:
        with _client() as client:
            if self._name in client.list_datasets():
                client.unpublish_dataset(self._name)

    def _describe(self) -> dict[str, Any]:
        return {"name": self._name}


class _client:
    """Context manager giving a client: `worker_client` inside a task, else the default one."""

    _context: Any = None  # worker_client()'s context manager inside a task

    def __enter__(self) -> Client:
        if _in_worker():
            self._context = worker_client()
            return self._context.__enter__()
        self._context = None
        return get_client()

    def __exit__(self, *exc: Any) -> None:
        if self._context is not None:
            self._context.__exit__(*exc)


def _run_node_on_worker(
    node: Node,
    catalog: CatalogProtocol,
    is_async: bool,
    run_id: str | None,
    package_name: str | None,
    *dependencies: Node,
) -> Node:
    """Run one node inside a Dask task; `dependencies` only order the tasks.

    A worker process started with `dask worker` has not configured the Kedro project, so the
    project settings (hooks) are loaded here first. The hook manager is built on the worker
    because it cannot be serialised.
    """
    from kedro.framework import project

    if package_name and project.PACKAGE_NAME != package_name:
        project.configure_project(package_name)
    hook_manager = _create_hook_manager()
    _register_hooks(hook_manager, project.settings.HOOKS)
    _register_hooks_entry_points(hook_manager, project.settings.DISABLE_HOOKS_FOR_PLUGINS)
    return Task(node=node, catalog=catalog, is_async=is_async, hook_manager=hook_manager, run_id=run_id).execute()


class DaskRunner(AbstractRunner):
    """Distribute the nodes of a pipeline over a `dask.distributed` cluster.

    Which cluster, in this order: `address` (a running scheduler, e.g. `tcp://host:8786`); the
    client already current in this process (tests, notebooks); otherwise a `LocalCluster` built
    from `cluster_args` and closed after the run. Dask's own configuration is honoured too:
    `DASK_SCHEDULER_ADDRESS` makes `Client()` connect there.

    Args:
        address: scheduler address of an existing cluster.
        cluster_args: keyword arguments of `distributed.LocalCluster` (n_workers,
            threads_per_worker, processes, memory_limit, ...) when no cluster is given.
        node_resources: worker resources a node needs, keyed by a node tag, a node name, or a
            node name without its namespace: `{"make_anomaly_maps": {"GPU": 1}}` runs every
            detector's map node (`patchcore.make_anomaly_maps`, ...) only on workers started
            with `--resources GPU=1`, one at a time per such worker. Leave empty when no worker
            declares resources (tasks would wait forever). A sharded map stage
            (``distribute.chunk_size``) asks for resources per shard (``distribute.resources``):
            then give the map node none, it only plans and waits.
        is_async: load and save the inputs/outputs of each node with threads.
    """

    def __init__(
        self,
        address: str | None = None,
        cluster_args: dict[str, Any] | None = None,
        node_resources: dict[str, dict[str, float]] | None = None,
        is_async: bool = False,
    ) -> None:
        super().__init__(is_async=is_async)
        self._address = address
        self._cluster_args = dict(cluster_args or {})
        self._node_resources = {str(k): dict(v) for k, v in (node_resources or {}).items()}

    def _get_executor(self, max_workers: int) -> None:
        return None  # tasks go to the Dask scheduler, not to an executor

    def _resources(self, node: Node) -> dict[str, float] | None:
        """Resources of the `node_resources` entries whose key is a tag of the node, its full
        name or its name without namespace (the max over matching entries)."""
        needed: dict[str, float] = {}
        keys = {*node.tags, node.name, node.name.rsplit(".", 1)[-1]}
        for key in keys:
            for resource, amount in self._node_resources.get(key, {}).items():
                needed[resource] = max(needed.get(resource, 0.0), float(amount))
        return needed or None

    def _connect(self) -> tuple[Client, LocalCluster | None, bool]:
        """(client, cluster we created or None, whether we own the client)."""
        if self._address:
            return Client(self._address), None, True
        try:
            return get_client(), None, False
        except ValueError:
            pass
        import dask

        if dask.config.get("scheduler-address", None):
            return Client(), None, True
        args = {"dashboard_address": None, **self._cluster_args}
        cluster = LocalCluster(**args)
        return Client(cluster), cluster, True

    @staticmethod
    def check_catalog(pipeline: Pipeline, catalog: CatalogProtocol) -> None:
        """Fail clearly if a dataset a node writes is a `MemoryDataset` (it would stay on one
        worker); parameters and pipeline inputs may be in memory, they travel with the catalog.
        """
        in_memory = sorted(
            name
            for name in pipeline.datasets() - pipeline.inputs()
            if isinstance(catalog.get(name, fallback_to_runtime_pattern=True), MemoryDataset)
        )
        if in_memory:
            raise ValueError(
                "DaskRunner: these node outputs would be MemoryDatasets, which live on one "
                f"worker only: {in_memory}. Run with `--env dask` (conf/dask/catalog.yml maps "
                "every unregistered dataset to segad.runner.DaskDataset) or register them."
            )

    def _run(
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: PluginManager | None = None,
        run_id: str | None = None,
    ) -> None:
        from kedro.framework.project import PACKAGE_NAME

        self.check_catalog(pipeline, catalog)
        client, cluster, owned = self._connect()
        self._logger.info("DaskRunner: scheduler %s", client.scheduler.address)
        try:
            self._submit_and_wait(pipeline, catalog, client, run_id, PACKAGE_NAME)
        finally:
            if owned:
                client.close()
            if cluster is not None:
                cluster.close()

    def _submit_and_wait(
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        client: Client,
        run_id: str | None,
        package_name: str | None,
    ) -> None:
        nodes = pipeline.nodes  # topologically sorted: dependencies are submitted first
        load_counts = Counter(chain.from_iterable(n.inputs for n in nodes))
        node_dependencies = pipeline.node_dependencies
        futures: dict[Node, Any] = {}
        token = uuid.uuid4().hex[:12]  # fresh task keys: a rerun never reuses old results
        for node in nodes:
            dependencies = [futures[dep] for dep in node_dependencies[node]]
            futures[node] = client.submit(
                _run_node_on_worker,
                node,
                catalog,
                self._is_async,
                run_id,
                package_name,
                *dependencies,
                key=f"kedro-node-{node.name}-{token}",
                resources=self._resources(node),
                pure=False,
            )
        node_of = {future.key: node for node, future in futures.items()}
        done: list[Node] = []
        try:
            for future in as_completed(list(futures.values())):
                future.result()  # re-raises the node's exception here
                node = node_of[future.key]
                done.append(node)
                self._logger.info("Completed node: %s", node.name)
                self._logger.info("Completed %d out of %d tasks", len(done), len(nodes))
                self._release_datasets(node, catalog, load_counts, pipeline)
        except Exception:
            client.cancel(list(futures.values()))
            self._suggest_resume_scenario(pipeline, done, catalog)
            raise
