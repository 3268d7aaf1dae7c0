"""pytest plugin: fixtures for a migrated test database, and ready-made checks.

Loaded through the ``pytest11`` entry point whenever sqlmig is installed. It
imports nothing heavy at load time and does nothing until a test asks for one
of its fixtures or an ini flag turns a ready-made check on.

Fixtures (override any of them in your ``conftest.py``):

- ``sqlmig_engine`` (session): an Engine on ``--sqlmig-url`` or
  ``SQLMIG_TEST_URL``, else on a temporary SQLite file. Never the ``url`` of
  ``[tool.sqlmig]``: a test run cannot touch a configured production database.
- ``sqlmig_runner`` (session): a :class:`~sqlmig.MigrationRunner` on that
  engine, with migrations from the ini option ``sqlmig_migrations``, else
  ``[tool.sqlmig] migrations`` of the rootdir's ``pyproject.toml``, else the
  ``migrations/`` folder of the rootdir.
- ``sqlmig_migrated`` (session): the engine after ``upgrade()``.
- ``sqlmig_connection`` (per test): a Connection on the migrated database,
  inside a transaction rolled back after the test, DDL included on SQLite and
  PostgreSQL (MySQL/MariaDB commit DDL implicitly: only data is rolled back).

Under pytest-xdist each worker gets a migrated database of its own
(:mod:`sqlmig._pytest_workers`), dropped at the end. ``--sqlmig-reset`` (ini
``sqlmig_reset``) empties a reused test database before the session
(:mod:`sqlmig._pytest_reset`).

Ini flags: ``sqlmig_stairway = true`` adds the test ``sqlmig_stairway``
(:func:`sqlmig.testing.check_stairway`; it runs first, on the still empty test
database), ``sqlmig_history = true`` adds ``sqlmig_history``
(:func:`sqlmig.testing.check_history`: the files, and the test database's history;
it runs last). ``sqlmig_metadata = myapp.db:metadata`` (several separated by
spaces) adds ``sqlmig_models`` (:func:`sqlmig.testing.check_models`: the test
database, upgraded to head, matches the models; it runs after the project's
tests, before ``sqlmig_history``).

The module is long because it is everything pytest sees of sqlmig: options,
fixtures, the ready-made checks and pytest-xdist's hooks; the mechanics
behind them live in :mod:`sqlmig._pytest_workers` and :mod:`sqlmig._pytest_reset`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from sqlmig import MigrationRunner
    from sqlmig.config import ConfigFile

__all__ = [
    "sqlmig_connection",
    "sqlmig_engine",
    "sqlmig_migrated",
    "sqlmig_runner",
]

URL_ENV = "SQLMIG_TEST_URL"
STAIRWAY = "sqlmig_stairway"
HISTORY = "sqlmig_history"
METADATA = "sqlmig_metadata"
MODELS = "sqlmig_models"
#: The engine the plugin's own ``sqlmig_engine`` made (not a project's override).
OWN_ENGINE: pytest.StashKey[Engine] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sqlmig", "sqlmig migrations")
    group.addoption(
        "--sqlmig-url",
        dest="sqlmig_url",
        default=None,
        help=f"database URL for sqlmig's test fixtures (else ${URL_ENV}, else a temporary "
        "SQLite file); never the configured application URL",
    )
    from sqlmig._pytest_reset import add_options

    add_options(parser, group)
    parser.addini(
        "sqlmig_migrations",
        "migrations folder (relative to the ini file) or package for sqlmig's fixtures",
        default=None,
    )
    parser.addini(
        STAIRWAY,
        "add the sqlmig_stairway test: every down() undoes its up()",
        type="bool",
        default=False,
    )
    parser.addini(
        METADATA,
        "add the sqlmig_models test: the migrated test database matches these models "
        "(module:attribute, several separated by spaces)",
        type="args",
        default=[],
    )
    parser.addini(
        HISTORY,
        "add the sqlmig_history test: no duplicate or edited migration",
        type="bool",
        default=False,
    )


def database_url(config: pytest.Config) -> str | None:
    """The database URL the fixtures use: ``--sqlmig-url``, else ``$SQLMIG_TEST_URL``."""
    value: str | None = config.getoption("sqlmig_url") or os.environ.get(URL_ENV)
    return value or None


def _tool_sqlmig(config: pytest.Config) -> ConfigFile:
    """``[tool.sqlmig]`` of the rootdir's ``pyproject.toml``, read as the command line reads it."""
    from sqlmig.config import read_config

    return read_config(config.rootpath / "pyproject.toml")


