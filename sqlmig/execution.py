"""Running one step: its transaction, its history row, and the guard on its connection."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from sqlalchemy.engine import Connection

from .dialects import DialectProfile
from .discovery import line_in
from .errors import MigrationFailed
from .history import HistoryStore
from .migration import AppliedMigration, Migration, StepFunction

__all__ = ["StepExecutor"]

log = logging.getLogger("sqlmig")


class _ForbiddenCall(Exception):
    """Raised inside a step that tried to end the transaction sqlmig owns."""

    def __init__(self, method: str) -> None:
        super().__init__(
            f"migration called conn.{method}(): sqlmig owns the step's transaction; "
            f"remove the {method}() call (each step is committed for you)"
        )
        self.method = method


class _RawGuard:
    """The driver connection of a step's ``conn.connection``, minus commit/rollback/close."""

    def __init__(self, raw: Any, tripped: list[str]) -> None:
        self._raw = raw
        self._tripped = tripped

    def __getattr__(self, name: str) -> Any:
        if name in ("commit", "rollback", "close"):
            return lambda *a, **k: _forbid(name, self._tripped)
        return getattr(self._raw, name)


def _forbid(method: str, tripped: list[str]) -> NoReturn:
    tripped.append(method)
    raise _ForbiddenCall(method)


class _GuardedConnection(Connection):
    """The class a step's connection wears while the step runs."""

    _sqlmig_tripped: list[str]

    def _stop(self, method: str) -> NoReturn:
        _forbid(method, self._sqlmig_tripped)

    def commit(self) -> None:
        self._stop("commit")

    def rollback(self) -> None:
        self._stop("rollback")

    def close(self) -> None:
        self._stop("close")

    def begin(self) -> Any:
        if self.in_transaction():
            self._stop("begin")
        return super().begin()  # autobegin on an AUTOCOMMIT connection

    def detach(self) -> None:
        self._stop("detach")

    def invalidate(self, exception: BaseException | None = None) -> None:
        self._stop("invalidate")

    @property
    def connection(self) -> Any:
        return _RawGuard(Connection.connection.fget(self), self._sqlmig_tripped)  # type: ignore[attr-defined]


@contextmanager
def guarded(conn: Connection) -> Iterator[list[str]]:
    """While inside, ``conn`` refuses to commit, roll back or close.

    Yields the list of refused calls, so a step that swallowed the error is
    still caught.
    """
    tripped: list[str] = []
    original = conn.__class__
    conn.__class__ = _GuardedConnection
    conn._sqlmig_tripped = tripped  # type: ignore[attr-defined]
    try:
        yield tripped
    finally:
        conn.__class__ = original
        del conn._sqlmig_tripped  # type: ignore[attr-defined]


