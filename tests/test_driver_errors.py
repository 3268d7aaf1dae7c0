"""No driver error escapes raw from a runner call: sqlmig's own statements fail as sqlmig errors.

A read-only user, a missing schema, a table of the history's name that is
something else, a history row whose version is not a number, the lock query
failing: each is a ``SqlmigError`` whose one-line message names what sqlmig was
doing and the fix, with the driver's error chained, and the database is left
as it was. The command line prints that line and exits with the error's code.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import URL, create_engine, text
from sqlalchemy.exc import DBAPIError

from backends import Backend
from conftest import MakeMigrations, count, tables
from sqlmig import (
    ConfigError,
    DatabaseError,
    DirtyDatabase,
    MigrationRunner,
    PermissionDenied,
    SqlmigError,
)
from sqlmig._cli import exit_code, main
from sqlmig._dialects.mysql import NamedLock
from sqlmig._dialects.postgresql import AdvisoryLock
from sqlmig._driver_errors import describe

FIRST = """\
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY)"))

    def down(conn):
        conn.execute(text("DROP TABLE users"))
    """
# a step that writes nothing, so only sqlmig's own statements can be refused
SECOND = """\
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("SELECT 1"))

    def down(conn):
        pass
    """


def one_line(error: BaseException) -> str:
    message = str(error)
    assert message and "\n" not in message
    return message


def run_cli(url: URL | str, folder: Path, *args: str) -> int:
    """``sqlmig --url URL --dir FOLDER ARGS``, in process; the captured output is kept."""
    rendered = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    return main(["--url", rendered, "--dir", str(folder), *args])


def cli_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line the command printed on stderr."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sqlmig: error: ") and "unexpected" not in lines[0]
    return lines[0]


def history(backend: Backend) -> list[tuple[str, bool]]:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version, success FROM migrations ORDER BY version"))
            return [(str(v), bool(s)) for v, s in rows]
    finally:
        engine.dispose()


def execute(backend: Backend, *statements: str) -> None:
    engine = backend.engine()
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def insert_by_hand(backend: Backend, version: str) -> None:
    """A history row someone wrote by hand."""
    engine = backend.engine()
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO migrations (version, name, applied_at, success) "
                    "VALUES (:v, 'by_hand', CURRENT_TIMESTAMP, :s)"
                ),
                {"v": version, "s": True},
            )
    finally:
        engine.dispose()


@contextmanager
def read_only_user(backend: Backend) -> Iterator[URL]:
    """A URL of the backend's database for a user who may read and nothing else.

    PostgreSQL: a role with CONNECT (and SELECT on the tables there now);
    MariaDB: a user with SELECT only; SQLite: the file opened read-only.
    """
    if backend.name == "sqlite":
        execute(backend, "SELECT 1")  # the file must exist to be opened read-only
        yield URL.create(
            "sqlite", database=f"file:{backend.url.database}", query={"mode": "ro", "uri": "true"}
        )
        return
    user = f"ro_{uuid.uuid4().hex[:10]}"
    database = backend.url.database
    admin = create_engine(backend.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if backend.name == "postgresql":
            conn.execute(text(f"CREATE ROLE {user} LOGIN"))
            conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}"))
        else:
            conn.execute(text(f"CREATE USER '{user}'@'%'"))
            conn.execute(text(f"GRANT SELECT ON {database}.* TO '{user}'@'%'"))
    try:
        yield backend.url.set(username=user, password=None)
    finally:
        with admin.connect() as conn:
            if backend.name == "postgresql":
                conn.execute(text(f"DROP OWNED BY {user}"))
                conn.execute(text(f"DROP ROLE {user}"))
            else:
                conn.execute(text(f"DROP USER '{user}'@'%'"))
        admin.dispose()


# -- a user who may not write ---------------------------------------------------------


def test_a_read_only_user_cannot_create_the_history_table(
    backend: Backend, make_migrations: MakeMigrations, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_migrations({"001_users.py": FIRST})
    with read_only_user(backend) as url:
        with pytest.raises(PermissionDenied) as info:
            MigrationRunner(url, folder).upgrade()
        code = run_cli(url, folder, "upgrade")

    message = one_line(info.value)
    assert "creating the history table migrations" in message
    assert "create tables" in message or "read-only" in message
    assert isinstance(info.value.__cause__, DBAPIError)
    assert info.value.action.startswith("creating the history table")
    assert code == exit_code(info.value) == 5
    assert "creating the history table" in cli_error(capsys)
    assert tables(backend) == set()


def test_a_read_only_user_cannot_record_a_step(
    backend: Backend, make_migrations: MakeMigrations, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_migrations({"001_users.py": FIRST})
    MigrationRunner(backend.url, folder).upgrade()
    make_migrations({"002_noop.py": SECOND})
    with read_only_user(backend) as url:
        assert [m.version for m in MigrationRunner(url, folder).status().pending] == ["002"]
        with pytest.raises(PermissionDenied) as info:
            MigrationRunner(url, folder).upgrade()
        code = run_cli(url, folder, "upgrade")

    message = one_line(info.value)
    assert "recording 002 in the history table migrations" in message
    assert "grant" in message or "read-only" in message
    assert isinstance(info.value.__cause__, DBAPIError)
    assert code == 5 and "recording 002" in cli_error(capsys)
    assert history(backend) == [("001", True)]


def test_a_postgresql_session_that_is_read_only_says_so(
    backend: Backend, make_migrations: MakeMigrations, capsys: pytest.CaptureFixture[str]
) -> None:
    if backend.name != "postgresql":
        pytest.skip("default_transaction_read_only is a PostgreSQL setting")
    folder = make_migrations({"001_users.py": FIRST})
    url = backend.url.update_query_dict({"options": "-c default_transaction_read_only=on"})

    with pytest.raises(PermissionDenied, match="read-only") as info:
        MigrationRunner(url, folder).upgrade()

    assert "creating the history table" in one_line(info.value)
    assert "writable database" in info.value.message
    assert run_cli(url, folder, "upgrade") == 5
    assert "read-only" in cli_error(capsys)
    assert tables(backend) == set()


def test_a_user_who_may_not_read_the_history_is_told_what_to_grant(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    if backend.name == "sqlite":
        pytest.skip("SQLite has no users")
    folder = make_migrations({"001_users.py": FIRST})
    MigrationRunner(backend.url, folder).upgrade()
    with read_only_user(backend) as url:
        revoke = (
            f"REVOKE SELECT ON migrations FROM {url.username}"
            if backend.name == "postgresql"
            else f"REVOKE SELECT ON {backend.url.database}.* FROM '{url.username}'@'%'"
        )
        execute(backend, revoke)
        if backend.name == "mysql":  # still allowed in: may see the database, not the table
            grant = f"GRANT SELECT ON {backend.url.database}.users TO '{url.username}'@'%'"
            execute(backend, grant)
        with pytest.raises(PermissionDenied) as info:
            MigrationRunner(url, folder).status()

    message = one_line(info.value)
    assert "reading the history table migrations" in message
    assert "grant the user SELECT on migrations" in message


# -- a schema that is not there ----------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "upgrade", "verify"])
def test_a_missing_schema_is_named_with_the_fix(
    backend: Backend,
    make_migrations: MakeMigrations,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    folder = make_migrations({"001_users.py": FIRST})
    runner = MigrationRunner(backend.url, folder, schema="nosuch")

    with pytest.raises(ConfigError) as info:
        getattr(runner, command)()

    message = one_line(info.value)
    assert "'nosuch'" in message and info.value.key == "schema"
    assert "CREATE" in message or "attach" in message
    assert tables(backend) == set()


def test_a_missing_schema_on_the_command_line_exits_2(
    backend: Backend,
    make_migrations: MakeMigrations,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    folder = make_migrations({"001_users.py": FIRST})
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.sqlmig]\nurl = "{backend.url_string}"\nmigrations = "{folder}"\nschema = "nosuch"\n'
    )

    code = main(["--config", str(tmp_path / "pyproject.toml"), "upgrade"])

    assert code == 2 and "'nosuch'" in cli_error(capsys)
    assert tables(backend) == set()


# -- a table of that name that is not a history table -----------------------------------


def test_someone_elses_migrations_table_is_named_with_table_as_the_fix(
    backend: Backend, make_migrations: MakeMigrations, capsys: pytest.CaptureFixture[str]
) -> None:
    execute(
        backend,
        "CREATE TABLE migrations (id INTEGER PRIMARY KEY, note VARCHAR(50))",
        "INSERT INTO migrations (id, note) VALUES (1, 'theirs')",
    )
    folder = make_migrations({"001_users.py": FIRST})

    for command in ("status", "verify", "upgrade", "repair"):
        with pytest.raises(ConfigError) as info:
            getattr(MigrationRunner(backend.url, folder), command)()
        message = one_line(info.value)
        assert "table migrations is not a sqlmig history table" in message, command
        assert "table=" in message and info.value.key == "table"
    code = run_cli(backend.url, folder, "upgrade")

    assert code == 2 and "table=" in cli_error(capsys)
    assert tables(backend) == {"migrations"}
    assert count(backend, "SELECT count(*) FROM migrations WHERE note = 'theirs'") == 1
    # with a table of its own, sqlmig works beside it
    assert MigrationRunner(backend.url, folder, table="sqlmig_history").upgrade()


# -- a version that is not a number --------------------------------------------------------


@pytest.mark.parametrize("bad", ["abc", "1.2"])
def test_a_version_row_that_is_not_a_number_is_named_with_the_way_out(
    backend: Backend,
    make_migrations: MakeMigrations,
    capsys: pytest.CaptureFixture[str],
    bad: str,
) -> None:
    folder = make_migrations({"001_users.py": FIRST})
    MigrationRunner(backend.url, folder).upgrade()
    insert_by_hand(backend, bad)
    make_migrations({"002_noop.py": SECOND})
    runner = MigrationRunner(backend.url, folder)
    calls = {
        "status": runner.status,
        "verify": runner.verify,
        "upgrade": runner.upgrade,
        "dry_run": runner.dry_run,
        "downgrade": lambda: runner.downgrade("base"),
        "rollback_last": runner.rollback_last,
        "baseline": lambda: runner.baseline("001"),
    }

    for name, call in calls.items():
        with pytest.raises(DirtyDatabase) as info:
            call()
        message = one_line(info.value)
        assert repr(bad) in message and f"unstamp {bad}" in message, name
        assert "repair" in message and info.value.versions == [bad]
    for command in (["status"], ["verify"], ["upgrade"], ["downgrade", "base"], ["rollback"]):
        assert run_cli(backend.url, folder, *command) == 3, command
        assert f"unstamp {bad}" in cli_error(capsys)
    assert history(backend) == sorted([("001", True), (bad, True)])
    assert "users" in tables(backend)

    assert runner.repair() == [f"removed the row {bad!r}, whose version is not a number"]
    assert history(backend) == [("001", True)]
    assert [m.version for m in runner.upgrade()] == ["002"]


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["repair"], "Repaired: removed the row 'abc', whose version is not a number"),
        (["unstamp", "abc"], "removed the row 'abc', whose version is not a number"),
    ],
)
def test_repair_or_unstamp_on_the_command_line_removes_a_version_that_is_not_a_number(
    backend: Backend,
    make_migrations: MakeMigrations,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    said: str,
) -> None:
    folder = make_migrations({"001_users.py": FIRST})
    MigrationRunner(backend.url, folder).upgrade()
    insert_by_hand(backend, "abc")

    assert run_cli(backend.url, folder, *command) == 0
    assert said in capsys.readouterr().out
    assert run_cli(backend.url, folder, "status") == 0
    assert history(backend) == [("001", True)]


# -- the lock query failing -------------------------------------------------------------


def test_a_failing_lock_query_names_the_lock(
    backend: Backend, make_migrations: MakeMigrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend.profile.lock is None:
        pytest.skip("SQLite takes no session lock")
    # a key the server rejects: out of bigint range / not a valid lock name
    monkeypatch.setattr(AdvisoryLock, "id", property(lambda self: 2**70))
    monkeypatch.setattr(
        NamedLock,
        "try_acquire",
        lambda self, conn, transaction_scoped: conn.execute(text("SELECT GET_LOCK()")),
    )
    folder = make_migrations({"001_users.py": FIRST})

    with pytest.raises(DatabaseError) as info:
        MigrationRunner(backend.url, folder).upgrade()

    message = one_line(info.value)
    assert "taking the migration lock failed" in message
    assert isinstance(info.value.__cause__, DBAPIError)
    assert exit_code(info.value) == 5 and isinstance(info.value, SqlmigError)
    assert tables(backend) == set()


def test_a_constraint_that_fails_at_commit_is_a_sqlmig_error_and_nothing_is_kept(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    if backend.name != "postgresql":
        pytest.skip("deferred constraints checked at commit: PostgreSQL")
    folder = make_migrations(
        {
            "001_deferred.py": """\
                from sqlalchemy import text

                def up(conn):
                    conn.execute(text("CREATE TABLE a (id INTEGER PRIMARY KEY)"))
                    conn.execute(text("CREATE TABLE b (a_id INTEGER REFERENCES a (id) "
                                      "DEFERRABLE INITIALLY DEFERRED)"))
                    conn.execute(text("INSERT INTO b VALUES (1)"))
                """
        }
    )

    with pytest.raises(DatabaseError, match="committing a transaction failed") as info:
        MigrationRunner(backend.url, folder).upgrade()

    assert "rolled back" in one_line(info.value)
    assert isinstance(info.value.__cause__, DBAPIError)
    assert tables(backend) == {"migrations"} and history(backend) == []


@pytest.mark.parametrize(
    ("statement", "params", "action"),
    [
        ("SELECT pg_try_advisory_lock(%(k)s)", {"k": 1}, "taking the migration lock"),
        ("SELECT GET_LOCK(%(n)s, 0)", {"n": "x"}, "taking the migration lock"),
        ("SELECT RELEASE_LOCK(%(n)s)", {"n": "x"}, "freeing the migration lock"),
        ("\nCREATE TABLE IF NOT EXISTS migrations (...)", {}, "creating the history table m"),
        ("ALTER TABLE migrations ADD checksum VARCHAR(64)", {}, "adding sqlmig's columns"),
        ("INSERT INTO migrations (version, name) VALUES (?, ?)", ("007", "x"), "recording 007"),
        ("INSERT INTO migrations (version) VALUES (%(version)s)", {"version": "8"}, "recording 8"),
        (
            "UPDATE migrations SET success=? WHERE version = ?",
            (True, "3"),
            "updating the history row of 3",
        ),
        (
            "DELETE FROM migrations WHERE version = %(v)s",
            {"v": "abc"},
            "removing the history row of abc",
        ),
        (  # PostgreSQL writes the values in: a step's name is text, not a function
            "INSERT INTO migrations (version, name, applied_at, checksum, execution_ms, success)"
            " VALUES (E'002', E'drop_advisory_lock_column', clock_timestamp(), NULL, 1, TRUE)",
            None,
            "recording 002",
        ),
        (  # the version is the first value after the table's name, whatever that holds
            "INSERT INTO \"x VALUES (E'9'\" (version, name, applied_at, checksum, execution_ms,"
            " success) VALUES (E'002', E'x) VALUES (E''7''', clock_timestamp(), NULL, 1, TRUE)",
            None,
            "recording 002",
        ),
        (
            "DELETE FROM \"pg_locks = E'9'\" WHERE version = E'003'",
            None,
            "removing the history row of 003",
        ),
        ("SELECT * FROM migrations", {}, "reading the history table m"),
        ('PRAGMA main.table_info("migrations")', (), "reading the history table m"),
        ("PRAGMA busy_timeout = 5000", (), "setting up the connection"),
        ("BEGIN IMMEDIATE", (), "beginning a transaction"),
        (None, None, "committing a transaction"),
    ],
)
def test_what_sqlmig_was_doing_is_read_from_the_failed_statement(
    statement: str | None, params: object, action: str
) -> None:
    assert describe(statement, params, "m")[0].startswith(action)


def test_a_read_only_user_cannot_undo_a_step_and_is_told_which_row(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_users.py": FIRST, "002_noop.py": SECOND})
    MigrationRunner(backend.url, folder).upgrade()
    with read_only_user(backend) as url:
        with pytest.raises(PermissionDenied) as info:
            MigrationRunner(url, folder).downgrade("001")

    assert "the history row of 002" in one_line(info.value)
    assert isinstance(info.value.__cause__, DBAPIError)
    assert history(backend) == [("001", True), ("002", True)]


def test_a_step_named_after_a_lock_function_is_still_named_when_its_row_is_refused(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    """A step's name written in its history row's statement (PostgreSQL) is not read
    as sqlmig taking or freeing its lock."""
    folder = make_migrations({"001_users.py": FIRST})
    MigrationRunner(backend.url, folder).upgrade()
    make_migrations({"002_drop_advisory_lock_column.py": SECOND})
    with read_only_user(backend) as url:
        with pytest.raises(PermissionDenied) as info:
            MigrationRunner(url, folder).upgrade()

    assert "recording 002 in the history table migrations" in one_line(info.value)
    assert history(backend) == [("001", True)]
