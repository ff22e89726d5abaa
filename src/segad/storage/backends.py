"""CPU inference backends of a fitted detector: eager PyTorch, OpenVINO or ONNX Runtime.

A detector's ``backend`` setting (`segad.detection.config.DetectorConfig`) picks how
`segad.detection.inference.predict_maps` runs it on CPU. ``openvino`` and ``onnxruntime`` convert
the fitted model once and cache the converted file; maps equal eager within `TOLERANCE` x the
eager map range, and every converted model is checked against eager on its first batch in each
process (`BackendMismatchError` otherwise).

Why a naive ``openvino.convert_model`` + ``compile_model(m, "CPU")`` gave wrong maps (up to 6.7
on PatchCore maps of range 2-53, ~100 on PaDiM): OpenVINO's CPU plugin defaults
``INFERENCE_PRECISION_HINT`` to bfloat16 on CPUs with AVX512-BF16/AMX (this machine: yes), and
both detectors' scores are differences of large numbers (PatchCore's ``|x|^2 + |y|^2 - 2 x.y``
nearest-neighbour distance, PaDiM's Mahalanobis form), which lose all precision in bf16's 8-bit
mantissa. segad compiles with ``INFERENCE_PRECISION_HINT: f32`` and saves with
``compress_to_fp16=False`` (``openvino.save_model`` otherwise stores float16 weights). Second
pitfall: tracing bakes the example batch size into PatchCore's reshapes and branches
(``if n <= chunk_size``), so the graph is traced at batch 1 and a batch runs image by image.

What is converted is the inference path only: the anomalib model's pre-processor (resize,
ImageNet normalisation) followed by its torch model (``model.model``), returning the raw
``anomaly_map``; exactly what the Lightning module's forward does with segad's
``post_processor=False``. Tracing the Lightning module itself fails on a loaded detector (its
``trainer`` property raises when not attached to a Trainer).

Cache: ``<cache_root>/<key>/<backend>-<versions>/`` holding ``model.onnx`` or
``model.xml``/``model.bin``, written into a temporary sibling and renamed into place
(`segad.storage.files.replace_folder`). ``key`` is a content hash of the model's tensors and image size
(`content_key`), prefixed by the detector's model_key when the caller has it (readable folder
names). Never the model_key alone: checkouts of other code share the temp folder and can fit
another model under the same model_key; a conversion cached that way was served to this code's
model (2026-12-05: PaDiM maps 1.4e-5 of their range off, inside `TOLERANCE`, so the first-batch
check let it pass). ``cache_root`` defaults to a ``segad-backends`` folder in the system temp
dir (never a user folder); the resident scorer keeps them beside its bundle
(`segad.production.scorer`). ``done.json`` records each file's SHA-256; a cached folder whose
files do not match is converted again.

Example:
    >>> from segad.storage.backends import BACKENDS
    >>> BACKENDS
    ('eager', 'openvino', 'onnxruntime')
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segad.storage.files import file_sha256, replace_folder, staging_folder
from segad.storage.images import ImageSize, SizeLike
from segad.versions import package_versions
from segad.vocabulary import BACKENDS

#: max |backend - eager| allowed, as a fraction of the eager map range (max - min) of the batch
TOLERANCE = 1e-3
#: the pinned versions segad was measured with (docs/journal.md)
PACKAGES = {"openvino": "openvino==2026.4.1", "onnxruntime": "onnxruntime==1.31.1 onnx==1.23.2"}
#: modules each backend imports (torch.onnx.export needs ``onnx`` to write the file)
MODULES = {"openvino": ("openvino",), "onnxruntime": ("onnxruntime", "onnx")}

Runner = Callable[[np.ndarray], np.ndarray]
#: what is converted, built from the model: a module of a float32 (1, 3, H, W) image batch
Wrap = Callable[[torch.nn.Module], torch.nn.Module]


class BackendError(RuntimeError):
    """A backend is unknown, its package is missing, or the model cannot be converted."""


class BackendMismatchError(BackendError):
    """A converted model's maps differ from eager by more than `TOLERANCE` x the map range."""


