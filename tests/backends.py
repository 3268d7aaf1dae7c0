"""Where the test suite gets its databases.

SQLite is a file in the test's temporary folder. PostgreSQL and MariaDB come
from ``SQLMIG_TEST_POSTGRES_URL`` / ``SQLMIG_TEST_MYSQL_URL`` (what CI sets);
every test that asks for one gets a fresh database of its own on that server,
created before and dropped after, so tests (and parallel workers) never see
each other's tables. Backends named in ``SQLMIG_REQUIRE_BACKENDS`` must be
available: their tests fail instead of skipping.
"""

from __future__ import annotations

import atexit
import functools
import os
import uuid
from collections.abc import Iterator
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
    dbname = f"sqlmig_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {dbname}"))
    except Exception as exc:  # any failure means the server is not usable
        admin.dispose()
        unavailable(name, f"cannot create a database on {admin_url!r}: {exc}")
    try:
        yield Backend(name, admin_url.set(database=dbname))
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if name == "postgresql" else ""
            conn.execute(text(f"DROP DATABASE IF EXISTS {dbname}{force}"))
        admin.dispose()
