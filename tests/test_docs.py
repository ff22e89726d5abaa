"""The docs a newcomer reads can be trusted: every path and `python -m` module they name exists,
and the reference pages state how things are now, without dates (dated measurements live in the
results journal, docs/journal.md)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

#: Docs a reader follows: the README, docs/, and the READMEs of the pipelines and environments.
DOCS = sorted(
    [
        PROJECT_ROOT / "README.md",
        *(PROJECT_ROOT / "docs").glob("*.md"),
        *(PROJECT_ROOT / "src" / "segad" / "pipelines").glob("*/README.md"),
        *(PROJECT_ROOT / "conf").glob("*/README.md"),
    ]
)
#: The dated results journal: the one page that holds dates.
JOURNAL = PROJECT_ROOT / "docs" / "journal.md"
REFERENCE = [doc for doc in DOCS if doc != JOURNAL]

#: A repository path as docs write it: `tests/...`, `src/...` and the other tracked top folders.
PATH = re.compile(r"(?<![\w./-])((?:tests|src|benchmarks|docs|conf|notebooks)/[\w./*<>-]*)")
#: A markdown link to a file of the repository (not a URL, not an anchor of the same page).
LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)\s#]+)(?:#[^)]*)?\)")
MODULE = re.compile(r"python -m ([\w.]+)")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b|\bsuperseded\b", re.IGNORECASE)


def _name(doc: Path) -> str:
    return doc.relative_to(PROJECT_ROOT).as_posix()


def named_paths(text: str) -> set[str]:
    """Repository paths named in `text`, without trailing punctuation; globs and `<placeholder>`
    parts are cut at the first such part (its folder must exist)."""
    found = set()
    for match in PATH.findall(text):
        path = match.rstrip(".,;:")
        parts = []
        for part in path.split("/"):
            if "*" in part or "<" in part or not part:
                break
            parts.append(part)
        found.add("/".join(parts))
    return found


def runnable(module: str) -> bool:
    """Whether `python -m module` runs something: a package with __main__, or a module with a main block."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return False
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:  # a package
        return importlib.util.find_spec(f"{module}.__main__") is not None
    origin = Path(spec.origin or "")
    return origin.suffix != ".py" or "__main__" in origin.read_text(encoding="utf-8")


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_path_a_doc_names_exists(doc):
    text = doc.read_text(encoding="utf-8")
    missing = sorted(p for p in named_paths(text) if not (PROJECT_ROOT / p).exists())
    missing += sorted(link for link in set(LINK.findall(text)) if not (doc.parent / link).exists() and "<" not in link)
    assert not missing, f"{_name(doc)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_python_m_module_a_doc_names_runs(doc):
    modules = set(MODULE.findall(doc.read_text(encoding="utf-8")))
    assert not [m for m in sorted(modules) if not runnable(m)], f"{_name(doc)}: `python -m` of a module without a main"


@pytest.mark.parametrize("doc", REFERENCE, ids=_name)
def test_reference_pages_hold_no_date(doc):
    dated = [
        f"{number}: {line.strip()[:100]}"
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
        if DATE.search(line)
    ]
    assert not dated, f"{_name(doc)} holds dates (move the measurement to docs/journal.md and link it): {dated}"


def test_the_checks_find_what_they_look_for():
    text = "see tests/test_nope.py, src/segad/*.py, tests/pipelines/test_<stage>.py and [x](nowhere.md); run python -m segad.schemas"
    assert named_paths(text) == {"tests/test_nope.py", "src/segad", "tests/pipelines"}
    assert LINK.findall(text) == ["nowhere.md"]
    assert not runnable("segad.schemas") and runnable("segad.schema_report") and runnable("pytest")
    assert DATE.search("measured on 2026-12-05") and not DATE.search("score.input=/line3/batch_07")
    assert slugs("## 5. Throughput (`bench_scoring.py`)\n```\n# not a heading\n```") == {"5-throughput-bench_scoringpy"}
    assert ANCHORED.findall("[a](journal.md#x-y) [b](#z) [c](https://e.org/#w)") == [("journal.md", "x-y"), ("", "z")]


def test_the_readme_is_a_front_door():
    """At most 90 lines, naming the two commands and the fast lane."""
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 90
    for command in ("make run", "make test", "make test-fast"):
        assert f"`{command}`" in text or f"{command}  " in text or f"{command} " in text


ANCHORED = re.compile(r"\]\((?!https?:)([^)\s#]*)#([^)\s]+)\)")


def slugs(markdown: str) -> set[str]:
    """GitHub's anchors of the headings of `markdown` (lower case, punctuation dropped, spaces -> '-')."""
    found, fence = set(), False
    for line in markdown.splitlines():
        fence ^= line.startswith("```")
        if not fence and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_anchor_a_doc_links_is_a_heading(doc):
    text = doc.read_text(encoding="utf-8")
    broken = [
        f"{target}#{anchor}"
        for target, anchor in ANCHORED.findall(text)
        if (doc.parent / target if target else doc).is_file()
        and anchor not in slugs((doc.parent / target if target else doc).read_text(encoding="utf-8"))
    ]
    assert not broken, f"{_name(doc)} links anchors that no heading has: {broken}"


DOTTED = re.compile(r"(?<![\w./-])(segad(?:\.\w+)+)")


def resolves(name: str) -> bool:
    """Whether a dotted `segad....` name is a module, or an attribute of one (a class or function
    defined inside a function, as the lazy anomalib subclasses are, counts when its module's source
    defines it)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        module = found
        for attr in parts[i:]:
            if not hasattr(found, attr):
                source = Path(module.__file__ or "").read_text(encoding="utf-8")
                return attr == parts[-1] and re.search(rf"(class|def) {attr}\b", source) is not None
            found = getattr(found, attr)
        return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_segad_name_a_doc_gives_exists(doc):
    names = {n.rstrip(".") for n in DOTTED.findall(doc.read_text(encoding="utf-8"))}
    assert not [n for n in sorted(names) if not resolves(n)], f"{_name(doc)} names modules or objects that moved"


def test_the_name_check_finds_moved_names():
    assert resolves("segad.storage.files.atomic_path") and resolves("segad.evaluation.metrics")
    assert not resolves("segad.production.scoring") and not resolves("segad.files.atomic_path")
