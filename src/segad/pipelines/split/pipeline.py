"""split: image_index + params -> splits."""

from kedro.pipeline import Pipeline, node

from segad.pipelines.split.nodes import split


def create_pipeline(detectors: list[str] | None = None, **kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                split,
                ["image_index", "params:dataset", "params:benchmark", "params:seeds", "params:split"],
                "splits",
                name="split",
            ),
        ]
    )