class MapModule(torch.nn.Module):
    """pre-processor + anomalib torch model -> raw anomaly map (B, 1, H, W): what is converted."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.pre_processor: torch.nn.Module | None = getattr(model, "pre_processor", None)
        inner = model.model
        assert isinstance(inner, torch.nn.Module), "an anomalib module holds its torch model in .model"
        self.model = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_processor is not None:
            x = self.pre_processor(x)
        anomaly_map = self.model(x).anomaly_map
        return anomaly_map if anomaly_map.ndim == 4 else anomaly_map[:, None]


def check_backend(backend: str) -> str:
    """``backend`` if known and its package is importable, else BackendError saying what to install."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; one of {list(BACKENDS)}")
    if backend != "eager":
        try:
            for module in MODULES[backend]:
                __import__(module)
        except ImportError as error:
            raise BackendError(
                f"backend {backend} needs the {backend} package, which is not installed "
                f"(pip install {PACKAGES[backend]}), or set the detector's backend: eager"
            ) from error
    return backend


def content_key(model: torch.nn.Module, image_size: SizeLike) -> str:
    """16-hex hash of the model class, its tensors and the image size (used when no model_key is given)."""
    digest = hashlib.sha256(f"{type(model).__qualname__}:{ImageSize.parse(image_size).tag()}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _versions_tag(backend: str) -> str:
    versions = package_versions(("torch", "anomalib", backend))
    return backend + "-" + hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:8]


def _convert(wrapper: torch.nn.Module, backend: str, image_size: SizeLike, folder: Path) -> None:
    """Write ``wrapper`` converted into ``folder`` (traced at batch 1 and (height, width) on CPU, float32)."""
    wrapper = wrapper.eval()
    example = torch.rand(1, 3, *ImageSize.parse(image_size).hw)
    with torch.inference_mode(False), torch.no_grad():
        if backend == "openvino":
            import openvino as ov

            converted = ov.convert_model(wrapper, example_input=example)
            ov.save_model(converted, str(folder / "model.xml"), compress_to_fp16=False)
        else:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchScript-exporter deprecation and tracer warnings
                torch.onnx.export(
                    wrapper,
                    (example,),
                    str(folder / "model.onnx"),
                    dynamo=False,
                    input_names=["input"],
                    output_names=["anomaly_map"],
                    opset_version=17,
                )


def converted_path(
    model: torch.nn.Module,
    backend: str,
    image_size: SizeLike,
    key: str | None = None,
    cache_root: str | Path | None = None,
    wrap: Wrap | None = None,
) -> Path:
    """The cached converted model file (converting once when missing).

    ``wrap`` builds the module that is converted (default `MapModule`: the detector's raw map); a
    caller converting another part of a network gives its own and a ``key`` naming that part."""
    root = Path(cache_root or Path(tempfile.gettempdir()) / "segad-backends")
    wrapper = (wrap or MapModule)(model)
    content = content_key(wrapper, image_size)  # of what is converted, not of the whole model
    folder = root / (f"{key}-{content}" if key else content) / _versions_tag(backend)
    target = folder / ("model.xml" if backend == "openvino" else "model.onnx")
    if (folder / "done.json").is_file() and target.is_file() and _intact(folder):
        return target
    staging = staging_folder(folder)
    try:
        _convert(wrapper, backend, image_size, staging)
        files = {p.name: file_sha256(p) for p in sorted(staging.iterdir()) if p.is_file()}
        (staging / "done.json").write_text(
            json.dumps({"backend": backend, "image_size": ImageSize.parse(image_size).to_json(), "sha256": files})
        )
        replace_folder(staging, folder)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, Exception) and not isinstance(error, BackendError):
            raise BackendError(f"could not convert {type(model).__name__} to {backend}: {error}") from error
        raise
    return target


