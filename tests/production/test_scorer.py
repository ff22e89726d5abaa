"""The resident scorer: the same scores as batch scoring, from files, arrays and bytes; clear errors."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from segad.production.batch import score_images
from segad.production.bundle import load_bundle
from segad.production.errors import BundleError
from segad.production.inputs import InputMismatchError, decode_checked, load_checked
from segad.production.scorer import Scorer
from segad.production.writer import write_bundle
from segad.storage.images import ImageReadError


def _test_images(tiny_demo):
    return sorted((tiny_demo / "test").rglob("*.png"))


def test_the_scorer_scores_files_arrays_and_bytes_as_batch_scoring_does(bundle_dir, tiny_demo):
    paths = _test_images(tiny_demo)
    bundle = load_bundle(bundle_dir)
    reference = score_images(paths, bundle, bundle.load_models(), progress=False, explain="rejected").table
    scorer = Scorer.open(bundle_dir, backend="eager")
    assert set(scorer.setup_seconds) == {"bundle", "models", "convert", "warm_up"}
    table = scorer.score_paths(paths).table
    np.testing.assert_array_equal(table["score"], reference["score"])
    assert list(table["decision"]) == list(reference["decision"])
    one_by_one = [scorer.score_bytes(p.read_bytes(), name=p.name) for p in paths]
    np.testing.assert_allclose([a.score for a in one_by_one], reference["score"], rtol=0, atol=1e-9)
    assert [a.decision for a in one_by_one] == list(reference["decision"])
    assert [a.top_segment for a in one_by_one] == list(reference["top_segment"])
    assert one_by_one[0].image == paths[0].name and one_by_one[0].bundle_id == bundle.bundle_id
    assert set(one_by_one[0].maxima) == {"padim__max"}
    json.dumps([a.to_json() for a in one_by_one])  # plain JSON


def test_an_overlay_comes_back_on_request_for_a_rejected_part(bundle_dir, tiny_demo):
    import dataclasses

    scorer = Scorer.open(bundle_dir, backend="eager", warm=False)
    paths = _test_images(tiny_demo)[:4]
    scores = [scorer.score_bytes(p.read_bytes(), p.name).score for p in paths]
    op = scorer.bundle.operating_point  # threshold between the scores: some parts rejected, some accepted
    scorer.bundle.operating_point = dataclasses.replace(op, threshold=float(np.median(scores)))
    answers = [scorer.score_bytes(p.read_bytes(), p.name, overlay=True) for p in paths]
    rejected = [a for a in answers if a.decision == "reject"]
    assert rejected and len(rejected) < len(answers)
    png = rejected[0].overlay_png()
    assert png is not None
    picture = np.asarray(Image.open(io.BytesIO(png)))
    np.testing.assert_array_equal(picture, rejected[0].overlay)  # lossless PNG of the rendered overlay
    assert picture.ndim == 3 and picture.shape[1] > picture.shape[0]  # image and heat map side by side
    assert all(a.overlay is None for a in answers if a.decision == "accept")
    without = scorer.score_bytes(_test_images(tiny_demo)[0].read_bytes(), "x", overlay=False)
    assert without.overlay is None


def test_decoding_bytes_equals_reading_the_file(bundle_dir, tiny_demo):
    spec = load_bundle(bundle_dir).input_spec
    for path in _test_images(tiny_demo)[:3]:
        np.testing.assert_array_equal(decode_checked(path.read_bytes(), spec, path.name), load_checked(path, spec))


def _png(size, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_bytes_raise_errors_naming_the_image(bundle_dir, tiny_demo):
    scorer = Scorer.open(bundle_dir, backend="eager", warm=False)
    good = _test_images(tiny_demo)[0].read_bytes()
    width, height = Image.open(io.BytesIO(good)).size
    with pytest.raises(ImageReadError, match="part7: empty image"):
        scorer.score_bytes(b"", "part7")
    with pytest.raises(ImageReadError, match="part7: unreadable or truncated"):
        scorer.score_bytes(b"not an image at all", "part7")
    with pytest.raises(ImageReadError, match="part7: unreadable or truncated"):
        scorer.score_bytes(good[: len(good) // 2], "part7")
    with pytest.raises(InputMismatchError, match=f"part7: wrong size {width + 1}x{height}"):
        scorer.score_bytes(_png((width + 1, height)), "part7")
    with pytest.raises(InputMismatchError, match="part7: gray image but the bundle was trained on rgb"):
        scorer.score_bytes(_png((width, height), "L"), "part7")
    with pytest.raises(ValueError, match=r"images must be \(N, 3, 32, 32\)"):
        scorer.score_arrays(np.zeros((1, 3, 16, 16), np.float32))


def test_a_damaged_bundle_refuses_to_open(bundle_dir):
    brf = bundle_dir / "brf.ubj"
    data = bytearray(brf.read_bytes())
    data[len(data) // 2] ^= 0xFF
    brf.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="changed since writing"):
        Scorer.open(bundle_dir, backend="eager")


@pytest.mark.parametrize("backend", ["onnxruntime"])
def test_a_restarted_scorer_loads_the_converted_models_kept_beside_the_bundle(
    bundle_dir, tiny_demo, backend, monkeypatch
):
    import segad.storage.backends as backends

    path = _test_images(tiny_demo)[0]
    first = Scorer.open(bundle_dir, backend=backend)
    kept = bundle_dir.with_name(bundle_dir.name + ".converted")
    (done,) = kept.rglob("done.json")
    assert set(json.loads(done.read_text())["sha256"]) == {"model.onnx"}
    expected = first.score_bytes(path.read_bytes(), "p").score
    eager = Scorer.open(bundle_dir, backend="eager", warm=False).score_bytes(path.read_bytes(), "p").score

    conversions: list[int] = []
    original = backends._convert
    monkeypatch.setattr(backends, "_convert", lambda *a, **k: conversions.append(1) or original(*a, **k))
    restarted = Scorer.open(bundle_dir, backend=backend)  # new model objects: as a new process
    assert conversions == [] and restarted.score_bytes(path.read_bytes(), "p").score == expected
    assert expected == pytest.approx(eager, abs=1e-3 * max(1.0, abs(eager)))

    model_file = done.parent / "model.onnx"  # damaged: converted again, not trusted
    data = bytearray(model_file.read_bytes())
    data[-10] ^= 0xFF
    model_file.write_bytes(bytes(data))
    again = Scorer.open(bundle_dir, backend=backend)
    assert conversions == [1] and again.score_bytes(path.read_bytes(), "p").score == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_a_scorer_runs_detectors_on_one_backbone_as_one_kept_shared_pass(tiny_demo, tmp_path, monkeypatch):
    import segad.storage.backends as backends
    from tests.production.conftest import TINY_DETECTORS, train_tiny_bundle

    patchcore = {"model": {**TINY_DETECTORS["padim"]["model"], "coreset_sampling_ratio": 0.1, "num_neighbors": 3}}
    patchcore["model"].pop("n_features")
    detectors = {**TINY_DETECTORS, "patchcore": {**TINY_DETECTORS["padim"], **patchcore}}
    (tmp_path / "train").mkdir()
    trained = train_tiny_bundle(tiny_demo, tmp_path / "train", detectors=detectors)
    bundle_dir = write_bundle(tmp_path / "bundle", **{k: v for k, v in trained.items() if not k.startswith("_")})
    data = _test_images(tiny_demo)[0].read_bytes()
    eager = Scorer.open(bundle_dir, backend="eager", warm=False).score_bytes(data, "p")

    first = Scorer.open(bundle_dir, backend="onnxruntime")
    kept = [p.parent.parent.name for p in bundle_dir.with_name("bundle.converted").rglob("done.json")]
    assert len(kept) == 1 and kept[0].startswith("shared-")  # padim and patchcore: one converted module
    answer = first.score_bytes(data, "p")
    for column, value in eager.maxima.items():
        assert answer.maxima[column] == pytest.approx(value, rel=1e-3, abs=1e-4)
    assert answer.score == pytest.approx(eager.score, abs=1e-3 * max(1.0, abs(eager.score)))

    conversions: list[int] = []
    original = backends._convert
    monkeypatch.setattr(backends, "_convert", lambda *a, **k: conversions.append(1) or original(*a, **k))
    restarted = Scorer.open(bundle_dir, backend="onnxruntime")  # new model objects: as a new process
    assert conversions == [] and restarted.score_bytes(data, "p").score == answer.score
