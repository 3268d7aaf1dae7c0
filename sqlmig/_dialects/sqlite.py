"""SQLite: no session lock; each step's ``BEGIN IMMEDIATE`` is the lock.

Python's sqlite3 emits no ``BEGIN`` before DDL, so sqlmig emits its own, and
its own steps take the write lock up front (``BEGIN IMMEDIATE``). The wait for
that lock is the connection's ``busy_timeout``, tied to ``lock_timeout``. A
runner alone on the file skips its per-step history re-check while
``PRAGMA data_version`` (other connections' commits) stands still. A step
that no transaction protects shows itself with a :class:`RunningMark` next to
the database file, as no session lock can. Which URLs name a file, and which
a database in memory, is said here too.

Errors are recognised by SQLite's own result codes (``sqlite_errorcode``).
Only those that SQLite reports under its generic ``SQLITE_ERROR`` are told
apart by their message: a nested ``BEGIN``, and a missing column.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from sqlalchemy import URL
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError

from .._errors import LockTimeout
from .._locking import pause
from .base import DialectProfile
from .sql_syntax import SqlSyntax

__all__ = ["SQLITE", "RunningMark", "SQLiteProfile"]

#: The longest wait inside SQLite's busy handler, which Ctrl-C cannot stop,
#: while a step waits for another writer's lock (ms).
WAIT_SLICE_MS = 100

#: SQLite's primary result codes meaning "another connection holds the lock".
SQLITE_BUSY = 5
SQLITE_LOCKED = 6


class SQLiteProfile(DialectProfile):
    """SQLite's mechanics: its own ``BEGIN``, busy timeout, change counter, running marks."""

    #: Driver error codes meaning "locked"; extended codes keep them in the low byte.
    busy_codes: ClassVar[frozenset[int]] = frozenset({SQLITE_BUSY, SQLITE_LOCKED})

    def busy(self, exc: BaseException) -> bool:
        code = getattr(getattr(exc, "orig", exc), "sqlite_errorcode", None)
        return isinstance(code, int) and code & 0xFF in self.busy_codes

    def begin_step(self, conn: Connection, *, immediate: bool, timeout: float) -> None:
        """Emit the ``BEGIN`` sqlite3 leaves out (``BEGIN IMMEDIATE`` for sqlmig's own steps).

        A transaction the driver already began is left as it is. The wait for
        another writer's lock lasts the connection's busy timeout, as before,
        but is made of :data:`WAIT_SLICE_MS` slices in a loop of sqlmig's own:
        SQLite's busy handler ignores Ctrl-C, so a ``KeyboardInterrupt`` lands
        between two slices instead of at the end of the whole wait.

        Raises:
            LockTimeout: SQLite stayed locked by another writer past ``timeout``.
        """
        if not immediate:
            self._begin(conn, "BEGIN", timeout)
            return
        dbapi = conn.connection.dbapi_connection  # sqlmig's own PRAGMAs: no events
        assert dbapi is not None
        raw = dbapi.cursor()  # sync for sqlite3 and SQLAlchemy's aiosqlite adapter alike
        raw.execute(f"PRAGMA {self.busy_timeout_pragma}")
        row = raw.fetchone()
        waits = int(row[0] or 0) if row else 0
        if waits <= WAIT_SLICE_MS:
            raw.close()
            self._begin(conn, "BEGIN IMMEDIATE", timeout)
            return
        deadline = time.monotonic() + waits / 1000
        raw.execute(f"PRAGMA {self.busy_timeout_pragma} = {WAIT_SLICE_MS}")
        try:
            while True:
                try:
                    self._begin(conn, "BEGIN IMMEDIATE", timeout, patient=True)
                    return
                except OperationalError as exc:
                    if not self.busy(exc):
                        raise
                    if time.monotonic() >= deadline:  # locked for the last slice
                        raise self.locked_out(timeout) from exc
        finally:
            raw.execute(f"PRAGMA {self.busy_timeout_pragma} = {waits}")
            raw.close()

    def _begin(self, conn: Connection, sql: str, timeout: float, *, patient: bool = False) -> None:
        """Send ``sql``; when ``patient``, SQLite's "locked" is raised as it is.

        Raises:
            OperationalError: ``patient``, and SQLite stayed locked for one busy timeout.
            LockTimeout: not ``patient``, and SQLite stayed locked past ``timeout``.
        """
        try:
            conn.exec_driver_sql(sql)
        except OperationalError as exc:
            if self.busy(exc):
                if patient:
                    raise
                raise self.locked_out(timeout) from exc
            # SQLite reports this one with its generic SQLITE_ERROR code: only
            # the message tells it from any other error
            if "within a transaction" in str(exc.orig):
                return
            raise

    def get_busy_timeout(self, conn: Connection) -> int | None:
        return int(conn.exec_driver_sql(f"PRAGMA {self.busy_timeout_pragma}").scalar() or 0)

    def set_busy_timeout(self, conn: Connection, milliseconds: int) -> None:
        conn.exec_driver_sql(f"PRAGMA {self.busy_timeout_pragma} = {int(milliseconds)}")

    def changes_seen(self, conn: Connection) -> int | None:
        """Read each step: sent on the driver connection itself, a tenth of a statement's cost."""
        statement = f"PRAGMA {self.change_counter}"
        error = conn.dialect.loaded_dbapi.Error
        dbapi = conn.connection.dbapi_connection  # sqlmig's own PRAGMA: no events, no result
        assert dbapi is not None
        raw = dbapi.cursor()
        try:
            raw.execute(statement)
            row = raw.fetchone()
        except error as exc:  # wrapped as SQLAlchemy wraps any statement's
            raise DBAPIError.instance(statement, None, exc, error, dialect=conn.dialect) from exc
        finally:
            raw.close()
        return int(row[0] or 0) if row else 0

    def in_memory(self, url: URL) -> bool:
        database = url.database or ""
        if url.query.get("uri") in ("true", "1"):
            database = database.removeprefix("file:")
        return database in ("", ":memory:") or url.query.get("mode") == "memory"

    def database_file(self, url: URL) -> Path | None:
        if self.in_memory(url):
            return None
        database = url.database or ""
        if url.query.get("uri") in ("true", "1"):
            database = database.removeprefix("file:").partition("?")[0]
        return Path(database)

    def running_mark(self, conn: Connection, table: str) -> RunningMark | None:
        """The mark next to the database file; None for a database without a file
        (in memory: no other process can see it)."""
        path = self.database_file(conn.engine.url)
        if path is None:
            return None
        # next to the file itself, however it is reached (a symbolic link to it, say); a
        # table name's path separators would point elsewhere, so they become "_"
        name = "".join("_" if c in ("/", "\\", "\0") else c for c in table)
        return RunningMark(f"{os.path.realpath(path)}-sqlmig-{name}")


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
            pause(min(delay, remaining))
            delay = min(delay * 2, 0.2)
        return waited


SQLITE = SQLiteProfile(
    "sqlite",
    transactional_ddl=True,
    sql_syntax=SqlSyntax(backquotes=True, brackets=True),
    caller_transaction_ok=True,
    busy_timeout_pragma="busy_timeout",
    change_counter="data_version",
    connect_timeout_arg="timeout",
    title="SQLite",
    # kept to the millisecond, as text padded to microseconds
    history_now_sql="strftime('%Y-%m-%d %H:%M:%f000', 'now')",
    missing_schema_hint=(
        "SQLite has no database attached as schema {schema!r}: leave schema unset "
        "(a SQLite file is one database), or attach it on every connection"
    ),
    missing_column_texts=("no such column", "has no column named"),
    rebuilds_tables_for_alter=True,
)
