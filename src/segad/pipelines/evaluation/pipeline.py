"""evaluation: scores, BRF models, anomaly maps, segment maps -> metrics and plots.

All nodes live in the ``evaluation`` namespace; the shared datasets (``scores``, ``brf_models``,
``image_index``, ``splits``, ``segment_maps``, ``segmentation_selection``, ``<detector>.map_index`` / ``.map_store``,
``metrics``) keep their global names. The plot nodes also write the list of their files
(``evaluation.<plot>_files``), which the report stage (after the bundle) links in report.md.
"""

from kedro.pipeline import Pipeline, node

from segad.pipelines import detector_inputs
from segad.pipelines.evaluation.nodes import (
    chosen_segments,
    compute_metrics,
    keep_metrics_by_regime,
    label_test_scores,
    plot_feature_importance,
    plot_overlays,
    plot_roc_curves,
    plot_score_histograms,
    plot_segments,
)
from segad.vocabulary import PLOT_SETS


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
            node(
                chosen_segments,
                ["segment_maps", "segmentation_selection", "params:dataset", "params:benchmark"],
                "chosen_segment_maps",
                name="chosen_segments",
            ),
            node(
                plot_segments,
                ["image_index", "chosen_segment_maps", "params:segmentation", "params:dataset", "params:bundle"],
                ["segments", "segments_files"],
                name="plot_segments",
            ),
            node(plot_roc_curves, "test_scores", ["roc_curves", "roc_curves_files"], name="plot_roc_curves"),
            node(
                plot_score_histograms,
                ["test_scores", "params:evaluation.plots", "params:bundle"],
                ["score_histograms", "score_histograms_files"],
                name="plot_score_histograms",
            ),
            node(
                plot_feature_importance,
                [
                    "brf_models",
                    "test_scores",
                    "params:evaluation.plots",
                    "params:dataset",
                    "params:benchmark",
                    "chosen_segment_maps",
                    "params:bundle",
                ],
                ["feature_importance", "feature_importance_files"],
                name="plot_feature_importance",
            ),
            node(
                plot_overlays,
                {
                    "test_scores": "test_scores",
                    "image_index": "image_index",
                    "segmentation": "chosen_segment_maps",
                    "options": "params:evaluation.plots",
                    "bundle": "params:bundle",
                    "dataset": "params:dataset",
                    **maps,
                },
                ["overlays", "overlays_files"],
                name="plot_overlays",
            ),
            node(
                keep_metrics_by_regime,
                {
                    "metrics": "metrics",
                    "dataset": "params:dataset",
                    "benchmark": "params:benchmark",
                    **{plot: f"{plot}_files" for plot in PLOT_SETS},
                },
                "metrics_by_regime",
                name="keep_metrics_by_regime",
            ),
        ]
    )
    return Pipeline(
        nodes,
        namespace="evaluation",
        inputs={
            "scores",
            "brf_models",
            "image_index",
            "splits",
            "segment_maps",
            "segmentation_selection",
            *maps.values(),
        },
        outputs={"metrics", "metrics_by_regime"},
        parameters={
            "params:dataset",
            "params:benchmark",
            "params:evaluation.plots",
            "params:bundle",
            "params:segmentation",
        },
    )
