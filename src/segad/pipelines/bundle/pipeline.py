"""bundle: fitted detectors, segment maps, BRF, features -> segad_bundle + operating_point report."""

from kedro.pipeline import Pipeline, node

from segad.pipelines import detector_inputs
from segad.pipelines.bundle.nodes import build_bundle


def create_pipeline(detectors: list[str] | None = None, **kwargs) -> Pipeline:
    handles = detector_inputs(detectors, "map_index", "detector_store")
    return Pipeline([
        node(build_bundle,
             {"features": "features", "image_index": "image_index", "splits": "splits",
              "segment_maps": "segment_maps", "brf_models": "brf_models", "params": "params:bundle",
              "parameters": "parameters", **handles},
             ["segad_bundle", "operating_point"], name="build_bundle"),
    ])
