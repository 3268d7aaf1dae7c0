"""Where the test suite gets its databases.

SQLite is a file in the test's temporary folder. PostgreSQL and MariaDB come
from ``SQLMIG_TEST_POSTGRES_URL`` / ``SQLMIG_TEST_MYSQL_URL`` (what CI sets);
every test that asks for one gets a fresh database of its own on that server,
made before it and dropped after it (by a thread, while other tests run: see
:class:`Databases`), so tests (and parallel workers) never see each other's
tables. Backends named in ``SQLMIG_REQUIRE_BACKENDS`` must be
available: their tests fail instead of skipping.
"""

from __future__ import annotations

import atexit
import functools
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, create_engine, make_url, text
from sqlalchemy.engine import Engine

from sqlmig._dialects import DialectProfile, profile_named

BACKENDS = ("sqlite", "postgresql", "mysql")
ENV_VARS = {"postgresql": "SQLMIG_TEST_POSTGRES_URL", "mysql": "SQLMIG_TEST_MYSQL_URL"}


def required() -> set[str]:
    names = os.environ.get("SQLMIG_REQUIRE_BACKENDS", "").split(",")
    return {b.strip() for b in names if b.strip()}


def server_url(name: str) -> URL | None:
    """The admin URL of a server backend, or None when none is configured."""
    value = os.environ.get(ENV_VARS[name])
    if value:
        return make_url(value)
    return container_url(name)


@functools.cache  # one container per backend per test session
def container_url(name: str) -> URL | None:
    """The admin URL of a PostgreSQL or MariaDB container started for this session.

    Used only when the backend's URL variable is unset (a laptop with Docker
    and no database). None when the ``testcontainers`` extra is not installed,
    Docker is not reachable or the container does not start (a warning says
    why): the backend's tests then skip with one reason (or fail, when
    ``SQLMIG_REQUIRE_BACKENDS`` names the backend). The container is stopped
    when the session ends.
    """
    try:
        import docker
        import testcontainers  # noqa: F401
    except ImportError:
        return None
    try:
        docker.from_env().ping()
    except Exception:  # no socket, daemon down, no permission: all mean "no Docker"
        return None
    container: Any
    if name == "postgresql":
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers before the "community" package
            from testcontainers.postgres import PostgresContainer
        container = PostgresContainer("postgres:16-alpine", driver="psycopg")
    else:
        try:
            from testcontainers.community.mysql import MySqlContainer
        except ImportError:
            from testcontainers.mysql import MySqlContainer
        # root, so the suite may CREATE DATABASE per test
        container = MySqlContainer("mariadb:11", dialect="pymysql", username="root")
    try:
        container.start()
    except Exception as exc:  # e.g. the image cannot be pulled
        import warnings

        warnings.warn(f"no {name} container: {exc}", stacklevel=1)
        return None
    atexit.register(container.stop)
    return make_url(container.get_connection_url())


def unavailable(name: str, reason: str) -> None:
    if name in required():
        pytest.fail(f"backend {name} is required (SQLMIG_REQUIRE_BACKENDS) but {reason}")
    pytest.skip(f"{name}: {reason}")


@dataclass
class Backend:
    """One database for one test."""

    name: str
    url: URL

    @property
    def profile(self) -> DialectProfile:
        """What sqlmig knows of this database: ask it, not the name, what the database can do."""
        return profile_named(self.name)

    @property
    def url_string(self) -> str:
        return self.url.render_as_string(hide_password=False)

    def engine(self, **kwargs: object) -> Engine:
        return create_engine(self.url, **kwargs)  # type: ignore[arg-type]


class Databases:
    """Fresh databases on one server, made one ahead and dropped behind the tests.

    Making and dropping a database is mostly the server waiting on its disk
    (PostgreSQL's ``DROP DATABASE`` forces a checkpoint): a thread of the test
    process does both on a connection of its own while the tests run, so a test
    waits for neither. Each database is still made for one test alone, empty,
    and dropped after it; :func:`close_all` waits for every drop at the end of
    the session.
    """

    def __init__(self, name: str, admin_url: URL) -> None:
        self.name = name
        self.admin_url = admin_url
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_size=1)
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"databases-{name}")
        self.next: Future[str] | None = None
        self.drops: list[Future[None]] = []

    def _create(self) -> str:
        dbname = f"sqlmig_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {dbname}"))
        return dbname

    def _drop(self, dbname: str) -> None:
        force = " WITH (FORCE)" if self.name == "postgresql" else ""
        with self.admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {dbname}{force}"))

    def take(self) -> str:
        """A new, empty database's name (made ahead of time), and the next one begun."""
        made = self.next if self.next is not None else self.thread.submit(self._create)
        self.next = None
        dbname = made.result()
        self.next = self.thread.submit(self._create)
        return dbname

    def check_drops(self) -> None:
        """Raise the error of a drop that failed (the next test then fails with it)."""
        for done in [d for d in self.drops if d.done()]:
            self.drops.remove(done)
            done.result()

    def give_back(self, dbname: str) -> None:
        """Drop the database once the thread gets to it (before the next one is made)."""
        self.drops.append(self.thread.submit(self._drop, dbname))

    def close(self) -> None:
        """Drop the database made ahead, wait for every drop, close the connection."""
        if self.next is not None:
            try:
                self.give_back(self.next.result())
            except Exception:  # never made: nothing to drop
                pass
            self.next = None
        self.thread.shutdown(wait=True)
        self.admin.dispose()
        failed, self.drops = [d.exception() for d in self.drops], []
        for exc in failed:
            if exc is not None:
                raise exc


_databases: dict[str, Databases] = {}


def databases(name: str, admin_url: URL) -> Databases:
    """This process's :class:`Databases` for the server backend ``name``."""
    if name not in _databases:
        if not _databases:  # after a container's own stop: runs before it
            atexit.register(close_all)  # a process that ends without its session's end
        _databases[name] = Databases(name, admin_url)
    return _databases[name]


def close_all() -> None:
    """Wait for the databases still being dropped (at the end of the session)."""
    while _databases:
        _databases.popitem()[1].close()


@contextmanager
def fresh_database(name: str, tmp_path: Path) -> Iterator[Backend]:
    """A new, empty database on the given backend, dropped afterwards."""
    if name == "sqlite":
        yield Backend("sqlite", URL.create("sqlite", database=str(tmp_path / "test.db")))
        return
    admin_url = server_url(name)
    if admin_url is None:
        unavailable(name, f"{ENV_VARS[name]} is not set and no container could be started")
    assert admin_url is not None
    made = databases(name, admin_url)
    made.check_drops()
    try:
        dbname = made.take()
    except Exception as exc:  # any failure means the server is not usable
        unavailable(name, f"cannot create a database on {admin_url!r}: {exc}")
    try:
        yield Backend(name, admin_url.set(database=dbname))
    finally:
        made.give_back(dbname)