def _intact(folder: Path) -> bool:
    """True when every file ``done.json`` lists has its recorded SHA-256 (a cache written before
    checksums were recorded counts as intact: the first-batch check against eager still runs)."""
    try:
        recorded = json.loads((folder / "done.json").read_text()).get("sha256", {})
        return all(file_sha256(folder / name) == digest for name, digest in recorded.items())
    except (OSError, ValueError):
        return False


def runner(path: Path, backend: str, threads: int) -> Runner:
    """A function of a float32 (B, 3, H, W) batch running the converted model image by image."""
    if backend == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(
            str(path),
            "CPU",
            {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads},
        )
        request = compiled.create_infer_request()

        def run_ov(x: np.ndarray) -> np.ndarray:
            return np.concatenate([np.array(request.infer({0: x[i : i + 1]})[0]) for i in range(len(x))])

        return run_ov
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run_ort(x: np.ndarray) -> np.ndarray:
        return np.concatenate([session.run(None, {"input": x[i : i + 1]})[0] for i in range(len(x))])

    return run_ort


class _Compiled:
    """A converted detector: maps of a float32 (B, 3, H, W) batch, checked against eager once."""

    def __init__(self, model: torch.nn.Module, backend: str, run: Runner) -> None:
        self.model_ref = weakref.ref(model)
        self.backend = backend
        self.run = run
        self.verified = False

    def __call__(self, x: np.ndarray) -> np.ndarray:
        maps = self.run(np.ascontiguousarray(x, dtype=np.float32))[:, 0]
        if not self.verified:
            model = self.model_ref()
            if model is not None:
                check_close(maps[:1], eager_maps(model, x[:1]), f"backend {self.backend}: maps", "use backend: eager")
            self.verified = True
        return maps


def eager_maps(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """float32 (B, H, W): the detector's own raw maps of a float32 (B, 3, H, W) batch (`MapModule`
    run eagerly, on the model's device): what every converted or shared path is checked against."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
        return MapModule(model).eval()(batch)[:, 0].float().cpu().numpy()


def check_close(got: np.ndarray, reference: np.ndarray, what: str, remedy: str) -> None:
    """BackendMismatchError ``"<what> differ from eager by ... ; <remedy>"`` unless
    ``max |got - reference| <= TOLERANCE x (reference max - min)``."""
    diff = float(np.abs(np.asarray(got) - reference).max())
    scale = float(reference.max() - reference.min()) or 1.0
    if not diff <= TOLERANCE * scale:
        raise BackendMismatchError(
            f"{what} differ from eager by {diff:.4g} (> {TOLERANCE} x range {scale:.4g}); {remedy}"
        )


_COMPILED: weakref.WeakKeyDictionary[torch.nn.Module, dict[str, _Compiled]] = weakref.WeakKeyDictionary()


def compiled_detector(
    model: torch.nn.Module,
    backend: str,
    image_size: SizeLike,
    key: str | None = None,
    cache_root: str | Path | None = None,
    wrap: Wrap | None = None,
) -> _Compiled:
    """The converted, compiled form of ``model`` (once per model object and backend in a process);
    ``wrap`` as in `converted_path`."""
    check_backend(backend)
    if backend == "eager":
        raise BackendError("eager runs the model itself (segad.detection.inference.predict_maps)")
    per_model = _COMPILED.setdefault(model, {})
    if backend not in per_model:
        path = converted_path(model, backend, image_size, key, cache_root, wrap)
        per_model[backend] = _Compiled(model, backend, runner(path, backend, torch.get_num_threads()))
    return per_model[backend]


def backend_info(backend: str) -> dict[str, Any]:
    """Versions of what a backend runs on (for benchmark tables)."""
    return package_versions((backend,) if backend != "eager" else ("torch",))