class StepExecutor:
    """Applies and undoes steps on one connection, as the dialect profile says."""

    def __init__(
        self,
        conn: Connection,
        profile: DialectProfile,
        store: HistoryStore,
        *,
        nested: bool,
        lock_timeout: float,
        report: Callable[[str, Migration, int], None] | None = None,
    ) -> None:
        self.report = report
        self.conn = conn
        self.profile = profile
        self.store = store
        self.nested = nested
        self.lock_timeout = lock_timeout
        #: the database's change counter when this runner last read the whole
        #: history inside a write transaction; None once another connection
        #: has committed since (or where there is no such counter)
        self._known_changes: int | None = None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One step's transaction: a SAVEPOINT inside a caller's transaction."""
        if self.nested:
            with self.conn.begin_nested():
                yield
            return
        with self.conn.begin():
            self.profile.begin_step(self.conn, immediate=True, timeout=self.lock_timeout)
            yield

    @contextmanager
    def autocommit(self) -> Iterator[None]:
        """Outside any transaction, for a ``transactional = False`` step."""
        if self.nested:
            yield
            return
        default = self.conn.default_isolation_level
        self.conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            yield
        finally:
            if self.conn.in_transaction():
                self.conn.rollback()
            self.conn.execution_options(isolation_level=default)

    def protected(self, migration: Migration) -> bool:
        """True when a failure of ``migration`` leaves nothing behind."""
        if self.nested:
            return True
        return migration.transactional and self.profile.transactional_ddl

    def call(self, migration: Migration, fn: StepFunction, action: str) -> int:
        """Run ``fn(conn)`` under the guard; return its time in milliseconds.

        Raises:
            MigrationFailed: it raised, or called commit/rollback/close.
        """
        started = time.perf_counter()
        error: BaseException | None = None
        with guarded(self.conn) as tripped:
            try:
                fn(self.conn)
            except Exception as exc:
                error = exc
        if tripped and not isinstance(error, _ForbiddenCall):
            error = _ForbiddenCall(tripped[0])
        if error is not None:
            raise self.failure(migration, fn, action, error) from error
        return round((time.perf_counter() - started) * 1000)

    def failure(
        self, migration: Migration, fn: StepFunction, action: str, error: BaseException
    ) -> MigrationFailed:
        code = getattr(fn, "__code__", None)
        path = migration.path or (code.co_filename if code else None)
        line = line_in(error, code.co_filename if code else None)
        where = f"{path}:{line}" if line else f"{path}"
        if self.protected(migration):
            outcome = "its work was rolled back; fix it and run again"
        else:
            outcome = (
                "changes its DDL committed may remain; check the database by hand, "
                "then run repair() (sqlmig repair)"
            )
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return MigrationFailed(
            f"migration {migration.version} ({action}) failed at {where}: "
            f"{type(error).__name__}: {reason}; {outcome}",
            version=migration.version,
            path=path,
            line=line,
        )

    @property
    def uses_change_counter(self) -> bool:
        """Each step's write transaction is the lock, and the database counts others' commits.

        Then a history read inside a write transaction (:meth:`history_read`)
        lets the steps skip their re-check while no one else writes (SQLite).
        """
        profile = self.profile
        return profile.change_counter is not None and profile.lock is None and not self.nested

    def history_read(self) -> None:
        """Inside a write transaction that read the whole history: remember that moment.

        While no other connection has committed since, each step can skip its
        re-check of the history (SQLite: one ``PRAGMA data_version`` instead of
        a ``SELECT``, which costs more after each step's DDL).
        """
        if self.uses_change_counter:
            self._known_changes = self.profile.changes_seen(self.conn)

    def _alone_since_read(self) -> bool:
        """Inside a step's write transaction: has no one else written since the history read?

        True when a session lock keeps other runners out, or when the change
        counter has not moved since :meth:`history_read`. Once it has moved,
        every later step asks the history itself.
        """
        if self.profile.lock is not None or self.nested:
            return True
        if self._known_changes is not None:
            if self.profile.changes_seen(self.conn) == self._known_changes:
                return True
            self._known_changes = None
        return False

    def already_recorded(self, migration: Migration) -> bool:
        """Inside a step's write transaction: did another runner apply it meanwhile?"""
        if self._alone_since_read():
            return False
        return self.store.contains(self.conn, migration.version)

    def still_recorded(self, row: AppliedMigration) -> bool:
        """Inside an undo's write transaction: is the row still there?"""
        if self._alone_since_read():
            return True
        return self.store.contains(self.conn, row.version)

    def apply(self, migration: Migration) -> bool:
        """Apply one step and record it; False when another runner already had.

        Raises:
            MigrationFailed: the step failed (rolled back where the backend allows).
        """
        if self.protected(migration):
            with self.transaction():
                if self.already_recorded(migration):
                    return False
                ms = self.call(migration, migration.up, "up")
                self.store.record(self.conn, migration, execution_ms=ms)
            self._log("applied", migration, ms)
            return True
        with self.transaction():
            if self.already_recorded(migration):
                return False
            self.store.record(self.conn, migration, execution_ms=None, success=False)
        ms = self._run_unprotected(migration, migration.up, "up")
        with self.transaction():
            self.store.mark_done(self.conn, migration.version, ms)
        self._log("applied", migration, ms)
        return True

    def undo(self, row: AppliedMigration, migration: Migration) -> bool:
        """Run ``down()`` and delete the history row; False if another runner had.

        Raises:
            MigrationFailed: ``down()`` failed.
        """
        down = migration.down
        assert down is not None
        if self.protected(migration):
            with self.transaction():
                if not self.still_recorded(row):
                    return False
                ms = self.call(migration, down, "down")
                self.store.delete(self.conn, row.version)
        else:
            with self.transaction():
                self.store.mark_failed(self.conn, row.version)
            ms = self._run_unprotected(migration, down, "down")
            with self.transaction():
                self.store.delete(self.conn, row.version)
        self._log("undid", migration, ms)
        return True

    def _run_unprotected(self, migration: Migration, fn: StepFunction, action: str) -> int:
        if migration.transactional:
            with self.transaction():
                return self.call(migration, fn, action)
        with self.autocommit():
            return self.call(migration, fn, action)

    def _log(self, verb: str, migration: Migration, ms: int) -> None:
        log.info("%s %s in %d ms", verb, migration.label, ms)
        if self.report is not None:
            self.report(verb, migration, ms)
