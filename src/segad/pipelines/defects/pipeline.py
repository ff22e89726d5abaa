"""defects: image_index, splits, segment_maps -> synthetic_index + synthetic_images."""

from kedro.pipeline import Pipeline, node

from segad.pipelines.defects.nodes import make_synthetic_defects


def create_pipeline(detectors: list[str] | None = None, **kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                make_synthetic_defects,
                ["image_index", "splits", "segment_maps", "params:defects", "params:benchmark", "params:dataset"],
                ["synthetic_index", "synthetic_images"],
                name="make_synthetic_defects",
            ),
        ]
    )
