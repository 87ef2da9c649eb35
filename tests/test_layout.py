"""The code map holds: dependencies point one way (models <- workers <- service) and modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

# a package may import itself and those to its left, never those to its right
ORDER = ("models", "workers", "service")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 100


def modules(package: str) -> list[Path]:
    return sorted((PROJECT_ROOT / package).rglob("*.py"))


def imported_packages(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
    return names


@pytest.mark.parametrize("package", ORDER)
def test_imports_point_one_way(package: str) -> None:
    forbidden = set(ORDER[ORDER.index(package) + 1 :])
    wrong = {
        str(path.relative_to(PROJECT_ROOT)): sorted(imported_packages(path) & forbidden)
        for path in modules(package)
        if imported_packages(path) & forbidden
    }
    assert not wrong, f"{package} must not import {sorted(forbidden)}: {wrong}"


@pytest.mark.parametrize("package", ORDER)
def test_modules_and_functions_stay_small(package: str) -> None:
    too_long = []
    for path in modules(package):
        text = path.read_text()
        name = str(path.relative_to(PROJECT_ROOT))
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}: {node.name}() {length} lines")
    assert not too_long, too_long
