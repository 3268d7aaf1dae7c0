"""What differs between databases, as data, one module per database.

The runner asks a :class:`DialectProfile` how to begin a step's transaction,
whether DDL inside it can be rolled back, and which lock to take. It never
branches on a dialect name itself. :mod:`.base` holds the profile: what a
backend can do as data fields, and default methods. Each backend's module
holds its profile and what only it needs:

- :mod:`.sqlite`: its own ``BEGIN IMMEDIATE`` as the lock, the busy
  timeout, the change counter and the running mark;
- :mod:`.postgresql`: the advisory lock and the session's settings;
- :mod:`.mysql`: the ``GET_LOCK`` named lock (MariaDB shares it).

Adding a backend:

1. Write ``sqlmig/_dialects/<name>.py`` with its profile: a
   :class:`DialectProfile` whose fields say what it can do, made with
   ``dataclasses.replace()`` from a close relative where only values differ
   (a PostgreSQL-compatible database: ``replace(POSTGRESQL, name=...,
   lock=ItsLock)``), or a subclass overriding the methods whose mechanics
   differ (as :class:`~.sqlite.SQLiteProfile` does). A lock is a
   :class:`~sqlmig._locking.MigrationLock` with ``try_acquire``,
   ``release`` and ``holder``.
2. Register it under its SQLAlchemy dialect name (``conn.dialect.name``)
   with one line in :data:`PROFILES` below.
3. Add ``tests/test_dialects_<name>.py`` for what only it does.

A dialect not registered gets :data:`FALLBACK`: DDL assumed to commit
itself, and no lock.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from .base import DialectProfile
from .mysql import MYSQL
from .postgresql import POSTGRESQL
from .sqlite import SQLITE

__all__ = ["FALLBACK", "PROFILES", "DialectProfile", "profile_for", "profile_named"]

#: Each SQLAlchemy dialect name and its profile.
PROFILES: dict[str, DialectProfile] = {
    "sqlite": SQLITE,
    "postgresql": POSTGRESQL,
    "mysql": MYSQL,
    "mariadb": MYSQL,
}

#: Anything else: assume DDL commits itself and there is no lock.
FALLBACK = DialectProfile("other")


def profile_for(conn: Connection) -> DialectProfile:
    """The profile for the connection's dialect (a conservative one if unknown)."""
    return profile_named(conn.dialect.name)


def profile_named(name: str) -> DialectProfile:
    """The profile for a dialect name such as ``"sqlite"`` (a conservative one if unknown)."""
    return PROFILES.get(name, FALLBACK)
