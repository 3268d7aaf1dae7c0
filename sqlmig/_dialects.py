"""What differs between databases, as data, in one place.

The runner asks a :class:`DialectProfile` how to begin a step's transaction,
whether DDL inside it can be rolled back, and which lock to take. It never
branches on a dialect name itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from ._errors import LockTimeout
from ._locking import AdvisoryLock, MigrationLock, NamedLock, RunningMark, lock_key

__all__ = ["DialectProfile", "profile_for"]


@dataclass(frozen=True)
class DialectProfile:
    """How sqlmig runs on one kind of database."""

    name: str
    #: DDL inside a transaction is rolled back with it (else: failed-row protocol).
    transactional_ddl: bool
    #: The lock class held for a whole run; ``None`` when each step's write
    #: transaction is the lock (SQLite).
    lock: Callable[[bytes], MigrationLock] | None
    #: A caller's open transaction survives DDL, so steps may run in savepoints.
    caller_transaction_ok: bool
    #: Statement that really opens a step's transaction, when the driver does not.
    begin: str | None = None
    #: Seconds-to-wait setting tied to ``lock_timeout`` (SQLite ``busy_timeout``).
    busy_timeout_pragma: str | None = None
    #: A number that changes when another connection commits to the database
    #: (SQLite ``data_version``), for runners that hold no session lock.
    change_counter: str | None = None
    #: Runners hold no session lock, so a step running outside a transaction
    #: shows itself with a :class:`RunningMark` next to the database file.
    running_marks: bool = False
    #: Driver error codes meaning "another connection holds the lock" (SQLite
    #: ``SQLITE_BUSY``, ``SQLITE_LOCKED``; extended codes keep them in the low byte).
    busy_codes: frozenset[int] = frozenset()
    #: The driver's connect argument that sets, in seconds, how long each
    #: statement waits for a lock (sqlite3's ``timeout``, 5 s by default).
    connect_timeout_arg: str | None = None
    #: The database's name in messages.
    title: str = ""
    #: Query returning the current database and its default schema (the lock's key).
    identity: str | None = None
    #: Schemas are databases (MySQL): the lock's key names the table's own schema.
    schema_is_database: bool = False
    #: Settings for the runner's connection while it holds the lock, each applied
    #: only where the server has it. PostgreSQL 14+: check every second, even in
    #: the middle of a statement, whether the client is still there, so the
    #: session of a killed runner ends (and frees the lock) within seconds.
    session_settings: tuple[tuple[str, str], ...] = ()
    #: Query that applies one setting (``:name``, ``:value``, ``:local``) if the
    #: server has it, returning its previous value; no row if it has not.
    set_setting: str | None = None

    def busy(self, exc: BaseException) -> bool:
        """Whether ``exc`` (a driver error, or SQLAlchemy's wrapper of one) means "locked"."""
        code = getattr(getattr(exc, "orig", exc), "sqlite_errorcode", None)
        return isinstance(code, int) and code & 0xFF in self.busy_codes

    def locked_out(self, timeout: float) -> LockTimeout:
        """The error for a wait on the database's own write lock that ran out."""
        return LockTimeout(
            f"the {self.title or self.name} database stayed locked by another connection for "
            f"more than {timeout:g} s: another runner is migrating; wait, or raise lock_timeout",
            timeout=timeout,
        )

    def lock_for(self, conn: Connection, table: str, schema: str | None) -> MigrationLock | None:
        """The lock guarding history table ``table`` on ``conn``'s database, if any.

        Its key names the database, the schema (the default one when ``None``)
        and the table, so two history tables never block each other. The
        names come from the server, never from how the URL is spelled
        (``/app``, ``?dbname=app`` and ``PGDATABASE=app`` take one lock).
        """
        if self.lock is None:
            return None
        database, default_schema = self._identity(conn)
        schema = schema or default_schema
        if self.schema_is_database:  # MySQL: the table's schema is its database
            database = schema
        return self.lock(lock_key(database, schema, table))

    def _identity(self, conn: Connection) -> tuple[str | None, str | None]:
        """The current database and default schema, as the server names them."""
        if self.identity is None:
            return conn.engine.url.database, conn.dialect.default_schema_name
        scope = nullcontext() if conn.in_transaction() else conn.begin()
        with scope:
            database, schema = conn.exec_driver_sql(self.identity).one()
        return database, schema

    def running_mark(self, conn: Connection, table: str) -> RunningMark | None:
        """The mark of a step of history ``table`` running outside a transaction, if any.

        None where a session lock already keeps runners apart, and for a
        database without a file (in memory: no other process can see it).
        """
        if not self.running_marks:
            return None
        path = conn.engine.url.database or ""
        if path.startswith("file:"):  # a URI file name
            path = path[5:].split("?", 1)[0]
        if path in ("", ":memory:") or "mode=memory" in (conn.engine.url.database or ""):
            return None
        return RunningMark(os.path.realpath(f"{path}-sqlmig-{table}"))

    def tune_session(self, conn: Connection, *, local: bool) -> list[tuple[str, str]]:
        """Apply :attr:`session_settings` inside the current transaction.

        ``local`` settings end with the transaction; the others last for the
        session and are returned as ``(name, previous value)`` for
        :meth:`untune_session` (a pooled connection must not keep them).
        """
        if self.set_setting is None:
            return []
        previous = []
        for name, value in self.session_settings:
            row = conn.execute(
                text(self.set_setting), {"name": name, "value": value, "local": local}
            ).first()
            if row is not None and not local:
                previous.append((name, str(row[0])))
        return previous

    def untune_session(self, conn: Connection, previous: list[tuple[str, str]]) -> None:
        """Give settings changed by :meth:`tune_session` their previous values back."""
        if self.set_setting is None:
            return
        for name, value in previous:
            conn.execute(text(self.set_setting), {"name": name, "value": value, "local": False})

    def begin_step(self, conn: Connection, *, immediate: bool, timeout: float) -> None:
        """Make the transaction SQLAlchemy began real on the server, where needed.

        Python's sqlite3 emits no BEGIN before DDL; sqlmig emits its own
        (``BEGIN IMMEDIATE`` for its own steps: the write lock). A transaction
        the driver already began is left as it is.

        Raises:
            LockTimeout: SQLite stayed locked by another writer past ``timeout``.
        """
        if self.begin is None:
            return
        statement = f"{self.begin} IMMEDIATE" if immediate else self.begin
        try:
            conn.exec_driver_sql(statement)
        except OperationalError as exc:
            if self.busy(exc):
                raise self.locked_out(timeout) from exc
            if "within a transaction" in str(exc.orig):
                return
            raise

    def get_busy_timeout(self, conn: Connection) -> int | None:
        if self.busy_timeout_pragma is None:
            return None
        return int(conn.exec_driver_sql(f"PRAGMA {self.busy_timeout_pragma}").scalar() or 0)

    def set_busy_timeout(self, conn: Connection, milliseconds: int) -> None:
        if self.busy_timeout_pragma is not None:
            conn.exec_driver_sql(f"PRAGMA {self.busy_timeout_pragma} = {int(milliseconds)}")

    def changes_seen(self, conn: Connection) -> int | None:
        """The counter of other connections' commits, where the database keeps one.

        Read inside a write transaction it is exact: no one else can commit
        until that transaction ends, and ``conn``'s own commits never move it.
        """
        if self.change_counter is None:
            return None
        return int(conn.exec_driver_sql(f"PRAGMA {self.change_counter}").scalar() or 0)


PROFILES = {
    "sqlite": DialectProfile(
        "sqlite",
        transactional_ddl=True,
        lock=None,
        caller_transaction_ok=True,
        begin="BEGIN",
        busy_timeout_pragma="busy_timeout",
        change_counter="data_version",
        running_marks=True,
        busy_codes=frozenset({5, 6}),
        connect_timeout_arg="timeout",
        title="SQLite",
    ),
    "postgresql": DialectProfile(
        "postgresql",
        transactional_ddl=True,
        lock=AdvisoryLock,
        caller_transaction_ok=True,
        identity="SELECT current_database(), current_schema()",
        session_settings=(("client_connection_check_interval", "1s"),),
        # pg_settings reads every value before set_config() runs: the row has the old one
        set_setting=(
            "SELECT setting, set_config(name, :value, :local) FROM pg_settings WHERE name = :name"
        ),
    ),
    "mysql": DialectProfile(
        "mysql",
        transactional_ddl=False,
        lock=NamedLock,
        caller_transaction_ok=False,
        identity="SELECT DATABASE(), DATABASE()",
        schema_is_database=True,
    ),
}
PROFILES["mariadb"] = PROFILES["mysql"]

#: Anything else: assume DDL commits itself and there is no lock.
FALLBACK = DialectProfile("other", transactional_ddl=False, lock=None, caller_transaction_ok=False)


def profile_for(conn: Connection) -> DialectProfile:
    """The profile for the connection's dialect (a conservative one if unknown)."""
    return profile_named(conn.dialect.name)


def profile_named(name: str) -> DialectProfile:
    """The profile for a dialect name such as ``"sqlite"`` (a conservative one if unknown)."""
    return PROFILES.get(name, FALLBACK)
