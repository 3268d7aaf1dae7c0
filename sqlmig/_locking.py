"""Migration locks: one runner at a time per history table, the part all backends share.

A :class:`MigrationLock` is held by a server session (PostgreSQL's advisory
lock, MySQL/MariaDB's ``GET_LOCK``: each in its backend's module under
:mod:`sqlmig._dialects`), so a killed process's lock is freed by the server;
this module polls it until ``lock_timeout``. SQLite has no session lock: each
step's ``BEGIN IMMEDIATE`` is the lock. The key is derived from the database,
the schema and the table, so two history tables never block each other.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from ._errors import ConfigError, LockTimeout

__all__ = [
    "MAX_LOCK_TIMEOUT",
    "MigrationLock",
    "ProgressMark",
    "checked_lock_timeout",
    "lock_key",
    "pause",
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


def pause(seconds: float) -> None:
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
            pause(min(delay, remaining))
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


class ProgressMark(Protocol):
    """Held by a runner while a step that no transaction protects runs.

    Where no session lock keeps runners apart (SQLite), it tells another
    runner that a step's ``success = false`` row is in progress rather than
    left by a runner that died (SQLite's: :class:`sqlmig._dialects.sqlite.RunningMark`).
    """

    def hold(self, timeout: float) -> AbstractContextManager[None]:
        """Take the mark for the block, waiting at most ``timeout`` for another holder."""
        ...

    def held_elsewhere(self) -> bool:
        """True when another runner holds the mark now; never waits."""
        ...

    def wait(self, deadline: float, timeout: float) -> bool:
        """Poll until no one holds the mark (True if someone did), or raise at ``deadline``."""
        ...
