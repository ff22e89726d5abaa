"""split: image_index + params -> splits."""

from kedro.pipeline import Pipeline, node

from segad.pipelines.split.nodes import split


def create_pipeline(detectors: list[str] | None = None, **kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                split,
                [
                    "image_index",
                    "params:dataset",
                    "params:benchmark",
                    "params:seeds",
                    "params:split",
                    "params:bundle",  # the rows the later stages need are checked at the split
                    "params:classifier",
                    "params:defects",
                ],
                "splits",
                name="split",
            ),
        ]
    )
