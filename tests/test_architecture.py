"""The rules of docs/architecture.md, checked on the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "segad"
#: The domain library: typed, Kedro-free.
DOMAIN = ("ingestion", "detection", "segments", "meta", "evaluation", "production")
DOMAIN_MODULES = ("config.py", "files.py", "images.py", "versions.py", "schemas.py", "schema_report.py")
MAX_LINES = 450


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _domain_files() -> list[Path]:
    files = [p for package in DOMAIN for p in sorted((SRC / package).rglob("*.py"))]
    return files + [SRC / name for name in DOMAIN_MODULES]


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
