"""The rules of docs/architecture.md, checked on the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "segad"
#: The domain library: typed, Kedro-free.
DOMAIN = ("storage", "ingestion", "detection", "segments", "meta", "evaluation", "production")
DOMAIN_MODULES = (
    "config.py",
    "versions.py",
    "vocabulary.py",
    "runs.py",
    "columns.py",
    "schemas",  # a package
    "schema_errors.py",
    "schema_report.py",
)
#: The stages' packages (domain and Kedro adapters) and the Kedro glue modules.
STAGE_PACKAGES = ("ingestion", "detection", "segments", "meta", "evaluation", "production", "pipelines", "datasets")
GLUE = ("hooks", "schema_hooks", "tracking_hooks", "runner", "pipeline_registry", "settings", "__main__")
#: Shared by every stage, so importing no stage: the storage package and the shared modules.
SHARED = ("storage", *(name.removesuffix(".py") for name in DOMAIN_MODULES))
MAX_LINES = 450


def _imports(path: Path, with_names: bool = False) -> set[str]:
    """Every module `path` imports, at any depth (inside functions and TYPE_CHECKING blocks too);
    `with_names`: also ``<module>.<name>`` for each name of a ``from <module> import <name>``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if with_names:  # `from segad import files` imports the module segad.files
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module_name(path: Path) -> str:
    return ".".join(("segad", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")


def _import_graph() -> dict[str, set[str]]:
    """segad module -> the segad modules it imports (a package import counts as its __init__)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path, with_names=True):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported not in (name, "segad") and not name.startswith(imported + "."):
                targets.add(imported)
        graph[name] = targets
    return graph


def _domain_files() -> list[Path]:
    files = [p for package in DOMAIN for p in sorted((SRC / package).rglob("*.py"))]
    for name in DOMAIN_MODULES:
        files += sorted((SRC / name).rglob("*.py")) if (SRC / name).is_dir() else [SRC / name]
    return files


@pytest.mark.parametrize("path", _domain_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_the_domain_library_imports_no_kedro(path):
    kedro = sorted(name for name in _imports(path) if name == "kedro" or name.startswith(("kedro.", "kedro_")))
    assert not kedro, f"{path.relative_to(SRC)} imports {kedro}: Kedro belongs in pipelines/, datasets/ and hooks"


def test_no_pipeline_imports_another_pipelines_code():
    offenders = []
    for path in sorted((SRC / "pipelines").rglob("*.py")):
        own = path.relative_to(SRC / "pipelines").parts[0]
        for name in _imports(path):
            if name.startswith("segad.pipelines.") and name.split(".")[2] != own:
                offenders.append(f"{path.relative_to(SRC)} -> {name}")
    assert not offenders


def test_no_module_is_over_the_size_limit():
    long = {
        str(p.relative_to(SRC)): n
        for p in sorted(SRC.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_architecture_doc_names_every_package():
    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    for package in (*DOMAIN, "pipelines", "datasets"):
        assert f"segad.{package}" in doc, package


def test_no_import_cycles():
    graph = _import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_sees_a_cycle(tmp_path, monkeypatch):
    package = tmp_path / "segad"
    package.mkdir()
    (package / "a.py").write_text("def f():\n    from segad.b import g\n")
    (package / "b.py").write_text("from segad import a\n")
    monkeypatch.setattr(f"{__name__}.SRC", package)
    assert _import_graph() == {"segad.a": {"segad.b"}, "segad.b": {"segad.a"}}


@pytest.mark.parametrize("shared", SHARED)
def test_storage_and_the_shared_modules_import_no_stage_package(shared):
    path = SRC / shared
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    stages = tuple(f"segad.{name}" for name in (*STAGE_PACKAGES, *GLUE))
    offenders = [
        f"{p.relative_to(SRC)} -> {name}"
        for p in files
        for name in sorted(_imports(p, with_names=True))
        if name in stages or name.startswith(tuple(f"{s}." for s in stages))
    ]
    assert files and not offenders, offenders
