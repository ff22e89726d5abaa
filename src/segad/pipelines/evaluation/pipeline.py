"""evaluation: scores, BRF models, anomaly maps, segment maps -> metrics, plots, report.

All nodes live in the ``evaluation`` namespace; the shared datasets (``scores``, ``brf_models``,
``image_index``, ``splits``, ``segment_maps``, ``<detector>.map_index`` / ``.map_store``,
``metrics``, ``report``) keep their global names.
"""

from kedro.pipeline import Pipeline, node

from segad.pipelines import detector_inputs
from segad.pipelines.evaluation.nodes import (
    compute_metrics,
    keep_by_regime,
    label_test_scores,
    plot_feature_importance,
    plot_overlays,
    plot_roc_curves,
    plot_score_histograms,
    write_report,
)


def create_pipeline(detectors: list[str] | None = None, **kwargs) -> Pipeline:
    maps = detector_inputs(detectors, "map_index", "map_store")
    nodes = Pipeline(
        [
            node(
                label_test_scores,
                ["scores", "image_index", "splits", "params:dataset", "params:benchmark"],
                "test_scores",
                name="label_test_scores",
            ),
            node(compute_metrics, ["test_scores", "params:benchmark"], "metrics", name="compute_metrics"),
            node(plot_roc_curves, "test_scores", ["roc_curves", "roc_curves_files"], name="plot_roc_curves"),
            node(
                plot_score_histograms,
                ["test_scores", "params:evaluation.plots"],
                ["score_histograms", "score_histograms_files"],
                name="plot_score_histograms",
            ),
            node(
                plot_feature_importance,
                ["brf_models", "test_scores", "params:evaluation.plots", "params:dataset", "params:benchmark"],
                ["feature_importance", "feature_importance_files"],
                name="plot_feature_importance",
            ),
            node(
                plot_overlays,
                {
                    "test_scores": "test_scores",
                    "image_index": "image_index",
                    "segmentation": "segment_maps",
                    "options": "params:evaluation.plots",
                    **maps,
                },
                ["overlays", "overlays_files"],
                name="plot_overlays",
            ),
            node(
                write_report,
                {
                    "metrics": "metrics",
                    "parameters": "parameters",
                    "options": "params:evaluation.report",
                    "roc_curves": "roc_curves_files",
                    "score_histograms": "score_histograms_files",
                    "feature_importance": "feature_importance_files",
                    "overlays": "overlays_files",
                },
                "report",
                name="write_report",
            ),
            node(
                keep_by_regime,
                ["metrics", "report", "params:dataset", "params:benchmark"],
                ["metrics_by_regime", "report_by_regime"],
                name="keep_by_regime",
            ),
        ]
    )
    return Pipeline(
        nodes,
        namespace="evaluation",
        inputs={"scores", "brf_models", "image_index", "splits", "segment_maps", *maps.values()},
        outputs={"metrics", "report", "metrics_by_regime", "report_by_regime"},
        parameters={"params:dataset", "params:benchmark", "params:evaluation.plots", "params:evaluation.report"},
    )
