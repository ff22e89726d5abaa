"""One package per pipeline stage; each exposes `create_pipeline(detectors: list[str])`."""


def detector_inputs(detectors: list[str] | None, *datasets: str) -> dict[str, str]:
    """Node input names `<detector>__<dataset>` -> catalog names `<detector>.<dataset>`.

    Example: detector_inputs(["patchcore"], "map_index") == {"patchcore__map_index": "patchcore.map_index"}
    """
    return {f"{detector}__{dataset}": f"{detector}.{dataset}" for detector in detectors or [] for dataset in datasets}
