"""The package reads as its architecture: every module on the map, none too long unexplained.

``docs/architecture.md`` names each module of ``sqlmig/`` with its concern; a
module longer than about 300 lines says in its docstring why it is long; the
modules users and the pytest plugin see reach no other object's private names.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sqlmig"
MODULES = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))
LONG = 300
#: Modules built on the public API alone.
ON_THE_PUBLIC_API = [
    "testing.py",
    "_pytest_plugin.py",
    "_pytest_workers.py",
    "_pytest_runs.py",
    "_pytest_reset.py",
    "_legacy.py",
    "_commands.py",
    "_aio.py",
]


def docstring(module: str) -> str:
    return ast.get_docstring(ast.parse((PACKAGE / module).read_text(encoding="utf-8"))) or ""


@pytest.mark.parametrize("module", MODULES)
def test_every_module_is_on_the_architecture_page(module: str) -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    folder, _, name = module.rpartition("/")
    assert (f"{folder}/" if folder else name) in page, f"docs/architecture.md: add {module}"


@pytest.mark.parametrize("module", MODULES)
def test_a_long_module_says_why_in_its_docstring(module: str) -> None:
    lines = (PACKAGE / module).read_text(encoding="utf-8").count("\n")
    if lines > LONG:
        assert re.search(r"\blong(er than \w+)? because", docstring(module)), (
            f"{module}: {lines} lines, and no reason"
        )
    assert docstring(module), f"{module} has no docstring"


@pytest.mark.parametrize("module", ON_THE_PUBLIC_API)
def test_modules_on_the_public_api_use_no_private_attribute_of_another_object(
    module: str,
) -> None:
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    reached = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert reached == []


#: The pytest plugin's own modules: they may import one another, and public sqlmig only.
PLUGIN = sorted(m for m in MODULES if m.startswith("_pytest_"))


@pytest.mark.parametrize("module", PLUGIN)
def test_the_pytest_plugin_imports_no_private_module_of_sqlmig_but_its_own(module: str) -> None:
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    reached = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.module is None:
            continue
        name = ("sqlmig." if node.level else "") + node.module
        private = name.startswith("sqlmig._") and not name.startswith("sqlmig._pytest_")
        if private:
            reached.append(f"line {node.lineno}: from {name} import ...")
    assert reached == []
