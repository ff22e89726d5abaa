"""Run logs that read well in a file and on a terminal (docs/operations.md, "Logs").

- `configure_console`: the console handler of the root logger writes plain one-line records
  (`PlainFormatter`: time, level, logger, message; lines wrapped at `MAX_LINE` characters on
  spaces) when its stream is not a terminal, and Kedro's rich handler only on a terminal.
- `progress`: the one progress bar of segad. On a terminal it is a tqdm bar that updates in
  place; otherwise (a log file, CI) it logs one line every `every_percent` % or every
  `every_seconds` seconds, and a closing line with the count, the time and the rate.
- `silence_known_warnings`: the harmless messages that other libraries repeat in every run, named
  one by one at their source (`KNOWN_NOISE`); nothing else is hidden.
- `short_traceback`: an error as its cause first, then the last frames; `install_excepthook`
  prints uncaught errors that way and writes the full traceback to a file.

Example:
    >>> import io, logging
    >>> stream = io.StringIO()
    >>> handler = logging.StreamHandler(stream)
    >>> handler.setFormatter(PlainFormatter("%(levelname)s %(message)s", max_line=20))
    >>> logger = logging.getLogger("segad.doctest")
    >>> logger.addHandler(handler); logger.propagate = False; logger.setLevel(logging.INFO)
    >>> logger.warning("a long message that wraps on spaces")
    >>> print(stream.getvalue().rstrip())
    WARNING a long
        message that
        wraps on spaces
    >>> with progress(range(4), desc="demo", unit="img", terminal=False, logger=logger) as items:
    ...     total = sum(1 for _ in items)
    >>> "demo: 4/4 img" in stream.getvalue()
    True
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
import traceback
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

#: Longest line the plain console format writes (longer messages wrap on spaces).
MAX_LINE = 200
#: The plain one-line format (conf/logging.yml uses the same).
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Frames `short_traceback` keeps (the innermost ones).
SHORT_FRAMES = 3

log = logging.getLogger(__name__)


class PlainFormatter(logging.Formatter):
    """`logging.Formatter` whose lines never exceed `max_line` characters: a longer line wraps on
    spaces with a four-space indent (a single word longer than that is cut), and an exception is
    written as `short_traceback` (its cause first) instead of the full traceback."""

    def __init__(self, fmt: str = PLAIN_FORMAT, datefmt: str | None = None, max_line: int = MAX_LINE) -> None:
        super().__init__(fmt, datefmt)
        self.max_line = max_line

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        _, error, _ = ei
        return short_traceback(error) if isinstance(error, BaseException) else super().formatException(ei)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return "\n".join(wrap_line(line, self.max_line) for line in text.splitlines())


def wrap_line(line: str, width: int = MAX_LINE, indent: str = "    ") -> str:
    """`line` wrapped to at most `width` characters, continuation lines indented: cut at the last
    space, else after the last ``;`` or ``,``, else before the last ``/`` within the width (a
    name is never split), a hard cut only in a run without any of them."""
    lines: list[str] = []
    rest = line
    while len(rest) > width:
        window = rest[: width + 1]
        floor = len(indent) + 1 if lines else 1
        cut = window.rfind(" ")
        if cut < floor:
            cut = max(window.rfind(";", 0, width), window.rfind(",", 0, width)) + 1
        if cut < floor:
            cut = window.rfind("/", 0, width)
        if cut < floor:
            cut = width
        lines.append(rest[:cut].rstrip())
        rest = indent + rest[cut:].lstrip()
    lines.append(rest)
    return "\n".join(lines)


def is_terminal(stream: Any) -> bool:
    """Whether `stream` is an interactive terminal."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # a closed stream
        return False


def _console_handlers(root: logging.Logger) -> list[logging.Handler]:
    return [
        h
        for h in root.handlers
        if getattr(h, "stream", None) in (sys.stdout, sys.stderr) or type(h).__name__ == "RichHandler"
    ]