def migrations_source(config: pytest.Config) -> str | Path | list[str]:
    """The fixtures' migrations: ini ``sqlmig_migrations``, ``[tool.sqlmig]``, ``migrations/``.

    A configured value is a folder relative to its file, or a package name, as
    the command line reads ``[tool.sqlmig] migrations``.
    """
    from sqlmig.config import migrations_source as from_setting

    value = config.getini("sqlmig_migrations")
    file = _tool_sqlmig(config)
    if value:
        found = from_setting(str(value), config.inipath.parent if config.inipath else file.folder)
    elif isinstance(file.settings.get("migrations"), list):  # an Alembic chain, then a folder
        return [from_setting(str(item), file.folder) for item in file.settings["migrations"]]
    elif file.settings.get("migrations"):
        found = from_setting(str(file.settings["migrations"]), file.folder)
    else:
        return file.folder / "migrations"
    return Path(found) if os.path.isabs(found) else found  # a folder, else a package name


@pytest.fixture(scope="session")
def sqlmig_engine(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """The test database: ``--sqlmig-url`` / ``$SQLMIG_TEST_URL``, else a temporary SQLite file.

    Under pytest-xdist, a database of the worker's own (dropped at the end).
    """
    from sqlmig._pytest_workers import worker_engine

    url = database_url(pytestconfig)
    with worker_engine(pytestconfig, url) as own:
        engine = own if own is not None else _engine(pytestconfig, url, tmp_path_factory)
        pytestconfig.stash[OWN_ENGINE] = engine
        try:
            yield engine
        finally:
            engine.dispose()


def _engine(config: pytest.Config, url: str | None, tmp: pytest.TempPathFactory) -> Engine:
    """Without workers: an Engine on the URL (emptied first if asked), else a new SQLite file."""
    from sqlalchemy import URL, create_engine

    if url is None:
        path = tmp.mktemp("sqlmig") / "test.db"
        return create_engine(URL.create("sqlite", database=str(path)))
    from sqlmig._pytest_reset import reset_if_asked

    engine = create_engine(url)
    reset_if_asked(config, engine, _tool_sqlmig(config).settings.get("schema"))
    return engine


@pytest.fixture(scope="session")
def sqlmig_runner(pytestconfig: pytest.Config, sqlmig_engine: Engine) -> MigrationRunner:
    """A MigrationRunner on the test database, with the project's migrations.

    ``table`` and ``schema`` follow ``[tool.sqlmig]`` when it sets them.
    """
    __tracebackhide__ = True  # a refused reset reads as its message
    from sqlmig import MigrationRunner
    from sqlmig._pytest_reset import refuse_foreign_reset

    refuse_foreign_reset(pytestconfig, sqlmig_engine, pytestconfig.stash.get(OWN_ENGINE, None))
    settings = _tool_sqlmig(pytestconfig).settings
    options = {k: settings[k] for k in ("table", "schema") if k in settings}
    return MigrationRunner(sqlmig_engine, migrations_source(pytestconfig), **options)


@pytest.fixture(scope="session")
def sqlmig_migrated(
    pytestconfig: pytest.Config, sqlmig_engine: Engine, sqlmig_runner: MigrationRunner
) -> Engine:
    """The test database's engine, with every migration applied (once per session).

    Under pytest-xdist, PostgreSQL and SQLite workers get a copy of a database
    migrated once per run.
    """
    from sqlmig._pytest_workers import migrate

    if not migrate(pytestconfig, sqlmig_engine, sqlmig_runner):  # a worker's own, copied
        sqlmig_runner.upgrade()
    return sqlmig_engine


@pytest.fixture
def sqlmig_connection(sqlmig_migrated: Engine) -> Iterator[Connection]:
    """A connection on the migrated database, in a transaction rolled back after the test.

    Do not commit it: the test's changes would stay. Nested work can use
    ``conn.begin_nested()``; a ``MigrationRunner(conn, ...)`` runs its steps in
    savepoints.
    """
    from sqlmig.testing import begin

    with sqlmig_migrated.connect() as conn:
        transaction = begin(conn)  # on the server at once: DDL rolls back too (SQLite)
        try:
            yield conn
        finally:
            committed = not transaction.is_active
            if transaction.is_active:
                transaction.rollback()
        if committed:
            pytest.fail(
                "the test ended sqlmig_connection's transaction (commit or rollback): its "
                "changes may remain for later tests; use conn.begin_nested() instead",
                pytrace=False,
            )


# -- the ready-made checks -----------------------------------------------------


def _stairway(sqlmig_engine: Engine, sqlmig_runner: MigrationRunner) -> None:
    """Every migration's down() restores the schema its up() changed.

    On SQLite and PostgreSQL the whole walk runs in a transaction that is rolled
    back, so the test database is empty again afterwards whatever the outcome.
    """
    __tracebackhide__ = True
    from sqlmig.testing import begin, check_stairway, undoes_ddl

    with sqlmig_engine.connect() as conn:
        if not undoes_ddl(conn):  # MySQL/MariaDB: DDL commits itself
            _readable(check_stairway, sqlmig_runner)
            return
        transaction = begin(conn, timeout=sqlmig_runner.lock_timeout)
        try:
            _readable(check_stairway, sqlmig_runner.with_database(conn))
        finally:
            transaction.rollback()


def _history(sqlmig_runner: MigrationRunner) -> None:
    """No duplicate versions; every applied step's file is there, unedited."""
    __tracebackhide__ = True
    from sqlmig.testing import check_history

    _readable(check_history, sqlmig_runner)


def _models(pytestconfig: pytest.Config, sqlmig_runner: MigrationRunner) -> None:
    """The test database, upgraded to head, matches the models of ``sqlmig_metadata``."""
    __tracebackhide__ = True
    from sqlmig.config import project_imports
    from sqlmig.testing import check_models

    metadata = list(pytestconfig.getini(METADATA))
    root = pytestconfig.inipath.parent if pytestconfig.inipath else pytestconfig.rootpath
    with project_imports(root):  # "myapp.db:metadata" beside the project's ini file
        _readable(lambda runner: check_models(runner, metadata), sqlmig_runner)


def _readable(check: Callable[[MigrationRunner], object], runner: MigrationRunner) -> None:
    """Run a check; a sqlmig error (a bad file, say) fails the test with its one line."""
    __tracebackhide__ = True
    from sqlmig import SqlmigError

    try:
        check(runner)
        return
    except SqlmigError as exc:
        message = f"{type(exc).__name__}: {exc}"
    pytest.fail(message, pytrace=False)


@pytest.hookimpl(tryfirst=True)  # before -k / -m deselect items
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Add the checks the ini flags turn on: the stairway first, the models, the history last."""
    if config.getini(STAIRWAY):
        items.insert(0, pytest.Function.from_parent(session, name=STAIRWAY, callobj=_stairway))
    if config.getini(METADATA):
        items.append(pytest.Function.from_parent(session, name=MODELS, callobj=_models))
    if config.getini(HISTORY):
        items.append(pytest.Function.from_parent(session, name=HISTORY, callobj=_history))


# -- pytest-xdist's controlling process ------------------------------------------


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: object) -> None:
    """Tell each worker the run its databases are named after."""
    from sqlmig._pytest_workers import name_the_run

    name_the_run(node)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """Note whether a worker made databases on the server (or died: it may have)."""
    from sqlmig._pytest_workers import note_node_down

    note_node_down(node, error)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In pytest-xdist's controlling process: drop what is left of the run's databases."""
    from sqlmig._pytest_workers import finish_run

    finish_run(session.config, database_url(session.config))
