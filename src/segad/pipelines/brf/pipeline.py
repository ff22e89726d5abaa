"""brf: features (+ image_index) -> brf_models + scores + brf_selection."""

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from segad.pipelines.brf.nodes import train_brf


def create_pipeline(detectors: list[str] | None = None, **kwargs) -> Pipeline:
    fit = update_wrapper(partial(train_brf, detectors=list(detectors or [])), train_brf)
    return Pipeline(
        [
            node(
                fit,
                ["features", "image_index", "params:brf", "params:dataset", "params:seeds", "params:benchmark"],
                ["brf_models", "scores", "brf_selection"],
                name="train_brf",
            ),
        ]
    )
