"""segmentation: image_index -> segment_maps (+ overlays to check them by eye)."""

from kedro.pipeline import Pipeline, node

from segad.pipelines.segmentation.nodes import build_segmentation, segmentation_overlays


def create_pipeline(detectors: list[str] | None = None, **kwargs) -> Pipeline:
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
        ]
    )
