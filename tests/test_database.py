"""What ``db`` may be, what may be shown of it, and calls that must not lose work.

A caller's Connection counts as "the caller's transaction" only when the
caller began it; an in-memory SQLite URL is refused; a string must be a URL;
read-only calls create no SQLite file; every URL shown is masked on its
parsed form, and a driver's message is never garbled by a short password.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import URL, create_engine, make_url, text
from sqlalchemy.pool import StaticPool

from backends import Backend, fresh_database
from conftest import MakeMigrations, tables
from sqlmig import ConfigError, DatabaseUnavailable, MigrationRunner, UsageError
from sqlmig._urls import mask

CREATE = """\
    '''Create table {t}.'''
    from sqlalchemy import text

    def up(conn):
        conn.execute(text("CREATE TABLE {t} (id INTEGER PRIMARY KEY)"))

    def down(conn):
        conn.execute(text("DROP TABLE {t}"))
"""
STEPS = {"001_create_a.py": CREATE.format(t="a"), "002_create_b.py": CREATE.format(t="b")}


# -- a Connection that merely autobegan ---------------------------------------


WRITES = {
    "upgrade": lambda r: r.upgrade(),
    "downgrade": lambda r: r.downgrade("base"),
    "rollback_last": lambda r: r.rollback_last(),
    "baseline": lambda r: r.baseline("001"),
    "repair": lambda r: r.repair(),
}


@pytest.mark.parametrize("call", sorted(WRITES))
def test_an_autobegun_connection_is_refused_by_every_writing_call(
    backend: Backend, make_migrations: MakeMigrations, call: str
) -> None:
    folder = make_migrations(STEPS)
    if call in ("downgrade", "rollback_last"):
        MigrationRunner(backend.url, folder).upgrade()
    before = tables(backend)
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))  # SQLAlchemy begins a transaction by itself
            assert conn.in_transaction()
            with pytest.raises(UsageError, match="autobegin") as info:
                WRITES[call](MigrationRunner(conn, folder))
            message = str(info.value)
            assert "conn.commit() first" in message and "conn.begin()" in message
            assert "\n" not in message
            assert conn.in_transaction()  # the caller's state is left alone
    finally:
        engine.dispose()
    assert tables(backend) == before


def test_an_autobegun_connection_may_read_and_is_left_as_it_was(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(STEPS)
    MigrationRunner(backend.url, folder).upgrade("001")
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            runner = MigrationRunner(conn, folder)
            status = runner.status()
            runner.verify()
            assert [m.version for m in status.pending] == ["002"]
            assert status.current == "001"
            assert conn.in_transaction()
    finally:
        engine.dispose()


def test_after_commit_the_same_connection_migrates_and_commits_each_step(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            conn.commit()  # the first fix the error names
            applied = MigrationRunner(conn, make_migrations(STEPS)).upgrade()
            assert [m.version for m in applied] == ["001", "002"]
    finally:
        engine.dispose()
    assert {"a", "b", "migrations"} <= tables(backend)


@pytest.mark.parametrize("style", ["with", "held", "nested"])
def test_a_transaction_the_caller_began_is_the_callers(
    backend: Backend, make_migrations: MakeMigrations, style: str
) -> None:
    if not backend.profile.caller_transaction_ok:
        pytest.skip("MySQL commits DDL implicitly: a caller's transaction is refused there")
    folder = make_migrations(STEPS)
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            if style == "with":
                with conn.begin():
                    MigrationRunner(conn, folder).upgrade()
            elif style == "held":
                conn.execute(text("SELECT 1"))
                conn.rollback()
                transaction = conn.begin()
                MigrationRunner(conn, folder).upgrade()
                transaction.commit()
            else:
                conn.execute(text("SELECT 1"))  # autobegun, then a savepoint of the caller's
                savepoint = conn.begin_nested()
                MigrationRunner(conn, folder).upgrade()
                savepoint.commit()
                conn.commit()
    finally:
        engine.dispose()
    assert {"a", "b", "migrations"} <= tables(backend)


# -- in-memory SQLite ---------------------------------------------------------


@pytest.mark.parametrize(
    "db",
    [
        "sqlite://",
        "sqlite:///:memory:",
        URL.create("sqlite"),
        "sqlite:///file:x?mode=memory&uri=true",
    ],
)
def test_an_in_memory_sqlite_url_is_a_usage_error(
    make_migrations: MakeMigrations, db: str | URL
) -> None:
    with pytest.raises(UsageError, match=r"in-memory SQLite.*StaticPool"):
        MigrationRunner(db, make_migrations(STEPS))


def test_an_in_memory_engine_with_a_static_pool_keeps_its_work_between_calls(
    make_migrations: MakeMigrations,
) -> None:
    engine = create_engine("sqlite://", poolclass=StaticPool)
    try:
        runner = MigrationRunner(engine, make_migrations(STEPS))
        assert [m.version for m in runner.upgrade("001")] == ["001"]
        assert runner.status().current == "001"
        assert [m.version for m in runner.upgrade()] == ["002"]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM migrations")).scalar() == 2
    finally:
        engine.dispose()


# -- a string is a URL --------------------------------------------------------


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "cwd"
    folder.mkdir()
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(before)


@pytest.mark.parametrize("value", ["staging", "not a url", "sqlite:/x.db", "app.db"])
def test_a_string_that_is_no_url_is_a_config_error_and_creates_nothing(
    elsewhere: Path, make_migrations: MakeMigrations, value: str
) -> None:
    with pytest.raises(ConfigError, match="is not a database URL") as info:
        MigrationRunner(value, make_migrations(STEPS)).status()
    assert repr(value) in str(info.value) and "sqlite:///" in str(info.value)
    assert list(elsewhere.iterdir()) == []


def test_a_mistyped_scheme_names_the_scheme(make_migrations: MakeMigrations) -> None:
    with pytest.raises(ConfigError, match="unknown database kind 'postgress'"):
        MigrationRunner("postgress://app:pw@db/app", make_migrations(STEPS))


def test_db_path_still_takes_a_plain_file_path(
    elsewhere: Path, make_migrations: MakeMigrations
) -> None:
    runner = MigrationRunner(db_path="bot.db", migrations_dir=make_migrations(STEPS))
    assert len(runner.upgrade()) == 2
    assert (elsewhere / "bot.db").exists()


# -- read-only calls create no file ------------------------------------------


def test_read_only_calls_on_a_missing_sqlite_file_create_nothing(
    tmp_path: Path, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(STEPS)
    path = tmp_path / "nope" / "app.db"
    for db in (f"sqlite:///{path}", URL.create("sqlite", database=str(path))):
        runner = MigrationRunner(db, folder)
        status = runner.status()
        assert [m.version for m in status.pending] == ["001", "002"]
        assert status.current is None and status.applied == []
        runner.verify()
        plan = runner.dry_run()
        assert [s.migration.version for s in plan] == ["001", "002"]
        assert any("CREATE TABLE a" in s for s in plan[0].statements)
    engine = create_engine(f"sqlite:///{path}")
    try:
        assert MigrationRunner(engine, folder).status().total_pending == 2
    finally:
        engine.dispose()
    assert not path.exists() and not path.parent.exists()


def test_calls_that_record_no_step_on_a_missing_sqlite_file_create_nothing(
    tmp_path: Path, make_migrations: MakeMigrations
) -> None:
    # a typo'd path to a production file: undoing, repairing or unstamping finds
    # nothing, and leaves no empty database where the file was expected
    path = tmp_path / "app.db"
    runner = MigrationRunner(f"sqlite:///{path}", make_migrations(STEPS))

    assert runner.downgrade("base") == []
    assert runner.rollback_last() is None
    assert runner.repair() == []
    with pytest.raises(UsageError, match="there is no history table yet"):
        runner.unstamp("001")
    with runner.reusing_engine() as shared:
        assert shared.downgrade("base") == []

    assert not path.exists()
    assert len(runner.upgrade()) == 2  # a call that records steps makes the file
    assert path.exists()


# -- masking ------------------------------------------------------------------


PASSWORDS = {
    "query": ("postgresql+psycopg://app@db:5432/app?password=Qu3ry-Secret", "Qu3ry-Secret"),
    "at and colon": (
        URL.create("postgresql+psycopg", "app", "p@ss:w0rd@x", "db", 5432, "app"),
        "p@ss:w0rd@x",
    ),
    "short": ("postgresql+psycopg://app:p@db:5432/app", "p"),
}


@pytest.mark.parametrize("kind", sorted(PASSWORDS))
def test_mask_hides_every_kind_of_password_and_nothing_else(kind: str) -> None:
    url, password = PASSWORDS[kind]
    shown = mask(url)
    assert shown.startswith("postgresql+psycopg://app")
    assert shown.endswith("@db:5432/app") or shown.endswith("?password=***")
    assert "***" in shown
    assert password not in shown.replace("postgresql+psycopg", "").replace("app", "")


def test_an_unencoded_at_in_the_password_is_refused_without_showing_any_of_it() -> None:
    with pytest.raises(ConfigError, match=r"unencoded '@'.*%40") as info:
        MigrationRunner("postgresql+psycopg://app:Tail@Leak3d@db/app", "m")
    assert "Tail" not in str(info.value) and "Leak3d" not in str(info.value)
    assert mask("postgresql+psycopg://app:Tail@Leak3d@db/app?sslpassword=k") == (
        "postgresql+psycopg://***@db/app?sslpassword=***"
    )


def test_runner_url_hides_a_query_password() -> None:
    runner = MigrationRunner("mysql+pymysql://app@db/app?passwd=Qu3ry-Secret&charset=utf8mb4", "m")
    assert runner.url == "mysql+pymysql://app@db/app?charset=utf8mb4&passwd=***"


def refused(kind: str) -> str | URL:
    """A URL of each password kind on a port where nothing listens."""
    url = make_url("postgresql+psycopg://app@127.0.0.1:1/app")
    if kind == "query":
        return url.update_query_dict({"password": "Qu3ry-Secret"})
    if kind == "short":
        return url.set(password="p")
    return url.set(password="p@ss:w0rd@x")


@pytest.mark.parametrize("kind", sorted(PASSWORDS))
def test_a_refused_connection_shows_no_password_of_any_kind(
    make_migrations: MakeMigrations, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    _, password = PASSWORDS[kind]
    db = refused(kind)
    runner = MigrationRunner(db, make_migrations(STEPS))
    with caplog.at_level(logging.DEBUG, logger="sqlmig"):
        with pytest.raises(DatabaseUnavailable) as info:
            runner.status()
    message = str(info.value)
    assert 'at "127.0.0.1", port 1 failed: Connection refused' in message  # not garbled
    assert "127.0.0.1:1/app" in message and "***" in message
    shown = message + info.value.url + caplog.text + runner.url
    if len(password) > 1:
        assert password not in shown
    else:
        assert ":p@" not in shown and "password=p" not in shown


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[Backend]:
    with fresh_database("mysql", tmp_path) as db:
        yield db


@pytest.mark.parametrize("kind", sorted(PASSWORDS))
def test_a_wrong_password_on_mariadb_shows_no_password(
    mariadb: Backend, make_migrations: MakeMigrations, kind: str
) -> None:
    _, password = PASSWORDS[kind]
    url = mariadb.url.set(username="no_such_user_here")
    if kind == "query":
        url = url.update_query_dict({"password": password})
    else:
        url = url.set(password=password)
    with pytest.raises(DatabaseUnavailable, match="Access denied") as info:
        MigrationRunner(url, make_migrations(STEPS)).upgrade()
    message = str(info.value)
    assert "no_such_user_here" in message and "***" in message
    assert "(using password: YES)" in message  # the driver's reason, not garbled
    if len(password) > 1:
        assert password not in message
    else:
        assert ":p@" not in message and "=p" not in message


@pytest.mark.parametrize(
    "option", [{"charset": "bogus"}, {"connect_timeout": "abc"}, {"ssl_ca": "/no/such/ca.pem"}]
)
def test_a_url_option_the_driver_chokes_on_is_a_config_error(
    backend: Backend, make_migrations: MakeMigrations, option: dict[str, str]
) -> None:
    if backend.name != "mysql":
        pytest.skip("PyMySQL raises plain Python errors for these options")
    url = backend.url.update_query_dict(option)
    for call in ("status", "upgrade"):
        with pytest.raises(
            ConfigError, match=r"(database URL|setting of the URL|a setting)"
        ) as info:
            getattr(MigrationRunner(url, make_migrations(STEPS)), call)()
        assert "\n" not in str(info.value)
    assert tables(backend) == set()
