"""report: metrics + test scores + plot file lists + the bundle's operating point -> report.md.

It runs after the bundle stage, so that report.md opens with the decision: the bundle, its
threshold, the rates it is expected to make and the verdict (segad.evaluation.decision).
"""

from kedro.pipeline import Pipeline, node

from segad.pipelines.report.nodes import keep_report_by_regime, write_report
from segad.vocabulary import PLOT_SETS


def create_pipeline(detectors: list[str] | None = None, **kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                write_report,
                {
                    "metrics": "metrics",
                    "parameters": "parameters",
                    "options": "params:evaluation.report",
                    "operating_point": "operating_point",
                    "test_scores": "evaluation.test_scores",
                    **{plot: f"evaluation.{plot}_files" for plot in PLOT_SETS},
                },
                "report",
                name="write_report",
            ),
            node(
                keep_report_by_regime,
                ["report", "metrics", "metrics_by_regime", "params:dataset", "params:benchmark"],
                "report_by_regime",
                name="keep_report_by_regime",
            ),
        ]
    )
