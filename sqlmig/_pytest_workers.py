"""The pytest plugin under pytest-xdist: a migrated database of its own for each worker.

- PostgreSQL: one database (the run's template) migrated once per run, by the
  first worker to take the run's lock; each worker's database is a
  ``CREATE DATABASE ... TEMPLATE`` copy of it.
- MySQL/MariaDB: a database per worker, migrated by that worker.
- SQLite: one file migrated once per run, copied for each worker.

A worker drops its database at the end of its session; the controlling
process tells the workers their run (:func:`name_the_run`) and drops what is
left of it at the end (:func:`finish_run`). The names, the run's lock and the
cleanup of killed runs are :mod:`sqlmig._pytest_runs`'s. Built on SQLAlchemy and
sqlmig's public API alone, like the plugin.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sqlmig._pytest_runs import (
    SERVERS,
    TEMPLATE_SETUP,
    Run,
    admin,
    folder,
    locked,
    run_statement,
    server_of,
)
from sqlmig._pytest_runs import finish as finish_sweep

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from sqlmig import MigrationRunner


class MayNotCreate(Exception):
    """The test URL's user may not create databases; the message names the privilege."""


def distributes(url: str | None) -> bool:
    """Whether workers get databases of their own on this URL (SQLite and known servers)."""
    if url is None:
        return True
    from sqlalchemy import make_url

    backend = make_url(url).get_backend_name()
    return backend == "sqlite" or backend in SERVERS


def _driver_codes(exc: BaseException) -> set[object]:
    """The SQLSTATE and the server's error number a driver's error carries, as it has them."""
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    return {getattr(orig, "sqlstate", None), args[0] if args else None} - {None}


def _run_on(dbapi_connection: Any, statement: str) -> None:
    """Run one statement on a driver's new connection, committed (none left open)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()
    dbapi_connection.commit()


class WorkerDatabase:
    """One worker's database: made empty, then migrated (copied where the backend can)."""

    def __init__(self, url: str | None, run: Run, worker: str) -> None:
        from sqlalchemy import URL, make_url

        self.run = run
        self.worker = worker
        self.server = server_of(url)
        self.admin_url = make_url(url) if url is not None and self.server else None
        self.name = run.name(worker)
        self.url = (
            self.admin_url.set(database=self.name)
            if self.admin_url is not None
            else URL.create("sqlite", database=str(folder() / f"{self.name}.db"))
        )
        self.engine: Engine | None = None
        self.made = False

    def create(self) -> Engine:
        """The worker's Engine.

        On a server the database itself is made when the Engine first connects,
        or copied whole by :meth:`migrate`: never made empty only to be dropped.
        """
        from sqlalchemy import create_engine, event

        self.engine = create_engine(self.url)
        if self.server is not None:
            event.listen(self.engine, "do_connect", self._make_on_connect)
        return self.engine

    def migrate(self, runner: MigrationRunner) -> None:
        """Bring the worker's database to head: a copy of the run's template, else ``upgrade()``."""
        assert self.engine is not None
        if self.server is not None and self.server.clone is None:
            runner.with_database(self.engine).upgrade()
            return
        template = self.run.name("template")
        self._once("migrated", lambda: self._make_template(template, runner))
        self.engine.dispose()  # a template copied over: no connection may stay open
        if self.server is not None and self.admin_url is not None:
            assert self.server.clone is not None
            if self.made:  # the stairway, say, used it before
                with admin(self.admin_url) as conn:
                    run_statement(conn, self.server.drop.format(name=self.name))
            self._create(self.server.clone.format(name=self.name, template=template, how="{how}"))
            self.made = True
        else:
            source = sqlite3.connect(folder() / f"{template}.db")
            target = sqlite3.connect(str(self.url.database))
            try:
                source.backup(target)
            finally:
                source.close()
                target.close()

    def _make_on_connect(self, *_: object) -> None:
        """Before the Engine's first connection: make the (empty) database it connects to."""
        if not self.made and self.server is not None:
            self._create(self.server.create.format(name=self.name))
            self.made = True

    def drop(self) -> None:
        """Drop the worker's database (or delete its file)."""
        if self.engine is not None:
            self.engine.dispose()
        if self.server is not None and self.admin_url is not None:
            if self.made:
                with admin(self.admin_url) as conn:
                    run_statement(conn, self.server.drop.format(name=self.name))
        else:
            Path(str(self.url.database)).unlink(missing_ok=True)

    def _make_template(self, template: str, runner: MigrationRunner) -> None:
        from sqlalchemy import URL, create_engine, event
        from sqlalchemy.pool import NullPool

        if self.server is not None and self.admin_url is not None:
            with admin(self.admin_url) as conn:
                run_statement(conn, self.server.drop.format(name=template))
            self._create(self.server.create.format(name=template))
            url = self.admin_url.set(database=template)
        else:
            path = folder() / f"{template}.db"
            path.unlink(missing_ok=True)
            url = URL.create("sqlite", database=str(path))
        engine = create_engine(url, poolclass=NullPool)  # nothing left connected to copy from
        setup = TEMPLATE_SETUP.get(url.get_backend_name())
        if setup is not None:
            event.listen(engine, "connect", lambda dbapi, _: _run_on(dbapi, setup))
        try:
            runner.with_database(engine).upgrade()
        finally:
            engine.dispose()

    def _create(self, statement: str) -> None:
        """Run a ``CREATE DATABASE`` (its ``{how}`` as the server's version takes it).

        Raises:
            MayNotCreate: the user lacks the privilege; the message names it.
        """
        from sqlalchemy.exc import DBAPIError

        assert self.server is not None and self.admin_url is not None
        try:
            with admin(self.admin_url) as conn:
                version = conn.dialect.server_version_info or ()
                since = self.server.clone_how_since
                how = self.server.clone_how if since and version >= since else ""
                run_statement(conn, statement.replace("{how}", how))
        except DBAPIError as exc:
            if not _driver_codes(exc) & self.server.denied:
                raise
            user = self.admin_url.username or "the user"
            raise MayNotCreate(
                f"the test database's user {user} may not create databases (it lacks the "
                f"{self.server.privilege} privilege), and under pytest-xdist each worker gets "
                f"a database of its own: grant it ({self.server.grant.format(user=user)}), or "
                "run without -n"
            ) from exc

    def _once(self, what: str, make: Callable[[], object]) -> None:
        """Run ``make`` in one worker of the run only, the others waiting for it."""
        marker = folder() / self.run.name(what)
        if marker.exists():
            return
        with locked(folder() / self.run.name("lock")):
            if marker.exists():
                return
            make()
            marker.touch()


