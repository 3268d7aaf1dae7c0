"""The manual: its examples run, and it documents every command and public name.

Each page of ``docs/`` (and the README) runs in an empty temporary folder of
its own. Its fenced blocks are taken in order:

- a ``python`` or ``toml`` block whose first line is ``# file: PATH`` (a
  ``sql`` block: ``-- file: PATH``) is written to ``PATH`` (without that
  line): a migration, a ``pyproject.toml``, a test module;
- any other ``python`` block runs, all of a page's blocks in one namespace;
- any other ``toml`` block must parse;
- a block whose first line starts with ``# not run`` is left out (use it
  sparingly, for what needs a server the suite does not have).

A page that writes test modules (``tests/test_*.py``) then runs pytest on them.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

import sqlmig
import sqlmig._errors
import sqlmig._pytest_plugin
import sqlmig.config
import sqlmig.ops
import sqlmig.testing
from sqlmig._cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(
    r"^```(?P<lang>[\w-]+)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL
)
FILE = re.compile(r"(?:#|--)\s*file:\s*(?P<path>\S+)\s*")
PUBLIC_MODULES = {
    "sqlmig": sqlmig,
    "sqlmig.testing": sqlmig.testing,
    "sqlmig.ops": sqlmig.ops,
    "sqlmig.config": sqlmig.config,
}


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    line: int  # of the block's first body line in its page

    @property
    def first(self) -> str:
        return self.body.split("\n", 1)[0].strip()

    @property
    def file(self) -> str | None:
        match = FILE.fullmatch(self.first)
        return match["path"] if match else None

    @property
    def rest(self) -> str:
        return self.body.split("\n", 1)[1] if "\n" in self.body else ""


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    return [
        Block(m["lang"], m["body"], text.count("\n", 0, m.start("body")) + 1)
        for m in FENCE.finditer(text)
    ]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty folder as the current directory, no SQLMIG_* setting inherited."""
    for name in list(os.environ):
        if name.startswith("SQLMIG_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("page", [*PAGES, README], ids=lambda p: p.name)
def test_the_examples_of_each_page_run(page: Path, clean_env: Path) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    wrote_tests = False
    for block in blocks(page):
        if block.lang not in ("python", "toml", "sql") or block.first.startswith("# not run"):
            continue
        if block.lang == "sql" and block.file is None:  # SQL shown, not a file to write
            continue
        where = f"{page.relative_to(ROOT)}:{block.line}"
        if block.file is not None:
            target = clean_env / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.rest, encoding="utf-8")
            wrote_tests |= target.name.startswith("test_") and target.suffix == ".py"
            if block.lang == "toml":
                tomllib.loads(block.rest)
        elif block.lang == "toml":
            try:
                tomllib.loads(block.body)
            except tomllib.TOMLDecodeError as exc:
                pytest.fail(f"{where}: not valid TOML: {exc}")
        else:
            # Padded so that a traceback gives the line in the page.
            code = compile("\n" * (block.line - 1) + block.body, str(page), "exec")
            exec(code, namespace)
    if wrote_tests:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SQLMIG_")}
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
            cwd=clean_env,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, f"the tests of {page.name} failed:\n{run.stdout}{run.stderr}"


def test_the_testing_page_counts_its_tests_right(clean_env: Path) -> None:
    text = " ".join((DOCS / "testing.md").read_text(encoding="utf-8").split())
    written = [b for b in blocks(DOCS / "testing.md") if (b.file or "").startswith("tests/test_")]
    own = sum(len(re.findall(r"^def test_", b.rest, re.MULTILINE)) for b in written)
    assert "runs eight tests: `sqlmig_stairway`, these six, `sqlmig_history`" in text
    assert own == 6


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_command_has_its_section_in_the_cli_reference() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## `sqlmig ([\w-]+)", text, re.MULTILINE)
    missing = sorted(set(commands()) - set(headings))
    assert not missing, f"docs/cli.md has no '## `sqlmig NAME ...`' section for {missing}"


def test_every_option_is_in_the_cli_reference() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    options = {o for a in build_parser()._actions for o in a.option_strings if o != "-h"}
    for parser in commands().values():
        options |= {o for a in parser._actions for o in a.option_strings if o != "-h"}
    options.discard("--help")
    missing = sorted(o for o in options if f"`{o}" not in text and f" {o}" not in text)
    assert not missing, f"docs/cli.md does not mention {missing}"


@pytest.mark.parametrize("module", sorted(PUBLIC_MODULES))
def test_every_public_name_is_in_the_api_reference(module: str) -> None:
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    names = PUBLIC_MODULES[module].__all__
    missing = [n for n in names if not re.search(rf"\b{re.escape(module)}\.{n}\b", api)]
    assert not missing, f"docs/api.md does not document {module}: {missing}"


@pytest.mark.parametrize("module", ["sqlmig", "sqlmig.testing"])
def test_every_public_name_is_explained_in_the_manual(module: str) -> None:
    pages = "\n".join(p.read_text(encoding="utf-8") for p in PAGES if p.name != "api.md")
    names = PUBLIC_MODULES[module].__all__
    missing = [n for n in names if not re.search(rf"\b{n}\b", pages)]
    assert not missing, f"no page but the API reference mentions {missing}"


def test_every_fixture_is_in_the_testing_page() -> None:
    text = (DOCS / "testing.md").read_text(encoding="utf-8")
    missing = [f for f in sqlmig._pytest_plugin.__all__ if f"`{f}`" not in text]
    assert not missing, f"docs/testing.md does not describe {missing}"


def test_every_error_is_in_the_error_reference() -> None:
    text = (DOCS / "errors.md").read_text(encoding="utf-8")
    classes = [
        c
        for c in vars(sqlmig._errors).values()
        if isinstance(c, type) and issubclass(c, sqlmig._errors.SqlmigError)
    ]
    missing = [c.__name__ for c in classes if f"| `{c.__name__}` |" not in text]
    assert not missing, f"docs/errors.md has no table row for {missing}"
    not_in_tree = [c.__name__ for c in classes if not re.search(rf"── {c.__name__}\b", text)]
    assert not_in_tree == ["SqlmigError"], f"docs/errors.md's tree lacks {not_in_tree}"


def test_the_manual_speaks_for_itself() -> None:
    """No reference to a document outside the repository."""
    for path in [*PAGES, README, ROOT / "CHANGELOG.md"]:
        text = path.read_text(encoding="utf-8")
        assert "SPEC" not in text and "§" not in text, f"{path.name} cites an outside document"


def test_the_readme_is_a_front_page_that_links_into_the_manual() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    links = re.findall(r"\]\((docs/[^)#]+)", text)
    assert links, "the README links into docs/"
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing, f"README links to missing pages: {missing}"


def test_ci_runs_the_readme_test_command_and_builds_the_manual() -> None:
    readme = README.read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python -m pytest" in readme and "\npython -m pytest\n" in ci
    assert "\npython -m pytest -m bench\n" in ci  # the benchmark smoke tests, left out above
    assert "sphinx-build -q -W -b html docs" in ci
