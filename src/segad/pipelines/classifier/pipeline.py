"""classifier: image_index, splits, synthetic_index -> classifier_scores (+ its store and models)."""

from kedro.pipeline import Pipeline, node

from segad.pipelines.classifier.nodes import train_classifier


def create_pipeline(detectors: list[str] | None = None, **kwargs) -> Pipeline:
    return Pipeline(
        [
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
        ]
    )
