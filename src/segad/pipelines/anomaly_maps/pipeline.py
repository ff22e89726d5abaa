"""The anomaly-map stage as one template pipeline, instantiated once per detector under its namespace.

Per detector ``<d>`` (namespace ``<d>``): inputs ``image_index``, ``splits``, ``synthetic_index``
(shared, not namespaced), ``params:anomaly_maps.<d>`` (its settings), ``params:image_size``,
``params:device`` (shared), the handles ``<d>.map_store`` and ``<d>.detector_store``; output
``<d>.map_index``. The ``<d>.*`` datasets come from factories in conf/base/catalog_anomaly_maps.yml.
"""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import make_anomaly_maps

SHARED_INPUTS = {"image_index", "splits", "synthetic_index"}


def _template(detector: str) -> Pipeline:
    func = update_wrapper(partial(make_anomaly_maps, detector_name=detector), make_anomaly_maps)
    return Pipeline(
        [
            node(
                func,
                inputs=[
                    "image_index",
                    "splits",
                    "synthetic_index",
                    "params:detector",
                    "params:image_size",
                    "params:device",
                    "map_store",
                    "detector_store",
                ],
                outputs="map_index",
                name="make_anomaly_maps",
            )
        ]
    )


def create_pipeline(detectors: list[str] | None = None, **kwargs) -> Pipeline:
    """One namespaced copy of the template per name in ``detectors`` (the `detectors` parameter)."""
    detectors = list(detectors or [])
    if len(set(detectors)) != len(detectors):
        raise ValueError(f"detectors lists a name twice: {detectors}")
    return sum(
        (
            pipeline(
                _template(name),
                namespace=name,
                inputs=SHARED_INPUTS,
                parameters={
                    "params:detector": f"params:anomaly_maps.{name}",
                    "params:image_size": "params:image_size",
                    "params:device": "params:device",
                },
            )
            for name in detectors
        ),
        Pipeline([]),
    )
