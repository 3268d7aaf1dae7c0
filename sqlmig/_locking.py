"""Migration locks: one runner at a time per history table.

PostgreSQL uses a session advisory lock, MySQL/MariaDB ``GET_LOCK``. Both are
held by a server session, so a killed process's lock is freed by the server.
SQLite has no session lock: each step's ``BEGIN IMMEDIATE`` is the lock (see
:mod:`sqlmig._dialects`). The key is derived from the database, the schema and
the table, so two history tables never block each other.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ._errors import ConfigError, LockTimeout

__all__ = [
    "MAX_LOCK_TIMEOUT",
    "AdvisoryLock",
    "MigrationLock",
    "NamedLock",
    "RunningMark",
    "checked_lock_timeout",
    "lock_key",
]

#: The longest wait the databases accept (a 32-bit count of milliseconds), in seconds.
MAX_LOCK_TIMEOUT = 2_147_483


def checked_lock_timeout(value: object) -> float:
    """``value`` as a number of seconds to wait for the lock.

    Raises:
        ConfigError: not a number, or not finite, negative or beyond what the
            databases can wait (about 24 days).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(
            f"lock_timeout must be a number of seconds, not {type(value).__name__}",
            key="lock_timeout",
        )
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond any float
        seconds = math.inf
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_LOCK_TIMEOUT):
        shown = repr(value) if math.isfinite(seconds) or isinstance(value, float) else "more"
        raise ConfigError(
            f"lock_timeout must be a number of seconds from 0 to {MAX_LOCK_TIMEOUT}, not {shown}",
            key="lock_timeout",
        )
    return seconds


log = logging.getLogger("sqlmig")


def _sleep(seconds: float) -> None:
    """Wait between polls; inside ``AsyncConnection.run_sync`` (a greenlet on the event
    loop's own thread) await ``asyncio.sleep`` instead, so the loop keeps running."""
    try:
        from sqlalchemy.util import concurrency

        in_loop = bool(concurrency.in_greenlet())
        wait: Any = getattr(concurrency, "await_", None) or concurrency.await_only
    except Exception:  # no greenlet installed, or an SQLAlchemy without these helpers
        in_loop = False
    if in_loop:
        wait(asyncio.sleep(seconds))
    else:
        time.sleep(seconds)


def lock_key(database: str | None, schema: str | None, table: str) -> bytes:
    """A stable digest naming one history table on one server."""
    return hashlib.sha256(f"sqlmig|{database or ''}|{schema or ''}|{table}".encode()).digest()


