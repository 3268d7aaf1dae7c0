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

:mod:`.sql_syntax` holds the shape of the SQL text rules every profile gives
(quotes, comments, dollar quotes), read by :mod:`sqlmig._sql_split`.

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
   with one line in :data:`MODULES` below: the module is imported the first
   time a connection of that dialect asks for its profile.
3. Add ``tests/test_dialects_<name>.py`` for what only it does.

A dialect not registered gets :data:`FALLBACK`: DDL assumed to commit
itself, and no lock.
"""

from __future__ import annotations

import importlib

from sqlalchemy.engine import Connection

from .base import DialectProfile

__all__ = ["FALLBACK", "MODULES", "PROFILES", "DialectProfile", "profile_for", "profile_named"]

#: Each SQLAlchemy dialect name, and the module and name of its profile.
MODULES: dict[str, tuple[str, str]] = {
    "sqlite": (".sqlite", "SQLITE"),
    "postgresql": (".postgresql", "POSTGRESQL"),
    "mysql": (".mysql", "MYSQL"),
    "mariadb": (".mysql", "MYSQL"),
}

#: The profiles asked for so far, by dialect name: a process that only ever
#: talks to SQLite never imports the others.
PROFILES: dict[str, DialectProfile] = {}

#: Anything else: assume DDL commits itself and there is no lock.
FALLBACK = DialectProfile("other")


def profile_for(conn: Connection) -> DialectProfile:
    """The profile for the connection's dialect (a conservative one if unknown)."""
    return profile_named(conn.dialect.name)


def profile_named(name: str) -> DialectProfile:
    """The profile for a dialect name such as ``"sqlite"`` (a conservative one if unknown)."""
    try:
        return PROFILES[name]
    except KeyError:
        pass
    where = MODULES.get(name)
    if where is None:
        return FALLBACK
    module, attribute = where
    profile: DialectProfile = getattr(importlib.import_module(module, __name__), attribute)
    return PROFILES.setdefault(name, profile)
