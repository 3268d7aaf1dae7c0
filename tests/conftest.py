"""Shared fixtures: ``backend`` runs a test on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from backends import BACKENDS, Backend, close_all, fresh_database

pytest_plugins = ["pytester"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, empty database on each backend in turn."""
    with fresh_database(request.param, tmp_path) as db:
        yield db


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Iterator[Backend]:
    """A fresh SQLite file, for behaviour that does not depend on the backend."""
    with fresh_database("sqlite", tmp_path) as db:
        yield db


MakeMigrations = Callable[..., Path]


@pytest.fixture
def make_migrations(tmp_path: Path) -> MakeMigrations:
    """Write migration files: ``make_migrations({"001_a.py": "def up(conn): ..."})``.

    Sources are dedented. Returns the folder; call again to add or edit files.
    """
    folder = tmp_path / "migrations"

    def write(files: dict[str, str], where: Path = folder) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        for name, source in files.items():
            target = where / name
            if source is None:
                target.unlink()
            else:
                before = target.stat().st_mtime_ns if target.exists() else None
                target.write_text(textwrap.dedent(source))
                if before is not None:
                    # Python's bytecode cache tells an edit by its mtime in whole seconds
                    # (and size): an edit gets a later second, as one made by hand does
                    later = max(target.stat().st_mtime_ns, before + 1_000_000_000)
                    os.utime(target, ns=(later, later))
        return where

    return write


def tables(backend: Backend) -> set[str]:
    """The table names in the backend's database, by reflection."""
    engine = backend.engine()
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def count(backend: Backend, sql: str) -> int:
    """The integer a ``SELECT count(*) ...`` returns on the backend's database."""
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def pytest_sessionfinish() -> None:
    """Wait for the test databases still being dropped, so none outlives the run."""
    close_all()
