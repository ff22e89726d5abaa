"""score: segad_bundle + a folder of new images (params:score.input) -> inspection + overlays."""

from kedro.pipeline import Pipeline, node

from segad.pipelines.score.nodes import score_folder


def create_pipeline(detectors: list[str] | None = None, **kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                score_folder,
                ["segad_bundle", "params:score", "params:device"],
                ["inspection", "inspection_overlays"],
                name="score_folder",
            ),
        ]
    )
