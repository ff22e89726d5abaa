"""Each word list is defined once, in segad.vocabulary; every other use derives from it."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest

from segad import schemas, vocabulary

SRC = Path(__file__).resolve().parents[1] / "src" / "segad"

#: name in segad.vocabulary -> its values
LISTS = {
    "LAYOUTS": vocabulary.LAYOUTS,
    "BENCHMARKS": vocabulary.BENCHMARKS,
    "GOOD_SPLITS": vocabulary.GOOD_SPLITS,
    "ROLES": vocabulary.ROLES,
    "FEATURE_ROLES": vocabulary.FEATURE_ROLES,
    "TRAINING_ROLES": vocabulary.TRAINING_ROLES,
    "BACKENDS": vocabulary.BACKENDS,
    "CORESETS": vocabulary.CORESETS,
    "MASK_POLICIES": vocabulary.MASK_POLICIES,
    "MAP_LIBRARIES": vocabulary.MAP_LIBRARIES,
}


def _word_lists(source: str) -> list[tuple[int, set[str]]]:
    """(line, values) of every tuple, list or set of two or more string constants in the code
    (a ``Literal[...]`` too); docstrings and comments are not code."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 2:
            if all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                found.append((node.lineno, {e.value for e in node.elts}))  # type: ignore[attr-defined]
    return found


@pytest.mark.parametrize("name", sorted(LISTS))
def test_each_word_list_is_spelled_out_only_in_the_vocabulary(name):
    copies = [
        f"{path.relative_to(SRC)}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "vocabulary.py"
        for line, values in _word_lists(path.read_text())
        if values == set(LISTS[name])
    ]
    assert not copies, f"{name} {LISTS[name]} is spelled out again in {copies}: import it from segad.vocabulary"


def test_the_check_finds_a_copy_in_code_only():
    code = '''"""BACKENDS: ("eager", "openvino", "onnxruntime")"""\nB = Literal["eager", "openvino", "onnxruntime"]\n'''
    assert [(line, values) for line, values in _word_lists(code)] == [(2, set(vocabulary.BACKENDS))]


def test_the_subsets_are_made_of_the_whole_lists():
    assert set(vocabulary.FEATURE_ROLES) < set(vocabulary.ROLES)
    assert set(vocabulary.TRAINING_ROLES) < set(vocabulary.ROLES)
    assert get_args(vocabulary.TrainingRole) == vocabulary.TRAINING_ROLES


@pytest.mark.parametrize("table", sorted(schemas.MODELS))
def test_each_table_column_list_is_spelled_out_only_in_its_pandera_model(table):
    """Column lists and empty tables come from segad.schemas (`columns(model)`, `model.empty()`)."""
    wanted = set(schemas.columns(schemas.MODELS[table]))
    copies = [
        f"{path.relative_to(SRC)}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        if "schemas" not in path.relative_to(SRC).parts
        for line, values in _word_lists(path.read_text())
        if len(wanted) > 2 and values == wanted
    ]
    assert not copies, f"the columns of {table} are spelled out again in {copies}: use segad.schemas.columns"
