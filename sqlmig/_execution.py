"""Running one step: its transaction, its history row, and the check that it kept both.

The module is long because a step's run is one sequence that must stay whole
to be read: its transaction, the guard around the call, the history row in the
same transaction, the check afterwards, the failed-row protocol where DDL
commits itself, and the planning again between steps when another runner wrote.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cached_property
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ._dialects import DialectProfile
from ._errors import DatabaseError, DatabaseUnavailable, MigrationFailed
from ._guard import ForbiddenCall, Guard, GuardState, StepMark, driver_in_transaction
from ._history import History, HistoryStore
from ._locking import ProgressMark
from ._migration import AppliedMigration, Migration, StepCallback, StepFunction
from ._urls import mask, scrub

#: One step of a run: the history row it undoes (None for an upgrade), and its file.
PlanItem = tuple[AppliedMigration | None, Migration]

__all__ = ["PlanItem", "StepExecutor"]

log = logging.getLogger("sqlmig")

LOST = (
    "its transaction was ended inside the step, so its work may be committed: check the "
    "database by hand, then run repair() (sqlmig repair), or stamp it if its work is complete"
)


class TransactionLost(Exception):
    """A step ended the transaction sqlmig began; carries the ``MigrationFailed`` to raise."""

    def __init__(self, failure: MigrationFailed, started: float) -> None:
        super().__init__(str(failure))
        self.failure = failure
        #: when the step started (``time.perf_counter()``), for ``on_step``
        self.started = started


class TablesLeftLocked(Exception):
    """A step returned holding MySQL's ``LOCK TABLES``, which shut out the history table."""


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
        on_step: StepCallback | None = None,
        scope: str | None = None,
    ) -> None:
        #: the session's scope at the start of the run (PostgreSQL ``search_path``,
        #: MySQL's current database), given back after each step
        self.scope = scope
        #: told when each applied or undone step starts, is done, or fails
        self.on_step = on_step
        self.conn = conn
        self.profile = profile
        self.store = store
        self.nested = nested
        self.lock_timeout = lock_timeout
        #: the database's change counter when this runner last read the whole
        #: history inside a write transaction; None once another connection
        #: has committed since (or where there is no such counter)
        self._known_changes: int | None = None
        #: the runner's planning, applied to a history read again between steps
        self.replan: Callable[[History], list[PlanItem]] | None = None
        #: the run's steps as planned again inside the last step's transaction
        self.replanned: list[PlanItem] | None = None
        self.guard = Guard(conn)
        #: the step ``on_step`` was told starts, and when, until it is told it ended
        self._told: tuple[Migration, float] | None = None
        #: the savepoint that proves a watched step kept its transaction
        self.mark = StepMark(profile.send_own, profile.send_own_each)

    def watching(self) -> AbstractContextManager[None]:
        """Keep the guard on the connection while a run's steps go (once, not per step)."""
        return self.guard.installed()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One step's transaction: a SAVEPOINT inside a caller's transaction.

        A failure inside is rolled back; a clean-up that fails too (a step that
        ended the transaction itself) is logged, never raised over the failure.
        """
        trans = self.conn.begin_nested() if self.nested else self.conn.begin()
        try:
            if not self.nested:
                self.profile.begin_step(self.conn, immediate=True, timeout=self.lock_timeout)
            yield
        except BaseException:
            self.discard(trans)
            raise
        if trans.is_active:
            trans.commit()
        elif self.conn.in_transaction() and not self.nested:  # one SQLAlchemy began anew
            self.conn.commit()

    def discard(self, trans: Any) -> None:
        """Roll ``trans`` back after a failure, whatever state a step left it in."""
        try:
            if trans.is_active:
                trans.rollback()
            elif self._current(trans):  # left inactive by a refused commit: SQLAlchemy
                trans.rollback()  # only forgets it, so the database is told here
                if not self.nested:
                    self.conn.connection.rollback()
            elif self.conn.in_transaction() and not self.nested:
                self.conn.rollback()
        except Exception as exc:
            log.warning("could not roll back after the failure: %s", exc)
            if not self.nested and self.conn.in_transaction():
                self.conn.invalidate()  # a connection in an unknown state is not reused

    def _current(self, trans: Any) -> bool:
        """Whether ``trans`` is still the connection's (possibly inactive) transaction."""
        conn = self.conn
        current = conn.get_nested_transaction() if self.nested else conn.get_transaction()
        return current is trans

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

    def call(
        self,
        migration: Migration,
        fn: StepFunction,
        action: str,
        *,
        watch: bool = False,
        announce: bool = True,
        then: Callable[[int], str] | None = None,
    ) -> int:
        """Run ``fn(conn)`` under the guard; return its time in milliseconds.

        ``announce``: tell ``on_step`` the step starts (unless the caller did,
        before its failed row was written).

        ``watch``: the step runs inside a transaction that must still be the one
        sqlmig began when it returns (checked by SQLAlchemy's state, the driver's
        state and a savepoint taken before the step, see :class:`StepMark`: a
        commit, however it was sent, ends the transaction and every savepoint in it).
        ``then``: with ``watch``, a statement of sqlmig's own for the step's time (its
        history change), run after a step that succeeded, with the mark's release.

        Raises:
            MigrationFailed: it raised, or tried to commit, roll back or close.
            TransactionLost: its transaction was ended anyway (work may be committed).
        """
        if announce:
            self.announce(migration, action)
        started = time.perf_counter()
        error: BaseException | None = None
        trans = self.conn.get_nested_transaction() if self.nested else self.conn.get_transaction()
        if watch:
            self.mark.take(self.conn)
        autocommit = not (migration.transactional or self.nested)
        # a failure's message says whether it changed anything only where nothing undoes it
        with self.guard.step(autocommit=autocommit, count=not self.protected(migration)) as state:
            try:
                returned = fn(self.conn)
                if inspect.isgenerator(returned) or inspect.isawaitable(returned):
                    if hasattr(returned, "close"):
                        returned.close()  # never started: nothing of it ran
                    raise TypeError(
                        f"{action}() returned a {type(returned).__name__} instead of running: "
                        "a step must be a plain function that runs its statements"
                    )
            except Exception as exc:
                error = exc
        if state.tripped and not isinstance(error, ForbiddenCall):
            error = ForbiddenCall(state.tripped[0], autocommit=autocommit)
        ms = round((time.perf_counter() - started) * 1000)
        if self._gone(error):  # the server ended the session: nothing to release or check
            raise self._lost_connection(migration, action, error) from error
        if watch:
            own = self._own_after(ms, then if error is None else None)
            lost, refused, rows = self._intact(trans, error is None, then=own)
            if lost and self._gone(refused):  # not a step that ended its transaction
                raise self._lost_connection(migration, action, refused) from refused
            if lost and error is None and self._aborted(trans):  # its settings rolled back too
                self._failed(migration, started)
                raise self._swallowed(migration, fn, action)
            if refused is not None and error is None:  # sqlmig's own statement after it
                raise refused  # (after a failure, the rollback that follows resets the scope)
            if then is not None and error is None and rows == 0:
                raise self._unwritten(migration, action)
        else:  # under the failed-row protocol: its row stays failed (see apply, undo)
            lost = not autocommit and not self.profile.kept_transaction(self.conn)
            self._rescope(failed=error is not None or lost)
        if lost:
            # on_step hears of it once the failed row is kept: whatever it raises, the
            # next run finds the row (see _run_protected)
            cause = error or ForbiddenCall("ended its transaction in a way sqlmig cannot refuse")
            failure = self.failure(migration, fn, action, cause, outcome=LOST)
            failure.__cause__ = cause
            raise TransactionLost(failure, started)
        if error is not None:
            self._failed(migration, started)
            raise self.failure(migration, fn, action, error, state=state) from error
        return ms

    def _rescope(self, *, failed: bool) -> None:
        """Give the session the run's scope back after a step (see ``keep_scope``).

        After a failure, a reset that the failed transaction refuses is left
        to the rollback that follows, which takes the step's change back too
        where the database rolls settings back (PostgreSQL); elsewhere the
        writes that follow a failure and the end of the run reset it again.
        """
        try:
            self.profile.keep_scope(self.conn, self.scope)
        except SQLAlchemyError:
            if not failed:
                raise

    def announce(self, migration: Migration, action: str) -> None:
        """Tell ``on_step`` that ``migration`` starts, before anything of it is written.

        Called inside the transaction that would write its failed row (or run
        it), so that what the callback raises rolls that back: the step did
        not run, and the error says so in a note.
        """
        if self.on_step is None:
            return
        try:
            self.on_step(migration, "start", 0.0)
        except BaseException as exc:
            exc.add_note(
                f"migration {migration.version} ({action}) did not run: on_step raised when "
                "told it starts, and nothing of it was written"
            )
            raise
        self._told = (migration, time.perf_counter())

    @contextmanager
    def _ends_told(self, migration: Migration, action: str) -> Iterator[None]:
        """Around a step's whole run: a step ``on_step`` was told starts and that fails
        in any way (its history change refused, the connection lost) is told "failed".

        A failure that comes of a lost connection is :class:`DatabaseUnavailable`.
        """
        self._told = None
        try:
            yield
        except Exception as exc:
            told, self._told = self._told, None
            if told is not None:
                self._failed(*told)
            # sqlmig's own statement of a step nothing else protects (where its failed row
            # stays): said here; elsewhere the session names the statement (``translated``)
            own = isinstance(exc, DBAPIError) and self.protected(migration)
            if not (own or isinstance(exc, DatabaseUnavailable)) and self._gone(exc):
                raise self._lost_connection(migration, action, exc) from exc
            raise
        except BaseException:
            if self._told is not None:
                self._failed(*self._told)
            raise

    def _gone(self, error: BaseException | None) -> bool:
        """Whether the connection to the server was lost (``error``: what was raised)."""
        for exc in (error, getattr(error, "__cause__", None)):
            if isinstance(exc, DBAPIError) and exc.connection_invalidated:
                return True
        conn = self.conn
        if conn.invalidated or conn.closed:
            return True
        return self.profile.connection_lost(conn)

    def _lost_connection(
        self, migration: Migration, action: str, error: BaseException | None
    ) -> DatabaseUnavailable:
        """The error for a connection lost while ``migration`` ran or was recorded."""
        url = mask(self.conn.engine.url)
        cause: BaseException | None = error
        while isinstance(cause, (MigrationFailed, TransactionLost)) and cause.__cause__:
            cause = cause.__cause__
        orig = getattr(cause, "orig", None) or cause
        reason = str(orig).strip().splitlines()[0] if orig is not None and str(orig).strip() else ""
        reason = f" ({scrub(reason, self.conn.engine.url)})" if reason else ""
        v = migration.version
        if self.protected(migration):
            outcome = (
                "the database rolls its transaction back, so nothing of the step was applied "
                "or recorded: check that the server is up, then run again"
            )
        else:
            outcome = (
                "its history row stays success = false and what its DDL committed may remain: "
                f"check the database by hand, then run repair() (sqlmig repair), or stamp({v!r}) "
                f"(sqlmig stamp {v}) if its work is complete"
            )
        return DatabaseUnavailable(
            f"lost the connection to {url} while migration {v} ({action}) ran{reason}; {outcome}",
            url=url,
        )

    def _failed(self, migration: Migration, started: float) -> None:
        self._told = None
        if self.on_step is not None:
            self.on_step(migration, "failed", time.perf_counter() - started)

    @cached_property
    def _scope_statement(self) -> str | None:
        """The statement giving the session its scope back after a step, if any."""
        return self.profile.scope_statement(self.conn, self.scope)

    def _own_after(self, ms: int, then: Callable[[int], str] | None) -> tuple[str, ...]:
        """sqlmig's own statements after a watched step: the scope given back, then
        ``then(ms)`` (its history change, after a step that succeeded)."""
        scope = self._scope_statement
        own = () if scope is None else (scope,)
        return own if then is None else (*own, then(ms))

    def _intact(
        self, trans: Any, succeeded: bool, *, then: tuple[str, ...] = ()
    ) -> tuple[bool, DBAPIError | None, int | None]:
        """After a watched step: whether its transaction was ended (it is no longer the
        one sqlmig began), the error of a statement of ``then`` the database refused,
        and the rows the last statement of ``then`` touched (None where unknown).

        On success the step's savepoint is released, after a failure rolled back
        to; either fails when a commit or rollback ended the transaction, even
        if the driver has begun a new one since. ``then`` runs after it (see
        :meth:`StepMark.release`) if it gets that far.
        """
        conn = self.conn
        if trans is None or not trans.is_active or not conn.in_transaction():
            return True, None, None
        if driver_in_transaction(conn.connection.dbapi_connection) is False:
            return True, None, None
        if not self.profile.kept_transaction(conn):
            return True, None, None
        kept, refused, rows = self.mark.release(conn, succeeded, then=then)
        return not kept, refused if kept else None, rows

    def _aborted(self, trans: Any) -> bool:
        """After a watched step that returned but whose mark could not be released:
        its transaction is still there, aborted by a database error the step
        caught (see ``DialectProfile.recover_aborted``), and rolled back to the mark."""
        conn = self.conn
        if trans is None or not trans.is_active or not conn.in_transaction():
            return False
        return self.profile.recover_aborted(conn, self.mark.name)

    def _swallowed(self, migration: Migration, fn: StepFunction, action: str) -> MigrationFailed:
        path, _ = migration.where(None, fn)
        title = self.profile.title or self.profile.name
        return MigrationFailed(
            f"migration {migration.version} ({action}) failed at {path}: it caught a database "
            f"error and went on, but {title} aborts the transaction at any error, so nothing "
            "of the step was applied: let the error propagate, or run the statement that may "
            "fail inside `with conn.begin_nested():` to go on after it",
            version=migration.version,
            path=path,
            line=None,
        )

    def failure(
        self,
        migration: Migration,
        fn: StepFunction,
        action: str,
        error: BaseException,
        *,
        outcome: str | None = None,
        state: GuardState | None = None,
    ) -> MigrationFailed:
        path, line = migration.where(error, fn)
        where = f"{path}:{line}" if line else f"{path}"
        if outcome is None:
            outcome = self._outcome(migration, action, state)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        reason = scrub(reason, self.conn.engine.url)  # the step's text may hold the password
        return MigrationFailed(
            f"migration {migration.version} ({action}) failed at {where}: "
            f"{type(error).__name__}: {reason}; {outcome}",
            version=migration.version,
            path=path,
            line=line,
        )

    def _outcome(self, migration: Migration, action: str, state: GuardState | None) -> str:
        """What a failure left behind, as far as sqlmig knows."""
        if self.protected(migration):
            return "its work was rolled back; fix it and run again"
        untouched = state is not None and state.changes == 0
        v = migration.version
        if action == "down":
            if untouched:
                return (
                    "nothing was undone (it failed before any statement of it completed), "
                    "so the step stays applied; fix down() and run again"
                )
            return (
                "what it undid before the failure stays undone, and the step stays recorded "
                "as applied: check the database by hand, finish the undo and run "
                f"unstamp({v!r}) (sqlmig unstamp {v}), or restore what was undone"
            )
        if untouched:
            return (
                "nothing was changed (it failed before any statement of it completed): "
                "run repair() (sqlmig repair), fix it and run again"
            )
        return (
            "changes its DDL committed may remain; check the database by hand, "
            f"then run repair() (sqlmig repair), or stamp({v!r}) (sqlmig stamp {v}) "
            "if you completed it by hand"
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

    def _still_next(self, migration: Migration) -> bool:
        """Inside a step's write transaction: is ``migration`` still the run's next step?

        While no one else has written since the history was read, it is,
        without asking. Otherwise the history is read again here, inside the
        write transaction (no one can change it before this step commits), and
        the run is planned again with :attr:`replan`: :attr:`replanned` holds
        the new plan, and the step goes ahead only if it still comes first.
        """
        if self._alone_since_read():
            return True
        assert self.replan is not None, "the runner plans the steps it hands over"
        plan = self.replan(self.store.read(self.conn))
        self.history_read()
        self.replanned = plan
        return bool(plan) and plan[0][1].number == migration.number

    def take_replanned(self) -> list[PlanItem] | None:
        """The plan made again inside the last step's transaction, once; None if none was."""
        plan, self.replanned = self.replanned, None
        return plan

    def apply(self, migration: Migration) -> bool:
        """Apply one step and record it (see :meth:`_apply`)."""
        with self._ends_told(migration, "up"):
            return self._apply(migration)

    def undo(self, row: AppliedMigration, migration: Migration) -> bool:
        """Run ``down()`` and delete the history row (see :meth:`_undo`)."""
        with self._ends_told(migration, "down"):
            return self._undo(row, migration)

    def _apply(self, migration: Migration) -> bool:
        """Apply one step and record it.

        False when another runner wrote meanwhile and ``migration`` is no
        longer the next step: :meth:`take_replanned` then has the new plan.

        Raises:
            MigrationFailed: the step failed (rolled back where the backend allows),
                or its history row was removed while it ran.
        """
        if self.protected(migration):
            ms = self._run_protected(
                migration,
                migration.up,
                "up",
                lambda took: self.store.record(self.conn, migration, execution_ms=took),
                self.store.record_statement(self.conn.dialect, self.profile, migration),
            )
            if ms is None:
                return False
            self._log("applied", migration, ms)
            return True
        with self.running():
            with self.transaction():
                if not self._still_next(migration):
                    return False
                self.announce(migration, "up")
                self.store.record(self.conn, migration, execution_ms=None, success=False)
            try:
                ms, recorded = self._run_unprotected(
                    migration,
                    migration.up,
                    "up",
                    lambda took: self.store.mark_done(self.conn, migration.version, took),
                )
            except TransactionLost as lost:  # its row stays failed
                self._failed(migration, lost.started)
                raise lost.failure from lost.failure.__cause__
            if not recorded:
                raise self._vanished(migration, "applied", "stamp")
        self._log("applied", migration, ms)
        return True

    def _undo(self, row: AppliedMigration, migration: Migration) -> bool:
        """Run ``down()`` and delete the history row.

        False when another runner wrote meanwhile and ``migration`` is no
        longer the next step to undo: :meth:`take_replanned` has the new plan.

        Where no transaction protects ``down()`` (MySQL, ``transactional =
        False``), its row is set ``success = false`` while it runs, so a runner
        killed mid-way leaves ``DirtyDatabase``; when ``down()`` raises, the row
        is set back to applied (the step's changes are still there, all of them
        when ``down()`` failed before any statement of it completed).

        Raises:
            MigrationFailed: ``down()`` failed (the step stays recorded as applied).
        """
        down = migration.down
        assert down is not None
        if self.protected(migration):
            deleting = self.store.delete_statement(self.conn.dialect, self.profile, row.version)
            ms = self._run_protected(
                migration,
                down,
                "down",
                lambda _took: self.store.delete(self.conn, row.version),
                None if deleting is None else lambda _took: deleting,
            )
            if ms is None:
                return False
            self._log("undid", migration, ms)
            return True
        with self.running():
            with self.transaction():
                if not self._still_next(migration):
                    return False
                self.announce(migration, "down")
                self.store.mark_failed(self.conn, row.version)
            try:
                ms, deleted = self._run_unprotected(
                    migration, down, "down", lambda _took: self.store.delete(self.conn, row.version)
                )
            except TransactionLost as lost:  # its row stays failed: work may be committed
                self._failed(migration, lost.started)
                raise lost.failure from lost.failure.__cause__
            except MigrationFailed:
                with self.transaction():
                    self._rescope(failed=False)
                    self.store.mark_applied(self.conn, row.version)
                raise
            if not deleted:
                raise self._vanished(migration, "undone", "unstamp")
        self._log("undid", migration, ms)
        return True

    def _run_protected(
        self,
        migration: Migration,
        fn: StepFunction,
        action: str,
        write: Callable[[int], object],
        statement: Callable[[int], str] | None = None,
    ) -> int | None:
        """Run ``fn`` and its history change ``write(ms)`` in one watched transaction.

        ``statement``: the same change as a statement of sqlmig's own, sent with
        the release of the step's savepoint (in its round trip, where the
        driver can); None where it cannot be written so, and ``write`` runs.

        Returns the step's time, or None when ``migration`` is no longer the next
        step (another runner wrote meanwhile). A step that ended its transaction
        anyway leaves a failed row (:meth:`_keep_failed`).
        """
        try:
            with self.transaction():
                if not self._still_next(migration):
                    return None
                ms = self.call(migration, fn, action, watch=True, then=statement)
                if statement is None:
                    try:
                        written = write(ms)
                    except UnicodeEncodeError as exc:
                        raise self._unwritable(migration, fn, action, exc) from exc
                    if written is False:  # a rule or trigger on the table swallowed it
                        raise self._unwritten(migration, action)
        except TransactionLost as lost:
            self._keep_failed(migration)
            self._failed(migration, lost.started)
            raise lost.failure from lost.failure.__cause__
        return ms

    def _unwritable(
        self, migration: Migration, fn: StepFunction, action: str, error: UnicodeEncodeError
    ) -> MigrationFailed:
        """The step left a client encoding in which its history row's names cannot be sent."""
        path, _ = migration.where(None, fn)
        return MigrationFailed(
            f"migration {migration.version} ({action}) failed at {path}: sqlmig cannot write "
            f"its history row in the connection's client encoding, {error.encoding}, which "
            f"has no {error.object[error.start : error.end]!r}; its work was rolled back: "
            "a step that changes the encoding sets it back before it returns (PostgreSQL: "
            "RESET client_encoding)",
            version=migration.version,
            path=path,
            line=None,
        )

    def _unwritten(self, migration: Migration, action: str) -> DatabaseError:
        """The step's history change touched no row: a rule or trigger on the history
        table swallowed it (made by a step, say). The step is rolled back with it."""
        v = migration.version
        doing = f"recording {v}" if action == "up" else f"removing the history row of {v}"
        url = mask(self.conn.engine.url)
        return DatabaseError(
            f"{doing} in the history table {self.store.label} changed no row (a rule or "
            "trigger on the table swallowed it), so the step was rolled back: remove what "
            "makes the history table ignore its rows, then run again",
            action=doing,
            url=url,
        )

    def _keep_failed(self, migration: Migration) -> None:
        """Leave ``migration``'s row ``success = false``: its work may be committed."""
        if self.nested:  # the caller's transaction is what the step ended
            return
        with self.transaction():
            self._rescope(failed=False)  # the step may have committed its SET search_path
            self.store.delete(self.conn, migration.version)
            self.store.record(self.conn, migration, execution_ms=None, success=False)

    def _vanished(self, migration: Migration, done: str, fix: str) -> MigrationFailed:
        return MigrationFailed(
            f"migration {migration.version} was {done}, but its history row was removed while "
            f"it ran (repair() or unstamp by another runner): check the database, then run "
            f"{fix}({migration.version!r}) (sqlmig {fix} {migration.version}) if it is {done}",
            version=migration.version,
            path=migration.path,
            line=None,
        )

    def running(self) -> Any:
        """Hold this history's "a step is running" mark while the block runs (SQLite).

        Where a session lock serializes runners (PostgreSQL, MySQL) nothing is
        needed. Elsewhere a step that no transaction protects runs after its
        failed row is committed; the mark tells other runners that this row is
        in progress rather than left by a dead runner (see ``RunningMark``).
        """
        mark = self._mark
        if mark is None:
            return nullcontext()
        return mark.hold(self.lock_timeout)

    @cached_property
    def _mark(self) -> ProgressMark | None:
        if self.nested:
            return None
        return self.profile.running_mark(self.conn, self.store.name)

    def wait_while_running(self, deadline: float) -> bool:
        """Wait until no other runner holds the running mark, or raise at ``deadline``.

        Returns True when another runner's step was running.

        Raises:
            LockTimeout: another runner's step still runs at ``deadline``.
        """
        mark = self._mark
        return mark is not None and mark.wait(deadline, self.lock_timeout)

    def running_elsewhere(self) -> bool:
        """True when another runner is running a step no transaction protects (SQLite)."""
        mark = self._mark
        return mark is not None and mark.held_elsewhere()

    def _run_unprotected(
        self, migration: Migration, fn: StepFunction, action: str, write: Callable[[int], bool]
    ) -> tuple[int, bool]:
        """Run ``fn``, then its history change ``write(ms)``; the step's time and what
        ``write`` returned.

        A ``transactional`` step's change is written in the step's own transaction,
        so its DML and its row commit together; one outside any transaction is
        followed by a transaction of its own.

        A step that left tables locked (MySQL's ``LOCK TABLES``) fails: its row
        cannot be written, and the session's locks are freed after the rollback.
        """
        try:
            if migration.transactional:
                with self.transaction():
                    ms = self.call(migration, fn, action, announce=False)
                    return ms, write(ms)
            with self.autocommit():
                ms = self.call(migration, fn, action, announce=False)
            with self.transaction():
                return ms, write(ms)
        except DBAPIError as exc:
            if not self.profile.left_tables_locked(exc):
                raise
            self.profile.unlock_tables(self.conn)  # after the rollback: it commits nothing
            cause = TablesLeftLocked(
                "it returned with tables locked (LOCK TABLES), so its history row could not "
                "be written (end the step with UNLOCK TABLES)"
            )
            raise self.failure(migration, fn, action, cause) from exc

    def _log(self, verb: str, migration: Migration, ms: int) -> None:
        log.info("%s %s in %d ms", verb, migration.label, ms, extra={"migration": migration})
        self._told = None
        if self.on_step is not None:
            self.on_step(migration, "done", ms / 1000)
