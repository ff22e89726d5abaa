"""ingestion: params:dataset (+ params:demo) -> image_index, ingestion_problems."""

from kedro.pipeline import Pipeline, node

from segad.pipelines.ingestion.nodes import ingest


def create_pipeline(detectors: list[str] | None = None, **kwargs) -> Pipeline:
    return Pipeline(
        [
            node(ingest, ["params:dataset", "params:demo"], ["image_index", "ingestion_problems"], name="ingest"),
        ]
    )