def configure_console(terminal: bool | None = None) -> str:
    """Make the root logger's console output plain or rich, by where it goes; returns the kind.

    `terminal`: None = whether stdout is a terminal. Off a terminal every console handler (the
    plain one of conf/logging.yml, or Kedro's default rich one) becomes a `logging.StreamHandler`
    on stdout with `PlainFormatter`; on a terminal it becomes Kedro's `RichHandler`. Levels stay.
    """
    terminal = is_terminal(sys.stdout) if terminal is None else terminal
    root = logging.getLogger()
    handlers = _console_handlers(root) or []
    level = min((h.level for h in handlers), default=logging.INFO)
    for handler in handlers:
        root.removeHandler(handler)
    new: logging.Handler
    if terminal:
        from kedro.logging import RichHandler

        new = RichHandler(rich_tracebacks=False, markup=True)
    else:
        new = logging.StreamHandler(sys.stdout)
        new.setFormatter(PlainFormatter())
    new.setLevel(level)
    root.addHandler(new)
    logging.captureWarnings(True)  # warnings go through the same handler, one record each
    return "rich" if terminal else "plain"


# ----------------------------------------------------------------------------- known noise


class _DropMessages(logging.Filter):
    """Drop records of one logger whose message matches one of `patterns`."""

    def __init__(self, name: str, patterns: Iterable[str]) -> None:
        super().__init__(name)
        self.patterns = [re.compile(p, re.DOTALL) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.search(message) for p in self.patterns)


#: Logger -> messages dropped at that logger (each a harmless, repeated message):
#: Lightning's advertising tips (printed once per Trainer, twice with its own handler), and
#: timm's notice that a classification head was left out of a feature extractor built from full
#: ImageNet weights (anomalib builds feature-only backbones; the head is not used).
KNOWN_NOISE: dict[str, tuple[str, ...]] = {
    "lightning.pytorch.utilities.rank_zero": (
        r"^💡 Tip: For seamless cloud logging.*litlogger",
        r"^💡 Tip: For seamless cloud uploads and versioning.*litmodels",
    ),
    "timm.models._builder": (
        r"^Unexpected keys \(((conv_head|bn2|classifier|fc|head)\.[\w.]+(, )?)+\) found while loading pretrained",
    ),
    # Kedro's parameter type check skips a union-typed node input (`image_size: int | list | str`);
    # segad validates that block itself (segad.config.RunConfig)
    "kedro.validation.type_extractor": (r"^Union type hint \(int \| list \| str\) is not supported for validation",),
}
#: Python warnings ignored, each by message, category and issuing module: OmegaConf's deprecation
#: of `register_new_resolver` (called by Kedro's config loader), Lightning's notice that a
#: model without an optimizer (PatchCore, PaDiM: nothing to train) fits with none, and the three
#: commented below.
KNOWN_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    (r"register_new_resolver\(\) is deprecated", UserWarning, r"kedro\.config\.omegaconf_config"),
    (r"`LightningModule\.configure_optimizers` returned `None`", UserWarning, r"lightning\.pytorch\..*"),
    # Kedro's advice against dots in dataset names: the dots are Kedro's own namespaces
    # (`padim.map_index` of the namespaced anomaly_maps pipeline)
    (r"One or more dataset names contain '\.' characters", UserWarning, r"kedro\.pipeline\.node"),
    # import-time notices inside anomalib 2.7 (its own imports of timm.models.layers and of its
    # dinov2 components), not about segad's code
    (r"Importing from timm\.models\.layers is deprecated", FutureWarning, r"timm\.models\.layers"),
    (r"The anomalib\.models\.components\.dinov2\s+package is deprecated", FutureWarning, r"anomalib\.models\..*"),
)
#: Deprecations named by category and issuing module: SQLAlchemy 2.1's notice about the ``noload``
#: strategy that MLflow's SQLite store (data/09_tracking/mlflow.db) still uses.
KNOWN_DEPRECATIONS: tuple[tuple[str, str], ...] = (
    (r"The ``noload`` loader strategy is deprecated", r"mlflow\.store\..*"),
)


def silence_known_warnings() -> None:
    """Install the `KNOWN_NOISE` logger filters and `KNOWN_WARNINGS` filters (idempotent)."""
    for name, patterns in KNOWN_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(name, patterns))
    for message, category, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for message, module in KNOWN_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, category=DeprecationWarning, module=module)


# ----------------------------------------------------------------------------- progress


