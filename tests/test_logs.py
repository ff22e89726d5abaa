"""segad.logs: plain one-line records, progress lines off a terminal, the named noise dropped at its
source (and nothing else), errors with their cause first."""

from __future__ import annotations

import io
import logging
import warnings

import pytest

from segad.logs import (
    KNOWN_NOISE,
    MAX_LINE,
    PlainFormatter,
    configure_console,
    progress,
    short_traceback,
    silence_known_warnings,
)


def _capture(name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PlainFormatter())
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_plain_records_never_exceed_the_line_limit_and_keep_every_word():
    logger, stream = _capture("segad.test_logs.plain")
    words = [f"/data/run/{i:03d}/20261206T023807Z-44e419db" for i in range(30)]
    logger.info(" ".join(words))
    logger.info("x" * (MAX_LINE + 50))  # one word longer than a line is cut, not left long
    lines = stream.getvalue().splitlines()
    assert max(len(line) for line in lines) <= MAX_LINE
    assert len(lines) > 2
    text = stream.getvalue()
    assert all(word in text for word in words)  # wrapped on spaces: no id split over two lines


def test_progress_off_a_terminal_logs_every_step_and_a_closing_line():
    logger, stream = _capture("segad.test_logs.progress")
    with progress(
        total=100, desc="maps", unit="img", terminal=False, logger=logger, every_percent=25, min_seconds=0
    ) as bar:
        for _ in range(100):
            bar.update(1)
    lines = stream.getvalue().splitlines()
    assert [line.split("segad.test_logs.progress: ")[1].split(" in ")[0] for line in lines] == [
        "maps: 25/100 img (25%)",
        "maps: 50/100 img (50%)",
        "maps: 75/100 img (75%)",
        "maps: 100/100 img",
    ]
    assert all(len(line) <= MAX_LINE for line in lines)
    logger2, stream2 = _capture("segad.test_logs.progress2")
    assert list(progress(range(3), desc="it", terminal=False, logger=logger2)) == [0, 1, 2]
    assert stream2.getvalue().count("\n") == 1  # a fast loop: only the closing line (min_seconds)


def test_progress_on_a_terminal_is_tqdm():
    from tqdm.auto import tqdm

    assert isinstance(progress(range(3), desc="x", terminal=True, file=io.StringIO()), tqdm)


def test_the_named_noise_is_dropped_and_nothing_else(tmp_path):
    silence_known_warnings()
    lightning, stream = _capture("lightning.pytorch.utilities.rank_zero")
    lightning.addFilter(logging.getLogger("lightning.pytorch.utilities.rank_zero").filters[0])
    lightning.info(
        "💡 Tip: For seamless cloud logging and experiment tracking, try installing "
        "[litlogger](https://pypi.org/project/litlogger/) to enable LitLogger"
    )
    lightning.info("GPU available: False, used: False")
    timm = logging.getLogger("timm.models._builder")
    timm_stream = io.StringIO()
    timm.handlers = [logging.StreamHandler(timm_stream)]
    timm.propagate = False
    timm.warning(
        "Unexpected keys (bn2.bias, classifier.weight, conv_head.weight) found while loading pretrained weights."
    )
    timm.warning("Unexpected keys (blocks.0.weight) found while loading pretrained weights.")
    assert "Tip" not in stream.getvalue() and "GPU available" in stream.getvalue()
    assert "classifier.weight" not in timm_stream.getvalue() and "blocks.0.weight" in timm_stream.getvalue()
    assert set(KNOWN_NOISE) == {
        "lightning.pytorch.utilities.rank_zero",
        "timm.models._builder",
        "kedro.validation.type_extractor",
    }

    from kedro.config import OmegaConfigLoader
    from omegaconf import OmegaConf

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_warnings()  # after simplefilter: the named filters are in front again
        OmegaConfigLoader(conf_source=str(tmp_path))  # Kedro registers its resolvers: silenced
        OmegaConf.register_new_resolver("segad_test_resolver", lambda: 1, replace=True)  # called from here: kept
        warnings.warn("an unrelated warning", UserWarning, stacklevel=1)
    sources = [(w.filename, str(w.message)) for w in caught]
    assert any(m == "an unrelated warning" for _, m in sources)
    deprecations = [f for f, m in sources if "register_new_resolver" in m]
    assert deprecations == [__file__]  # only this test's own call, not Kedro's


def test_errors_print_their_cause_first_with_a_short_traceback():
    def inner():
        raise FileNotFoundError("data/01_raw/x.png: no such image")

    def outer():
        try:
            inner()
        except FileNotFoundError as error:
            raise RuntimeError("node build_index failed") from error

    with pytest.raises(RuntimeError) as caught:
        outer()
    text = short_traceback(caught.value)
    lines = text.splitlines()
    assert lines[0] == "Error: RuntimeError: node build_index failed"
    assert lines[1] == "  caused by FileNotFoundError: data/01_raw/x.png: no such image"
    assert "in inner" in lines[-1]
    assert len(lines) <= 6


def test_configure_console_is_plain_off_a_terminal_and_rich_on_one(monkeypatch):
    root = logging.getLogger()
    saved = list(root.handlers)
    try:
        import sys

        root.handlers = [logging.StreamHandler(sys.stdout)]
        assert configure_console(terminal=False) == "plain"
        (handler,) = [h for h in root.handlers if getattr(h, "stream", None) is sys.stdout]
        assert isinstance(handler.formatter, PlainFormatter)
        assert configure_console(terminal=True) == "rich"
        assert any(type(h).__name__ == "RichHandler" for h in root.handlers)
        assert not any(getattr(h, "stream", None) is sys.stdout for h in root.handlers)
    finally:
        root.handlers = saved


def test_the_named_import_and_kedro_warnings_are_dropped_where_they_are_issued_only():
    silence_known_warnings()
    named = [
        (
            "One or more dataset names contain '.' characters, which is not recommended",
            UserWarning,
            "kedro.pipeline.node",
        ),
        (
            "Importing from timm.models.layers is deprecated, please import via timm.layers",
            FutureWarning,
            "timm.models.layers",
        ),
        (
            "The anomalib.models.components.dinov2 package is deprecated and will be removed",
            FutureWarning,
            "anomalib.models.image.dinomaly.components.layers",
        ),
    ]
    with warnings.catch_warnings(record=True) as caught:
        silence_known_warnings()
        for message, category, module in named:
            warnings.warn_explicit(message, category, "x.py", 1, module=module, registry={})
            warnings.warn_explicit(message, category, "x.py", 1, module="segad.somewhere", registry={})
    assert [w.filename for w in caught] == ["x.py"] * 3  # each kept once: issued from another module
    kedro = logging.getLogger("kedro.validation.type_extractor")
    stream = io.StringIO()
    kedro.handlers, kedro.propagate = [logging.StreamHandler(stream)], False
    kedro.warning("Union type hint (int | list | str) is not supported for validation. Parameters with ...")
    kedro.warning("Union type hint (int | float) is not supported for validation.")
    assert "int | list | str" not in stream.getvalue() and "int | float" in stream.getvalue()
