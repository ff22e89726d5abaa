"""bundle: fitted detectors, segment maps, BRF, features -> segad_bundle + operating_point report.

The bundle node reads the evaluation's kept metrics (``metrics_by_regime``), so in the `segad`
run it is the last node: LATEST moves only after the run's evaluation has finished, and a run
that fails before never moves it (tests/test_pipeline_registry.py checks the order).
"""

from kedro.pipeline import Pipeline, node

from segad.pipelines import detector_inputs
from segad.pipelines.bundle.nodes import build_bundle

#: Node argument -> parameter entry; all but bundle, dataset ... brf are only recorded in the manifest.
PARAMETERS = {
    name: f"params:{name}"
    for name in (
        "bundle",
        "dataset",
        "benchmark",
        "seeds",
        "image_size",
        "detectors",
        "brf",
        "split",
        "defects",
        "anomaly_maps",
        "segmentation",
    )
} | {"feature_params": "params:features"}


def create_pipeline(detectors: list[str] | None = None, **kwargs) -> Pipeline:
    handles = detector_inputs(detectors, "map_index", "detector_store")
    return Pipeline(
        [
            node(
                build_bundle,
                {
                    "features": "features",
                    "image_index": "image_index",
                    "splits": "splits",
                    "segment_maps": "segment_maps",
                    "segmentation_selection": "segmentation_selection",
                    "brf_models": "brf_models",
                    "classifier_scores": "classifier_scores",
                    "classifier_models": "classifier_models",
                    "brf_selection": "brf_selection",
                    # the evaluation's last output: the bundle (and LATEST) comes last in a run
                    "metrics_by_regime": "metrics_by_regime",
                    "brf_store": "brf_store",
                    **PARAMETERS,
                    **handles,
                },
                ["segad_bundle", "operating_point"],
                name="build_bundle",
            ),
        ]
    )
