"""Storage: what every stage reads and writes, and nothing of any stage.

- `files`: atomic writes and folder replacement that never deletes what the project did not write;
- `images`: reading images and the map resolution (`ImageSize`);
- `map_store`: the content-addressed store of anomaly maps (and classifier scores);
- `persistence`: model folders (``detector.json`` + ``state_dict.pt``) and image content hashes;
- `weights`: backbone weights (packaged, local file, hub) and the backbone cache;
- `backends`: CPU inference backends (OpenVINO, ONNX Runtime) and their conversion cache;
- `run_lock`: one writer per data folder (an OS lock on the data root with a record of its holder).

Every stage package may import it; it imports none of them (tests/test_architecture.py).
"""
