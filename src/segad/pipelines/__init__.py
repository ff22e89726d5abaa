"""One package per pipeline stage; each exposes `create_pipeline(detectors: list[str])`."""
