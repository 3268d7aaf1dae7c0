"""A tenant's schema as the session's scope for one run (PostgreSQL schema per tenant).

With ``steps_in_schema`` (each ``Target(url, schema=...)``), a run's
connection is given the tenant's schema as its ``search_path`` before anything
else is read, so the run's scope (read with the lock, given back after each
step) *is* the tenant's: the same unqualified files migrate every tenant. A
run that writes creates the schema when it is missing. At the end of the run
the connection gets the ``search_path`` it had back, so a pooled connection
does not keep the tenant's. What each backend sends is its profile's data
(``enter_tenant_schema`` and its neighbours in :mod:`sqlmig._dialects.base`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ._dialects import DialectProfile
from ._errors import DatabaseError, UsageError
from ._urls import mask, scrub

__all__ = ["in_tenant_schema", "refuse_without_schemas"]

log = logging.getLogger("sqlmig")


def refuse_without_schemas(profile: DialectProfile, schema: str) -> None:
    """Raise when ``profile``'s database keeps no tenant in a schema.

    Raises:
        UsageError: a schema per tenant on a database other than PostgreSQL.
    """
    if profile.enter_tenant_schema is None:
        title = profile.title or profile.name
        raise UsageError(
            f"schema {schema!r} as a tenant's schema needs PostgreSQL, not {title}: on "
            "MySQL/MariaDB give each tenant's database in its URL, on SQLite its file"
        )


@contextmanager
def in_tenant_schema(
    conn: Connection, profile: DialectProfile, schema: str, *, create: bool, own: bool
) -> Iterator[bool]:
    """``schema`` first on the connection's ``search_path`` for the block; created if
    missing when ``create``; the connection's own ``search_path`` back at the end.
    Gives whether the schema existed before.

    ``own``: the connection is the runner's (not the caller's), so a transaction
    left open at the end is rolled back before the setting is given back.

    Raises:
        UsageError: the database keeps no tenant in a schema.
        sqlalchemy.exc.DBAPIError: the schema cannot be created (the session
            translates it).
    """
    refuse_without_schemas(profile, schema)
    assert profile.enter_tenant_schema is not None
    quoted = conn.dialect.identifier_preparer.quote_identifier(schema)
    with _transaction(conn):
        before, _, exists = conn.execute(
            text(profile.enter_tenant_schema), {"value": quoted, "schema": schema}
        ).one()
    try:
        if create and not exists:
            _create(conn, profile, schema, quoted)
        yield bool(exists)
    finally:
        _leave(conn, profile, str(before), own=own)


def _transaction(conn: Connection) -> Any:
    """A short transaction of its own, or a savepoint inside the caller's."""
    return conn.begin_nested() if conn.in_transaction() else conn.begin()


def _create(conn: Connection, profile: DialectProfile, schema: str, quoted: str) -> None:
    """Create the tenant's schema; another runner creating it at the same moment is fine."""
    assert profile.create_tenant_schema is not None
    try:
        with _transaction(conn):
            conn.exec_driver_sql(profile.create_tenant_schema.format(name=quoted))
    except DBAPIError as exc:  # IF NOT EXISTS still races on the catalog's unique index
        with _transaction(conn):
            if inspect(conn).has_schema(schema):
                return
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        reason = scrub(reason, conn.engine.url)
        url = mask(conn.engine.url)
        raise DatabaseError(
            f"cannot create the tenant's schema {quoted} on {url} ({reason}): "
            f"create it first (CREATE SCHEMA {quoted} AUTHORIZATION <the user>), or grant the "
            "user CREATE on the database",
            action="create schema",
            url=url,
        ) from exc
    log.info("created schema %s", quoted)


def _leave(conn: Connection, profile: DialectProfile, before: str, *, own: bool) -> None:
    """Give the connection the ``search_path`` it had; one of the runner's that
    cannot is closed (inside the caller's transaction, its rollback takes the
    setting back too)."""
    if conn.invalidated or profile.leave_tenant_schema is None:
        return
    try:
        if own and conn.in_transaction():
            conn.rollback()
        with _transaction(conn):
            conn.execute(text(profile.leave_tenant_schema), {"value": before})
    except Exception as exc:
        if own:
            conn.invalidate()  # a new session starts with the server's search_path
        log.warning("could not restore the connection's search_path (%s)", exc)
