"""Holding a runner's migration lock from the test itself.

PostgreSQL and MariaDB: the same session lock the runner asks for (its key
from the database, schema and table). SQLite: a write transaction
(``BEGIN IMMEDIATE``) on the file, which is what each runner step waits for.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from backends import Backend
from sqlmig._dialects import profile_for
from sqlmig._locking import MigrationLock


@dataclass
class Held:
    """The lock as held by the test: who holds it, as the server names the session."""

    holder: int | None  # PostgreSQL backend pid, MySQL connection id, None on SQLite
    lock: MigrationLock | None


def runner_lock(
    conn: Connection, table: str = "migrations", schema: str | None = None
) -> MigrationLock:
    """The lock a runner with ``table`` / ``schema`` takes on ``conn``'s database."""
    lock = profile_for(conn).lock_for(conn, table, schema)
    assert lock is not None, f"{conn.dialect.name} has no session lock"
    return lock


@contextmanager
def held_lock(
    backend: Backend, table: str = "migrations", schema: str | None = None
) -> Iterator[Held]:
    """Hold the migration lock of ``table`` until the block ends."""
    if backend.name == "sqlite":
        assert backend.url.database
        raw = sqlite3.connect(backend.url.database, isolation_level=None)
        try:
            raw.execute("BEGIN IMMEDIATE")
            yield Held(None, None)
            raw.execute("ROLLBACK")
        finally:
            raw.close()
        return
    engine = backend.engine(isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            lock = runner_lock(conn, table, schema)
            assert lock.try_acquire(conn, transaction_scoped=False)
            me = "pg_backend_pid()" if backend.name == "postgresql" else "CONNECTION_ID()"
            try:
                yield Held(int(conn.execute(text(f"SELECT {me}")).scalar_one()), lock)
            finally:
                lock.release(conn)
    finally:
        engine.dispose()


def lock_is_free(backend: Backend, table: str = "migrations") -> bool:
    """True when another session can take the lock this instant (and gives it back)."""
    if backend.name == "sqlite":
        assert backend.url.database
        raw = sqlite3.connect(backend.url.database, isolation_level=None, timeout=0)
        try:
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            raw.close()
    engine = backend.engine(isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            lock = runner_lock(conn, table)
            if not lock.try_acquire(conn, transaction_scoped=False):
                return False
            lock.release(conn)
            return True
    finally:
        engine.dispose()


class _Waiting(logging.Handler):
    """Sets ``event`` when a runner logs that it waits for the lock."""

    def __init__(self) -> None:
        super().__init__()
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "waiting for the migration lock" in record.getMessage():
            self.event.set()


@contextmanager
def lock_waits() -> Iterator[threading.Event]:
    """An event set once a runner of this process says it waits for the migration lock.

    PostgreSQL and MariaDB runners say so; on SQLite the wait is the file's
    own, inside the driver, and nothing is said.
    """
    handler = _Waiting()
    logger = logging.getLogger("sqlmig")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.event
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
