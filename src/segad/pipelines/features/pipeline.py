"""features: image_index, splits, synthetic_index, segment_maps, classifier_scores, maps of every detector
-> features + segmentation_selection (the out-of-fold choice of automatic segments)."""

from kedro.pipeline import Pipeline, node

from segad.pipelines import detector_inputs
from segad.pipelines.features.nodes import compute_features


def create_pipeline(detectors: list[str] | None = None, **kwargs) -> Pipeline:
    maps = detector_inputs(detectors, "map_index", "map_store")
    return Pipeline(
        [
            node(
                compute_features,
                {
                    "image_index": "image_index",
                    "splits": "splits",
                    "synthetic_index": "synthetic_index",
                    "segmentation": "segment_maps",
                    "classifier_scores": "classifier_scores",
                    "config": "params:features",
                    "dataset": "params:dataset",
                    "benchmark": "params:benchmark",
                    "brf": "params:brf",
                    "brf_store": "brf_store",
                    **maps,
                },
                ["features", "segmentation_selection"],
                name="compute_features",
            ),
        ]
    )
