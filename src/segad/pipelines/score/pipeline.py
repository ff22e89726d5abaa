"""score: segad_bundle + a folder of new images (params:score.input) -> inspection + overlays + score_runs.

Each run adds its own partition of `inspection`, its own overlay folder and one row to `score_runs`
(segad.production.history); no run replaces another's.
"""

from kedro.pipeline import Pipeline, node

from segad.pipelines.score.nodes import score_folder


def create_pipeline(detectors: list[str] | None = None, **kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                score_folder,
                ["segad_bundle", "params:score", "params:device"],
                ["inspection", "inspection_overlays", "score_runs"],
                name="score_folder",
            ),
        ]
    )