#: In the controlling process: the run its workers name their databases after.
RUN: pytest.StashKey[Run] = pytest.StashKey()
#: In the controlling process: whether a worker may have made databases on the server.
USED_SERVER: pytest.StashKey[bool] = pytest.StashKey()
#: In a worker: its own database.
DATABASE: pytest.StashKey[WorkerDatabase] = pytest.StashKey()


def worker_of(config: pytest.Config) -> tuple[str, Run] | None:
    """Under pytest-xdist, in a worker: its id and its run; else None."""
    given = getattr(config, "workerinput", None)
    if not isinstance(given, dict) or "sqlmig_run" not in given:
        return None
    return str(given["workerid"]), Run.parse(str(given["sqlmig_run"]))


@contextmanager
def worker_engine(config: pytest.Config, url: str | None) -> Iterator[Engine | None]:
    """In a worker, on a backend it knows: the worker's own new database, dropped after.

    None outside pytest-xdist (and for a backend it cannot make databases on):
    the plugin then does as it does without workers.
    """
    found = worker_of(config)
    if found is None or not distributes(url):
        yield None
        return
    database = WorkerDatabase(url, found[1], found[0])
    output = getattr(config, "workeroutput", None)
    if database.server is not None and isinstance(output, dict):
        output["sqlmig_used_server"] = True
    engine = database.create()
    config.stash[DATABASE] = database
    try:
        yield engine
    finally:
        database.drop()


def migrate(config: pytest.Config, engine: Engine, runner: MigrationRunner) -> bool:
    """Bring the worker's own database to head; False when ``engine`` is not on it."""
    database = config.stash.get(DATABASE, None)
    if database is None or database.engine is not engine:
        return False
    refused = None
    try:
        database.migrate(runner)
    except MayNotCreate as exc:
        refused = str(exc)
    if refused is not None:  # outside the except: the message alone, no driver traceback
        pytest.fail(refused, pytrace=False)
    return True


def name_the_run(node: object) -> None:
    """In the controlling process: give a starting worker the run to name its databases after."""
    config: pytest.Config = getattr(node, "config")  # noqa: B009
    if RUN not in config.stash:
        config.stash[RUN] = Run.new()
    getattr(node, "workerinput")["sqlmig_run"] = config.stash[RUN].token  # noqa: B009


def note_node_down(node: object, error: object) -> None:
    """In the controlling process: whether a worker made databases on the server (or died)."""
    config: pytest.Config = getattr(node, "config")  # noqa: B009
    output = getattr(node, "workeroutput", None)
    used = error is not None or not isinstance(output, dict) or "sqlmig_used_server" in output
    config.stash[USED_SERVER] = config.stash.get(USED_SERVER, False) or used


def finish_run(config: pytest.Config, url: str | None) -> None:
    """In the controlling process, at the end: drop what is left of the run's databases."""
    run = config.stash.get(RUN, None)
    if run is not None:
        finish_sweep(url, run, config.stash.get(USED_SERVER, False))
