"""Every bad input raises its own SqlmigError, says what to do, and changes nothing."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from backends import Backend
from conftest import MakeMigrations, tables
from sqlmig import (
    ChecksumMismatch,
    ConfigError,
    DatabaseUnavailable,
    MigrationRunner,
    MigrationSourceError,
    MissingMigration,
    SqlmigError,
)
from sqlmig import _errors as errors
from sqlmig._cli import EXIT_CODES, exit_code

CREATE = (
    "from sqlalchemy import text\ndef up(conn):\n"
    "    conn.execute(text('CREATE TABLE {} (id INTEGER)'))\n"
)
GOOD = CREATE.format("t1")
NEXT = CREATE.format("t2")
UNREACHABLE = "postgresql+psycopg://app:s3cret-pw@127.0.0.1:1/app"


def one_line(error: BaseException) -> str:
    message = str(error)
    assert message and "\n" not in message
    assert "s3cret-pw" not in message
    return message


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"001_ok.py": GOOD, "add-users.py": GOOD}, "file name does not match"),
        ({"001_ok.py": GOOD, "1_again.py": GOOD}, "same version 1"),
    ],
)
def test_name_problems_are_found_before_connecting(
    make_migrations: MakeMigrations, files: dict[str, str], expected: str
) -> None:
    runner = MigrationRunner(UNREACHABLE, make_migrations(files))

    with pytest.raises(MigrationSourceError, match=expected) as info:
        runner.upgrade()
    assert "rename" in one_line(info.value) or "renumber" in one_line(info.value)


def test_a_missing_folder_is_found_before_connecting(tmp_path: object) -> None:
    with pytest.raises(MigrationSourceError, match="does not exist") as info:
        MigrationRunner(UNREACHABLE, f"{tmp_path}/nope").status()
    assert "create it" in one_line(info.value)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def up(conn)\n    pass\n", r"002_broken\.py:1: syntax error"),
        ("import no_such_module_here\ndef up(conn):\n    pass\n", r"002_broken\.py:1: .*import"),
        ("x = 1\n", r"002_broken\.py: defines no up"),
        (
            "raise ValueError('bad config')\ndef up(conn):\n    pass\n",
            r"002_broken\.py:1: .*bad config",
        ),
    ],
)
def test_a_broken_pending_module_stops_the_run_before_any_write(
    backend: Backend, make_migrations: MakeMigrations, source: str, expected: str
) -> None:
    runner = MigrationRunner(
        backend.url, make_migrations({"001_ok.py": GOOD, "002_broken.py": source})
    )

    with pytest.raises(MigrationSourceError, match=expected) as info:
        runner.upgrade()

    one_line(info.value)
    assert info.value.version == "002"
    assert tables(backend) == set()  # not even the history table


def test_verify_reports_a_syntax_error_in_a_pending_file(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_ok.py": GOOD})
    runner = MigrationRunner(backend.url, folder)
    runner.upgrade()
    make_migrations({"002_broken.py": "def up(conn)\n"})

    with pytest.raises(MigrationSourceError, match=r"002_broken\.py:1: syntax error"):
        runner.verify()
    assert runner.status().total_applied == 1


def test_an_edited_applied_file_stops_everything(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_ok.py": GOOD})
    runner = MigrationRunner(backend.url, folder)
    runner.upgrade()
    make_migrations({"001_ok.py": GOOD + "# edited\n", "002_next.py": NEXT})

    with pytest.raises(ChecksumMismatch, match="001 was edited") as info:
        runner.upgrade()

    assert "repair()" in one_line(info.value) and info.value.versions == ["001"]
    assert "t2" not in tables(backend)
    with pytest.raises(ChecksumMismatch):
        runner.verify()
    assert [r.version for r in runner.status().changed] == ["001"]
    assert runner.repair() == ["accepted the edited file of 001"]
    assert [m.version for m in runner.upgrade()] == ["002"]


def test_a_deleted_applied_file_stops_everything(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_ok.py": GOOD, "002_next.py": NEXT})
    runner = MigrationRunner(backend.url, folder)
    runner.upgrade("001")
    (folder / "001_ok.py").unlink()

    with pytest.raises(MissingMigration, match="001 has no file") as info:
        runner.upgrade()

    assert "restore it" in one_line(info.value)
    assert "t2" not in tables(backend)
    assert [r.version for r in runner.status().missing] == ["001"]
    assert runner.repair() == ["removed 001, whose file is gone"]
    assert [m.version for m in runner.upgrade()] == ["002"]


@pytest.mark.parametrize(
    "url",
    [
        UNREACHABLE,
        "mysql+pymysql://app:s3cret-pw@127.0.0.1:1/app",
        "postgresql+psycopg://no_such_role:s3cret-pw@127.0.0.1:5432/postgres",
        "mysql+pymysql://root:s3cret-pw@127.0.0.1:3306/test",
    ],
    ids=["pg-refused", "mysql-refused", "pg-unknown-role", "mysql-wrong-password"],
)
def test_an_unreachable_or_refusing_server_is_database_unavailable(
    make_migrations: MakeMigrations, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    runner = MigrationRunner(url, make_migrations({"001_ok.py": GOOD}))

    with caplog.at_level(logging.DEBUG):
        with pytest.raises(DatabaseUnavailable, match="cannot connect to") as info:
            runner.upgrade()

    message = one_line(info.value)
    assert "***" in message and "check that the server is up" in message
    assert "s3cret-pw" not in caplog.text and "s3cret-pw" not in info.value.url
    assert exit_code(info.value) == 5


def test_a_malformed_url_is_a_config_error(make_migrations: MakeMigrations) -> None:
    with pytest.raises(ConfigError, match="not a database URL"):
        MigrationRunner("postgresql+psycopg://app:s3cret-pw@:not-a-port/x", "m")
    with pytest.raises(ConfigError, match="check the URL's scheme") as info:
        MigrationRunner("nosuchdb://u:s3cret-pw@h/x", make_migrations({"001_ok.py": GOOD})).status()
    one_line(info.value)


#: What each error class needs besides its message.
ARGS: dict[str, dict[str, Any]] = {
    "DatabaseUnavailable": {"url": "u"},
    "DatabaseError": {"action": "a", "url": "u"},
    "PermissionDenied": {"action": "a", "url": "u"},
    "MigrationFailed": {"version": "001", "path": None, "line": None},
    "IrreversibleMigration": {"versions": ["001"]},
    "ChecksumMismatch": {"versions": ["001"]},
    "MissingMigration": {"versions": ["001"]},
    "OutOfOrderMigration": {"versions": ["001"]},
    "DirtyDatabase": {"versions": ["001"]},
    "LockTimeout": {"timeout": 1.0},
    "WorkerDied": {"version": "002", "exitcode": -9},
}


def test_every_error_derives_from_the_root_and_has_its_exit_code_on_the_command_line() -> None:
    codes = {
        "MigrationSourceError": 2,
        "ConfigError": 2,
        "UsageError": 2,
        "DatabaseUnavailable": 5,
        "DatabaseError": 5,
        "PermissionDenied": 5,
        "MigrationFailed": 1,
        "IrreversibleMigration": 1,
        "ChecksumMismatch": 3,
        "MissingMigration": 3,
        "OutOfOrderMigration": 3,
        "DirtyDatabase": 3,
        "LockTimeout": 4,
    }
    for name, code in codes.items():
        cls = getattr(errors, name)
        assert issubclass(cls, SqlmigError), name
        assert exit_code(cls("x", **ARGS.get(name, {}))) == code, name
        assert not hasattr(cls, "exit_code"), name  # the command line maps them, not the library
    kinds = [kind for kind, _ in EXIT_CODES]
    for i, kind in enumerate(kinds):  # most specific first: no class after one of its bases
        assert not any(issubclass(kind, earlier) for earlier in kinds[:i]), kind
    assert exit_code(SqlmigError("x")) == 1


def test_every_error_pickles_to_the_same_class_message_and_attributes() -> None:
    """A worker process (``processes=True``) sends its target's error to the caller pickled."""
    import inspect
    import pickle

    every = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, SqlmigError) and cls.__module__ == errors.__name__
    ]
    assert len(every) == len(errors.__all__)
    extra = {
        "SqlFileError": {"path": "m/001.sql", "line": 3, "version": "001"},
        "SchemaDrift": {"differences": ["table t: missing"]},
        "HistoryMismatch": {"versions": ["001", "002"]},
        "ConfigError": {"path": "pyproject.toml", "key": "tool.sqlmig.url"},
    }
    for cls in every:
        error = cls(
            "what to do: \u00e9 this",
            **{**ARGS.get(cls.__name__, {}), **extra.get(cls.__name__, {})},
        )
        error.__cause__ = ValueError("the driver's")

        copy = pickle.loads(pickle.dumps(error))

        assert type(copy) is cls
        assert str(copy) == copy.message == error.message == "what to do: \u00e9 this"
        assert copy.args == error.args
        assert vars(copy) == vars(error), cls.__name__
