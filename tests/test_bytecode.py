"""Compiled steps are kept as hash-checked .pyc files, used only for the bytes they came from."""

from __future__ import annotations

import importlib.util
import marshal
import os
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
    """Caches are written here even when the environment sets PYTHONDONTWRITEBYTECODE."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


def run_step(folder: Path) -> object:
    """Load the folder's only step, as a run does, and call its up()."""
    (migration,) = discover(folder)
    return migration.up(None)  # type: ignore[arg-type]


def pyc_of(folder: Path, name: str = "001_step.py") -> Path:
    return Path(importlib.util.cache_from_source(str(folder / name)))


def test_a_step_is_compiled_once_into_a_pyc_that_python_itself_accepts(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({"001_step.py": STEP.format(value="a")})

    assert run_step(folder) == "a"

    pyc = pyc_of(folder).read_bytes()
    assert pyc[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(pyc[4:8], "little") == 0b11  # PEP 552: hash-based, source checked
    spec = importlib.util.spec_from_file_location("plain_import", folder / "001_step.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # Python's own import validates the same file
    assert module.up(None) == "a"


def test_the_cache_serves_only_the_bytes_it_was_compiled_from(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({"001_step.py": STEP.format(value="a")})
    run_step(folder)
    path = folder / "001_step.py"
    pyc = pyc_of(folder)
    header = pyc.read_bytes()[:16]  # names the hash of the bytes "a" was compiled from
    pyc.write_bytes(header + marshal.dumps(compile(STEP.format(value="x"), str(path), "exec")))

    assert run_step(folder) == "x"  # the cache is what runs when the bytes match

    before = path.stat()
    path.write_text(STEP.format(value="b"))  # same size, within the same second
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert run_step(folder) == "b"  # where an mtime-checked .pyc would run stale code


def test_a_moved_folder_is_compiled_again_so_errors_name_the_new_path(
    make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations({"001_step.py": "def up(conn):\n    raise RuntimeError\n"})
    with pytest.raises(RuntimeError):
        run_step(folder)
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)  # the .pyc travels along, compiled at the old path

    (migration,) = discover(moved)

    assert migration.up.__code__.co_filename == str(moved / "001_step.py")


def test_a_damaged_cache_is_compiled_again_and_replaced(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_step.py": STEP.format(value="a")})
    run_step(folder)
    pyc = pyc_of(folder)
    pyc.write_bytes(pyc.read_bytes()[:20])  # the right header, then a cut-off body

    assert run_step(folder) == "a"
    assert len(pyc.read_bytes()) > 20


def test_no_cache_is_written_when_python_is_told_not_to(
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

    with pytest.raises(MigrationSourceError, match=r"001_step\.py:2: syntax error"):
        run_step(folder)
    assert not pyc_of(folder).exists()