class MigrationLock(ABC):
    """A lock held by one server session, polled until ``timeout`` runs out."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    @abstractmethod
    def try_acquire(self, conn: Connection, *, transaction_scoped: bool) -> bool:
        """Take the lock if it is free; never waits."""

    @abstractmethod
    def release(self, conn: Connection) -> bool:
        """Free a session lock taken by :meth:`try_acquire`; False if it was not held."""

    @abstractmethod
    def holder(self, conn: Connection) -> str | None:
        """Who holds the lock now, for the timeout message."""

    def acquire(
        self, conn: Connection, timeout: float, *, transaction_scoped: bool = False
    ) -> bool:
        """Wait at most ``timeout`` seconds for the lock; True if another runner held it.

        ``transaction_scoped`` takes a lock that ends with the connection's
        current transaction (used when the caller hands in its transaction).

        Raises:
            LockTimeout: still held by another session when the time is up.
        """
        deadline = time.monotonic() + timeout
        delay = 0.01
        waited = False
        while not self._attempt(conn, transaction_scoped):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                holder = self._who(conn, transaction_scoped)
                who = f" by {holder}" if holder else ""
                raise LockTimeout(
                    f"the migration lock is held{who} for more than {timeout:g} s: another "
                    "runner is still migrating; wait for it, or raise lock_timeout",
                    timeout=timeout,
                    holder=holder,
                )
            if not waited:
                log.info("waiting for the migration lock (another runner holds it)")
                waited = True
            _sleep(min(delay, remaining))
            delay = min(delay * 2, 0.2)
        return waited

    def free(self, conn: Connection) -> bool:
        """Free a session lock in a short transaction of its own.

        Returns False when the lock was no longer held (something released it).
        """
        with conn.begin():
            return self.release(conn)

    def _attempt(self, conn: Connection, transaction_scoped: bool) -> bool:
        with _scope(conn, transaction_scoped):
            return self.try_acquire(conn, transaction_scoped=transaction_scoped)

    def _who(self, conn: Connection, transaction_scoped: bool) -> str | None:
        with _scope(conn, transaction_scoped):
            return self.holder(conn)


def _scope(conn: Connection, transaction_scoped: bool) -> AbstractContextManager[object]:
    """The caller's transaction for a transaction-scoped lock; else a short one of its own
    (a session lock outlives it, and the connection never sits idle inside it)."""
    return nullcontext() if transaction_scoped else conn.begin()


class AdvisoryLock(MigrationLock):
    """PostgreSQL ``pg_try_advisory_lock`` on a 64-bit key."""

    @property
    def id(self) -> int:
        return int.from_bytes(self.key[:8], "big", signed=True)

    def try_acquire(self, conn: Connection, *, transaction_scoped: bool) -> bool:
        fn = "pg_try_advisory_xact_lock" if transaction_scoped else "pg_try_advisory_lock"
        return bool(conn.execute(text(f"SELECT {fn}(:k)"), {"k": self.id}).scalar())

    def release(self, conn: Connection) -> bool:
        return bool(conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.id}).scalar())

    def holder(self, conn: Connection) -> str | None:
        unsigned = self.id & 0xFFFFFFFFFFFFFFFF
        pid = conn.execute(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1"
            ),
            {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF},
        ).scalar()
        return f"PostgreSQL process {pid}" if pid is not None else None


class NamedLock(MigrationLock):
    """MySQL/MariaDB ``GET_LOCK`` on a name derived from the key."""

    @property
    def name(self) -> str:
        return "sqlmig_" + self.key.hex()[:40]

    def try_acquire(self, conn: Connection, *, transaction_scoped: bool) -> bool:
        return conn.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": self.name}).scalar() == 1

    def release(self, conn: Connection) -> bool:
        return conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": self.name}).scalar() == 1

    def holder(self, conn: Connection) -> str | None:
        cid = conn.execute(text("SELECT IS_USED_LOCK(:n)"), {"n": self.name}).scalar()
        return f"MySQL connection {cid}" if cid is not None else None


class RunningMark:
    """Held by a runner while a step that no transaction protects runs (SQLite).

    Such a step runs after its ``success = false`` row is committed, outside
    any transaction, so SQLite's write lock says nothing about it: to another
    runner the row looks like one left by a runner that died. The mark tells
    them apart. It is an exclusive lock on a small file next to the database
    (``<database>-sqlmig-<table>``, an empty SQLite database), taken through
    SQLite's own file locking:

    - the operating system frees it when the holding process ends, ``kill -9``
      included, so a dead runner's row reads as failed at once;
    - another runner tests it without waiting and without touching the
      database or the history table, whose schema stays as it is;
    - unlike a PID or host name written in a row, it cannot be fooled by PID
      reuse or by runners in different containers sharing the file.

    The file stays after use (deleting a lock file races with its next taker).
    """

    def __init__(self, path: str) -> None:
        self.path = path

    @contextmanager
    def hold(self, timeout: float) -> Iterator[None]:
        """Take the mark for the block, waiting at most ``timeout`` for another holder.

        Raises:
            LockTimeout: another runner held it for longer than ``timeout``.
        """
        import sqlite3  # only where SQLite runs

        raw = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        try:
            try:
                raw.execute("BEGIN EXCLUSIVE")
            except sqlite3.OperationalError as exc:
                raise LockTimeout(
                    f"another runner's step (transactional = False) was in progress for "
                    f"more than {timeout:g} s: wait for it, or raise lock_timeout",
                    timeout=timeout,
                ) from exc
            yield
        finally:
            raw.close()  # ends the transaction, and the lock with it

    def held_elsewhere(self) -> bool:
        """True when another connection holds the mark now; never waits, never creates it."""
        import sqlite3
        from pathlib import Path

        if not os.path.exists(self.path):
            return False
        try:
            raw = sqlite3.connect(
                Path(self.path).as_uri() + "?mode=rw", uri=True, timeout=0, isolation_level=None
            )
        except sqlite3.OperationalError:  # no file: never held
            return False
        try:
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            raw.close()

    def wait(self, deadline: float, timeout: float) -> bool:
        """Poll until no one holds the mark; True if someone did.

        Raises:
            LockTimeout: still held at ``deadline`` (``time.monotonic()``).
        """
        delay = 0.01
        waited = False
        while self.held_elsewhere():
            waited = True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeout(
                    f"another runner's step (transactional = False) is still in progress "
                    f"after {timeout:g} s: wait for it to finish, or raise lock_timeout",
                    timeout=timeout,
                )
            _sleep(min(delay, remaining))
            delay = min(delay * 2, 0.2)
        return waited
