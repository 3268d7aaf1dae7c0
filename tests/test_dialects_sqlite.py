"""SQLite's profile (sqlmig._dialects.sqlite): its own BEGIN, busy errors, change counter, marks."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

from backends import Backend
from conftest import MakeMigrations
from sqlmig import LockTimeout, MigrationRunner
from sqlmig._dialects import profile_named
from sqlmig._dialects.sqlite import SQLITE, RunningMark


@pytest.fixture
def engine(sqlite_backend: Backend) -> Iterator[Engine]:
    engine = sqlite_backend.engine(connect_args={"timeout": 0})
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    yield engine
    engine.dispose()


@pytest.fixture
def writer(sqlite_backend: Backend) -> Iterator[sqlite3.Connection]:
    """Another connection holding the write lock."""
    raw = sqlite3.connect(str(sqlite_backend.url.database), isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    yield raw
    raw.close()


def test_busy_is_told_by_the_error_code(engine: Engine, writer: sqlite3.Connection) -> None:
    with engine.connect() as conn, pytest.raises(OperationalError) as locked:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    with engine.connect() as conn, pytest.raises(OperationalError) as other:
        conn.exec_driver_sql("SELECT nope FROM t")

    assert locked.value.orig.sqlite_errorcode == 5  # type: ignore[union-attr]
    assert SQLITE.busy(locked.value) and SQLITE.busy(locked.value.orig)  # type: ignore[arg-type]
    assert not SQLITE.busy(other.value)
    # what SQLite gives no code of its own is known by the message the profile lists
    assert any(t in str(other.value.orig) for t in SQLITE.missing_column_texts)


def test_an_extended_busy_code_is_busy() -> None:
    error = sqlite3.OperationalError("database is locked")
    error.sqlite_errorcode = 5 | (2 << 8)  # type: ignore[attr-defined]  # SQLITE_BUSY_SNAPSHOT

    assert SQLITE.busy(error)


def test_a_step_begins_with_the_write_lock_or_times_out(
    engine: Engine, writer: sqlite3.Connection
) -> None:
    with engine.connect() as conn:
        conn.begin()
        SQLITE.begin_step(conn, immediate=False, timeout=0)  # a read: no lock needed yet
        conn.rollback()
        conn.begin()
        with pytest.raises(LockTimeout, match="SQLite database stayed locked"):
            SQLITE.begin_step(conn, immediate=True, timeout=0)


def test_a_transaction_already_begun_is_left_as_it_is(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.begin()
        conn.exec_driver_sql("BEGIN")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        SQLITE.begin_step(conn, immediate=True, timeout=0)
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1  # the same one
        conn.rollback()


def test_the_busy_timeout_is_read_and_set(engine: Engine) -> None:
    with engine.connect() as conn:
        SQLITE.set_busy_timeout(conn, 1234)
        assert SQLITE.get_busy_timeout(conn) == 1234


def test_the_change_counter_moves_with_other_connections_commits_only(
    engine: Engine, sqlite_backend: Backend
) -> None:
    with engine.connect() as conn:
        before = SQLITE.changes_seen(conn)
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        conn.commit()
        assert SQLITE.changes_seen(conn) == before  # its own commit
        other = sqlite3.connect(str(sqlite_backend.url.database))
        with other:
            other.execute("INSERT INTO t VALUES (2)")
        other.close()
        assert SQLITE.changes_seen(conn) != before


def test_the_running_mark_lies_next_to_the_file_and_is_seen_by_others(
    engine: Engine, sqlite_backend: Backend
) -> None:
    with engine.connect() as conn:
        mark = SQLITE.running_mark(conn, "migrations")
        assert SQLITE.lock_for(conn, "migrations", None) is None  # no session lock
    assert isinstance(mark, RunningMark)
    assert mark.path == str(Path(str(sqlite_backend.url.database)).resolve()) + "-sqlmig-migrations"

    assert not mark.held_elsewhere()
    with mark.hold(timeout=0):
        assert RunningMark(mark.path).held_elsewhere()
        with pytest.raises(LockTimeout, match="still in progress"):
            RunningMark(mark.path).wait(deadline=0, timeout=0)
    assert not mark.held_elsewhere()


def test_runners_reaching_the_file_through_a_link_share_its_running_mark(tmp_path: Path) -> None:
    real = tmp_path / "data" / "app.db"
    real.parent.mkdir()
    sqlite3.connect(real).close()
    link = tmp_path / "app.db"
    link.symlink_to(real)
    marks = []
    for path in (real, link):
        engine = create_engine(f"sqlite:///{path}")
        try:
            with engine.connect() as conn:
                marks.append(SQLITE.running_mark(conn, "migrations"))
        finally:
            engine.dispose()
    assert marks[0] is not None and marks[1] is not None
    assert marks[0].path == marks[1].path == f"{real.resolve()}-sqlmig-migrations"


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:mem?mode=memory&uri=true"]
)
def test_a_database_in_memory_has_no_running_mark(url: str) -> None:
    engine = create_engine(url, poolclass=StaticPool)
    try:
        with engine.connect() as conn:
            assert SQLITE.running_mark(conn, "migrations") is None
    finally:
        engine.dispose()


def test_a_uri_file_name_s_mark_lies_next_to_the_file(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///file:{tmp_path / 'app.db'}?mode=rwc&uri=true")
    try:
        with engine.connect() as conn:
            mark = SQLITE.running_mark(conn, "migrations")
    finally:
        engine.dispose()
    assert mark is not None and mark.path == f"{tmp_path.resolve() / 'app.db'}-sqlmig-migrations"


def test_a_step_outside_a_transaction_on_a_memory_uri_leaves_no_mark_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_migrations: MakeMigrations
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = make_migrations({"001_t.py": "transactional = False\n\ndef up(conn): pass\n"})
    engine = create_engine("sqlite:///file:mem?mode=memory&uri=true", poolclass=StaticPool)
    try:
        assert [m.version for m in MigrationRunner(engine, folder).upgrade()] == ["001"]
    finally:
        engine.dispose()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["migrations"]


@pytest.mark.parametrize(
    ("url", "file"),
    [
        ("sqlite:///app.db", "app.db"),
        ("sqlite:////srv/app.db", "/srv/app.db"),
        ("sqlite:///file:app.db?mode=ro&uri=true", "app.db"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("sqlite:///file:mem?mode=memory&uri=true", None),
    ],
)
def test_which_urls_name_a_file(url: str, file: str | None) -> None:
    parsed = make_url(url)

    assert SQLITE.in_memory(parsed) == (file is None)
    assert SQLITE.database_file(parsed) == (Path(file) if file else None)
    assert profile_named("postgresql").database_file(parsed) is None  # files are SQLite's


def test_a_table_name_with_a_path_separator_keeps_its_mark_next_to_the_file(
    sqlite_backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_t.py": "transactional = False\n\ndef up(conn): pass\n"})
    runner = MigrationRunner(sqlite_backend.url, folder, table="app/history")

    assert [m.version for m in runner.upgrade()] == ["001"]
    database = Path(str(sqlite_backend.url.database)).resolve()
    assert Path(f"{database}-sqlmig-app_history").exists()
