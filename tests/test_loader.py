"""Running a migration's module: compiled by importlib, its code kept in ``__pycache__``."""

from __future__ import annotations

import importlib.util
import os
import py_compile
import shutil
import sys
from pathlib import Path

import pytest

from conftest import MakeMigrations
from sqlmig import MigrationSourceError
from sqlmig._discovery import discover

STEP = "def up(conn):\n    return {value!r}\n"


@pytest.fixture(autouse=True)
def bytecode_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """Code is cached here even when the environment sets PYTHONDONTWRITEBYTECODE."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


def run_step(folder: Path) -> object:
    """Load the folder's only step, as a run does, and call its up()."""
    (migration,) = discover(folder)
    return migration.up(None)  # type: ignore[arg-type]


def pyc_of(folder: Path, name: str = "001_step.py") -> Path:
    return Path(importlib.util.cache_from_source(str(folder / name)))


def test_a_steps_code_is_kept_where_python_keeps_an_imported_modules(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({"001_step.py": STEP.format(value="a")})

    assert run_step(folder) == "a"

    assert pyc_of(folder).read_bytes()[:4] == importlib.util.MAGIC_NUMBER
    assert run_step(folder) == "a"  # from the cache


def test_an_edited_step_runs_its_new_code(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_step.py": STEP.format(value="a")})
    assert run_step(folder) == "a"

    make_migrations({"001_step.py": STEP.format(value="longer")})

    assert run_step(folder) == "longer"


def test_a_moved_folder_names_the_new_path_in_its_code(
    make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations({"001_step.py": "def up(conn):\n    raise RuntimeError\n"})
    with pytest.raises(RuntimeError):
        run_step(folder)
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)  # the .pyc travels along, compiled at the old path

    (migration,) = discover(moved)

    assert migration.up.__code__.co_filename == str(moved / "001_step.py")


def test_a_damaged_cache_is_compiled_again(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_step.py": STEP.format(value="a")})
    run_step(folder)
    pyc = pyc_of(folder)
    pyc.write_bytes(pyc.read_bytes()[:20])  # the right header, then a cut-off body

    assert run_step(folder) == "a"


def test_no_code_is_cached_when_python_is_told_not_to(
    make_migrations: MakeMigrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    folder = make_migrations({"001_step.py": STEP.format(value="a")})

    assert run_step(folder) == "a"
    assert not pyc_of(folder).exists()


def test_a_syntax_error_names_file_and_line_and_caches_nothing(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({"001_step.py": "def up(conn):\n    return (\n"})

    with pytest.raises(MigrationSourceError, match=r"001_step\.py:2: syntax error") as info:
        run_step(folder)
    assert info.value.line == 2 and info.value.path == str(folder / "001_step.py")
    assert not pyc_of(folder).exists()


def test_a_null_byte_is_a_source_error_naming_the_file(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({})
    (folder / "001_step.py").write_bytes(b"def up(conn):\n    pass\n\x00\n")

    with pytest.raises(MigrationSourceError, match=r"001_step\.py:.*: syntax error"):
        run_step(folder)


def test_modules_load_under_private_names_without_touching_sys_path(
    make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    source = '"""First."""\nNAME = __name__\ndef up(conn):\n    pass\n'
    one = discover(make_migrations({"001_same.py": source}, tmp_path / "one"))[0]
    two = discover(make_migrations({"001_same.py": source}, tmp_path / "two"))[0]
    path_before = list(sys.path)

    one.load()
    two.load()

    names = {m.up.__globals__["NAME"] for m in (one, two)}
    assert len(names) == 2 and all(n.startswith("sqlmig._loaded_") for n in names)
    assert sys.path == path_before
    assert not any(n in sys.modules for n in names)
    assert one.description == "First."


def test_module_errors_name_the_file_and_line(make_migrations: MakeMigrations) -> None:
    folder = make_migrations(
        {
            "001_syntax.py": "def up(conn):\n    return (\n",
            "002_imports.py": "import not_a_module_anywhere\ndef up(conn):\n    pass\n",
            "003_no_up.py": "def down(conn):\n    pass\n",
        }
    )
    syntax, imports, no_up = discover(folder)

    with pytest.raises(MigrationSourceError, match=r"001_syntax\.py:2: syntax error") as info:
        syntax.load()
    assert info.value.line == 2
    with pytest.raises(MigrationSourceError, match=r"002_imports\.py:1: .*ModuleNotFoundError"):
        imports.load()
    with pytest.raises(MigrationSourceError, match=r"003_no_up\.py: defines no up\(conn\)"):
        no_up.load()


def test_an_edit_in_the_same_second_of_the_same_size_runs_its_new_code(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({"001_step.py": STEP.format(value="a")})
    step = folder / "001_step.py"
    before = step.stat()
    assert run_step(folder) == "a"  # its code cached

    step.write_text(STEP.format(value="b"))  # as fast as a script edits it: time and size alike
    os.utime(step, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert run_step(folder) == "b"


def test_a_cache_checked_by_time_and_size_is_not_trusted(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_step.py": STEP.format(value="a")})
    step = folder / "001_step.py"
    before = step.stat()
    py_compile.compile(str(step), invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    step.write_text(STEP.format(value="b"))  # what Python's own import would take for unchanged
    os.utime(step, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert run_step(folder) == "b"
    assert run_step(folder) == "b"  # and from the cache written in its place