class _LogProgress:
    """A tqdm-like counter that logs a line every `every_percent` % or `every_seconds` s."""

    def __init__(
        self,
        iterable: Iterable | None,
        total: int | None,
        desc: str,
        unit: str,
        logger: logging.Logger,
        every_percent: float,
        every_seconds: float,
        min_seconds: float = 2.0,
    ) -> None:
        self.iterable = iterable
        self.min_seconds = min_seconds
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit, self.log = total, desc, unit, logger
        self.every_percent, self.every_seconds = every_percent, every_seconds
        self.n = 0
        self.start = self.last_time = time.monotonic()
        self.last_percent = 0.0
        self.closed = False

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("progress(): nothing to iterate (give an iterable)")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> _LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self, final: bool = False) -> str:
        elapsed = time.monotonic() - self.start
        rate = f", {self.n / elapsed:.1f} {self.unit}/s" if elapsed > 0 and self.n else ""
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        percent = f" ({100 * self.n / self.total:.0f}%)" if self.total and not final else ""
        return f"{self.desc}: {count} {self.unit}{percent} in {elapsed:.1f} s{rate}"

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = time.monotonic()
        percent = 100.0 * self.n / self.total if self.total else 0.0
        since = now - self.last_time
        due = since >= self.every_seconds
        if self.total and percent - self.last_percent >= self.every_percent and self.n < self.total:
            due = due or since >= self.min_seconds
        if due:
            self.log.info(self._line())
            self.last_time, self.last_percent = now, percent

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """Accepted for tqdm compatibility; not logged."""

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.log.info(self._line(final=True))


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    leave: bool = True,
    terminal: bool | None = None,
    logger: logging.Logger | None = None,
    every_percent: float = 10.0,
    every_seconds: float = 30.0,
    min_seconds: float = 2.0,
    **tqdm_args: Any,
) -> Any:
    """A progress bar over `iterable` (or updated by hand with `.update(n)`, `total` items).

    `terminal`: None = whether stderr (where tqdm draws) is a terminal. On a terminal: tqdm.
    Otherwise: a logger that writes one line every `every_percent` % (but not within `min_seconds`
    of the last line) or every `every_seconds` s, and one when closed: a fast loop logs one line. `disable`: no bar and no lines (the iterable is still wrapped).
    """
    terminal = is_terminal(sys.stderr) if terminal is None else terminal
    if terminal or disable:
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=leave, **tqdm_args)
    return _LogProgress(iterable, total, desc, unit, logger or log, every_percent, every_seconds, min_seconds)


# ----------------------------------------------------------------------------- errors


def _chain(error: BaseException) -> list[BaseException]:
    chain, seen = [error], {id(error)}
    while True:
        nxt = chain[-1].__cause__ or (None if chain[-1].__suppress_context__ else chain[-1].__context__)
        if nxt is None or id(nxt) in seen:
            return chain
        chain.append(nxt)
        seen.add(id(nxt))


def error_line(error: BaseException) -> str:
    """``Type: message`` of `error` (first line of a long message joined; `MAX_LINE` at most)."""
    text = " ".join(str(error).split()) or "(no message)"
    line = f"{type(error).__name__}: {text}"
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."


def short_traceback(error: BaseException, frames: int = SHORT_FRAMES) -> str:
    """The error's cause first (with the errors it was raised from), then its last `frames`
    frames, each frame on one line."""
    chain = _chain(error)
    lines = [f"Error: {error_line(error)}"]
    lines += [f"  caused by {error_line(inner)}" for inner in chain[1:]]
    innermost = chain[-1]
    stack = traceback.extract_tb(innermost.__traceback__)[-frames:]
    if stack:
        lines.append(f"  where (last {len(stack)} frames of {type(innermost).__name__}):")
        lines += [f"    {Path(f.filename).name}:{f.lineno} in {f.name}: {(f.line or '').strip()}" for f in stack]
    return "\n".join(wrap_line(line) for line in lines)


def install_excepthook(full_traceback_file: Path) -> None:
    """Uncaught errors print `short_traceback` on stderr and their full traceback to
    `full_traceback_file` (its path is printed); ClickExceptions and KeyboardInterrupt as before."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        import click

        if isinstance(error, click.ClickException | KeyboardInterrupt | SystemExit):
            previous(kind, error, tb)
            return
        full = "".join(traceback.format_exception(kind, error, tb))
        where = ""
        try:
            full_traceback_file.parent.mkdir(parents=True, exist_ok=True)
            full_traceback_file.write_text(full)
            where = f"  full traceback: {full_traceback_file}"
        except OSError as problem:
            with contextlib.suppress(OSError):  # no empty or cut traceback left (a full disk)
                full_traceback_file.unlink(missing_ok=True)
            where = f"  (could not write the full traceback to {full_traceback_file}: {problem})"
        sys.stderr.write(short_traceback(error) + "\n" + where + "\n")

    sys.excepthook = hook
