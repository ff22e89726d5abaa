"""features: image_index, splits, synthetic_index, maps of every detector -> features."""

from kedro.pipeline import Pipeline, node

from segad.pipelines import detector_inputs
from segad.pipelines.features.nodes import (
    build_segmentation,
    compute_features,
    segmentation_overlays,
    train_classifier,
)


def create_pipeline(detectors: list[str] | None = None, **kwargs) -> Pipeline:
    maps = detector_inputs(detectors, "map_index", "map_store")
    return Pipeline(
        [
            node(
                build_segmentation,
                ["image_index", "params:segmentation", "params:image_size", "params:dataset"],
                "segment_maps",
                name="build_segmentation",
            ),
            node(
                segmentation_overlays,
                ["image_index", "segment_maps", "params:segmentation"],
                "segmentation_overlays",
                name="segmentation_overlays",
            ),
            node(
                train_classifier,
                [
                    "image_index",
                    "splits",
                    "synthetic_index",
                    "params:classifier",
                    "params:image_size",
                    "params:device",
                    "classifier_store",
                    "classifier_models",
                ],
                "classifier_scores",
                name="train_classifier",
            ),
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
                    **maps,
                },
                "features",
                name="compute_features",
            ),
        ]
    )
