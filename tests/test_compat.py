"""Code written for the original bot runner switches by changing its import."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from backends import Backend
from conftest import MakeMigrations

# The bot's migrations, ported from sqlite3 cursors as the README shows.
BOT_INITIAL = '''\
    """Initial database schema."""

    def up(conn):
        """Create initial tables."""
        cursor = conn.connection.cursor()
        cursor.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL)")
        cursor.execute("CREATE TABLE settings (k VARCHAR(100) PRIMARY KEY, v TEXT)")


    def down(conn):
        """Drop all tables."""
        conn.exec_driver_sql("DROP TABLE users")
        conn.exec_driver_sql("DROP TABLE settings")
    '''
BOT_SEED = '''\
    """Seed initial data."""
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("INSERT INTO settings (k, v) VALUES (:k, :v)"),
                     [{"k": "app_name", "v": "My Bot"}, {"k": "version", "v": "1.0.0"}])


    def down(conn):
        conn.execute(text("DELETE FROM settings"))
    '''


def test_the_bot_runner_calls_work_unchanged(
    backend: Backend,
    make_migrations: MakeMigrations,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sqlmig import MigrationRunner  # was: from shared.migrations import MigrationRunner

    folder = make_migrations({"001_initial_schema.py": BOT_INITIAL, "002_seed_data.py": BOT_SEED})
    runner = MigrationRunner(db_path=backend.url_string, migrations_dir=str(folder))

    runner.run_pending_migrations(verbose=True)
    status = runner.get_status()
    runner.rollback_last(verbose=True)
    runner.run_pending_migrations(verbose=True)
    runner.run_pending_migrations(verbose=True)

    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "Applied migration 001_initial_schema",
        "Applied migration 002_seed_data",
        "Undid migration 002_seed_data",
        "Applied migration 002_seed_data",
        "No pending migrations",
    ]
    assert status["total_applied"] == 2 and status["total_pending"] == 0
    assert [a["version"] for a in status["applied"]] == ["001", "002"]
    assert set(status["applied"][0]) == {"version", "name", "applied_at"}
    engine = backend.engine()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM settings")).scalar() == 2
    engine.dispose()


def test_a_plain_file_path_is_a_sqlite_database(
    tmp_path: Path, make_migrations: MakeMigrations
) -> None:
    from sqlmig import MigrationRunner

    folder = make_migrations({"001_initial_schema.py": BOT_INITIAL})
    runner = MigrationRunner(db_path=str(tmp_path / "bot.db"), migrations_dir=folder)

    assert runner.get_status()["pending"] == [{"version": "001", "name": "initial_schema"}]
    runner.run_pending_migrations()
    assert runner.get_status()["total_applied"] == 1


def test_a_runner_without_database_or_migrations_says_how_to_build_one() -> None:
    from sqlmig import MigrationRunner, UsageError

    with pytest.raises(UsageError, match=r"MigrationRunner\('sqlite:///app.db', 'migrations'\)"):
        MigrationRunner(db_path="x.db")


def test_verbose_prints_alongside_the_runners_own_on_step(
    sqlite_backend: Backend,
    make_migrations: MakeMigrations,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sqlmig import MigrationRunner

    folder = make_migrations({"001_initial_schema.py": BOT_INITIAL})
    seen: list[str] = []
    runner = MigrationRunner(
        db_path=sqlite_backend.url_string,
        migrations_dir=folder,
        on_step=lambda m, phase, s: seen.append(f"{phase} {m.version}"),
    )

    assert [m.version for m in runner.run_pending_migrations(verbose=True)] == ["001"]
    undone = runner.rollback_last(verbose=True)
    assert undone is not None and undone.version == "001"
    assert runner.rollback_last(verbose=True) is None

    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "Applied migration 001_initial_schema",
        "Undid migration 001_initial_schema",
        "No migration to roll back",
    ]
    assert all(line.endswith(" ms)") for line in lines[:2])
    assert seen == ["start 001", "done 001", "start 001", "done 001"]


class _GonePipe(io.StringIO):
    """Standard output whose reader has gone away."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_verbose_with_its_reader_gone_still_applies_every_step(
    backend: Backend, make_migrations: MakeMigrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlmig import MigrationRunner

    folder = make_migrations({"001_initial_schema.py": BOT_INITIAL, "002_seed_data.py": BOT_SEED})
    runner = MigrationRunner(db_path=backend.url_string, migrations_dir=str(folder))
    monkeypatch.setattr(sys, "stdout", _GonePipe())

    assert [m.version for m in runner.run_pending_migrations(verbose=True)] == ["001", "002"]
    assert runner.run_pending_migrations(verbose=True) == []
    assert runner.rollback_last(verbose=True) is not None
    monkeypatch.setattr(sys, "stdout", None)  # started with its output closed
    assert [m.version for m in runner.run_pending_migrations(verbose=True)] == ["002"]
